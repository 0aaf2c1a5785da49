"""The KmsKeys this operator can see, as kopf indices: by UID (is a claimant alive?) and by key ID.

Part of the kopf layer. kopf fills the indices from its watch before any handler runs and drops an object's
entries when it is gone, so "alive" means "exists now, in a namespace this operator watches". A claim in a
namespace it does not watch cannot be checked and counts as alive: never taken over.

`Directory` answers the reconciler's `claims.Liveness` question and the webhook's "does another KmsKey
already name this key?". Both indices are registered by `register`, in the operator and in the
webhook-only process alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from kmskey_operator import claims, names

BY_UID = "kmskeys_by_uid"
BY_KEY_ID = "kmskeys_by_key_id"
RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)


@dataclasses.dataclass(frozen=True)
class Entry:
    namespace: str
    name: str
    uid: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _entry(body: Mapping[str, Any]) -> Entry:
    meta = body.get("metadata") or {}
    return Entry(str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""))


def key_ids(body: Mapping[str, Any]) -> set[str]:
    """The keys a KmsKey names: the one it adopts (spec.keyId) and the one it recorded (status.keyId)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return {str(k) for k in (spec.get("keyId"), status.get("keyId")) if isinstance(k, str) and k}


def register(registry: kopf.OperatorRegistry | None = None) -> None:
    registry = registry or kopf.get_default_registry()

    # Coroutines, though they never wait: kopf runs a plain function in a worker thread, a thread-pool
    # round trip (and GIL hand-offs) for each index at every watch event of every KmsKey; a burst also grew
    # that pool for good (27 threads after 1,000 keys, each stack ~190 KiB resident with its malloc arena).
    @kopf.index(*RESOURCE, id=BY_UID, registry=registry)
    async def kmskeys_by_uid(body: kopf.Body, **_: Any) -> dict[str, Entry]:
        entry = _entry(body)
        return {entry.uid: entry}

    @kopf.index(*RESOURCE, id=BY_KEY_ID, registry=registry)
    async def kmskeys_by_key_id(body: kopf.Body, **_: Any) -> dict[str, Entry]:
        entry = _entry(body)
        return {key_id: entry for key_id in key_ids(body)}


class Directory:
    """Answers from the indices; without them (`None`) every question is "cannot tell"."""

    def __init__(
        self,
        by_uid: Mapping[str, Iterable[Entry]] | None = None,
        by_key_id: Mapping[str, Iterable[Entry]] | None = None,
        *,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self._by_uid = by_uid
        self._by_key_id = by_key_id
        self._namespaces = namespaces

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, namespaces: tuple[str, ...] = ()) -> Directory:
        """From the kwargs of a kopf handler, which carry every index by its id."""
        return cls(kwargs.get(BY_UID), kwargs.get(BY_KEY_ID), namespaces=namespaces)

    def claimant_alive(self, claim: claims.Claim) -> bool | None:
        if self._by_uid is None:
            return None
        if claim.uid in self._by_uid:
            return True
        if self._namespaces and (claim.namespace is None or claim.namespace not in self._namespaces):
            return None  # it may live in a namespace this operator does not watch
        return False

    def others_naming(self, key_id: str, uid: str) -> list[Entry]:
        """The other KmsKeys (not the one with `uid`) that name `key_id`, in a stable order."""
        if self._by_key_id is None or key_id not in self._by_key_id:
            return []
        return sorted({e for e in self._by_key_id[key_id] if e.uid != uid}, key=lambda e: (e.ref, e.uid))
