"""Admission of a KmsKey's spec.providerConfigRef: the webhook's half of the accounts rules.

selection.check_reference decides; this module only fetches what it needs, and only for a KmsKey that names
a config (or named one before): the config itself, and the namespace's labels for a cluster config. If the
API server cannot be asked, the request is admitted with a warning: the reconciler applies the same rules,
so a reference that should have been refused ends Synced=False without any KMS call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kmskey_operator.accounts import selection
from kmskey_operator.accounts.config import ProviderConfig, config_or_invalid
from kmskey_operator.accounts.kube import ClusterReader, ReadError
from kmskey_operator.accounts.refs import ConfigKind, ConfigRef, parse_ref
from kmskey_operator.accounts.selection import Admission


async def review(
    namespace: str,
    spec: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    reader: ClusterReader,
) -> Admission:
    """The verdict on the new spec's providerConfigRef (`old`: the object before an UPDATE)."""
    raw = (spec or {}).get("providerConfigRef")
    old_spec = (old or {}).get("spec") or {}
    old_status = (old or {}).get("status") or {}
    key_exists = bool(old_status.get("keyId") or old_spec.get("keyId"))
    if raw is None:
        if old is not None and old_spec.get("providerConfigRef") is not None and old_status.get("keyId"):
            return Admission(
                errors=(
                    "spec.providerConfigRef cannot be removed once the key exists (it names the account the "
                    "key lives in); put it back",
                )
            )
        return Admission()
    try:
        ref = parse_ref(raw, namespace)
    except ValueError as error:
        return Admission(errors=(f"spec.providerConfigRef: {error}",))
    found: dict[ConfigRef, ProviderConfig | None] = {}
    labels: Mapping[str, str] = {}
    try:
        if ref is not None and not (ref.kind is ConfigKind.NAMESPACED and ref.namespace != namespace):
            body = await reader.provider_config(ref)
            found[ref] = config_or_invalid(body, ref.kind) if body is not None else None
            if ref.kind is ConfigKind.CLUSTER and body is not None:
                labels = await reader.namespace_labels(namespace)
    except ReadError as error:
        return Admission(
            warnings=(
                f"spec.providerConfigRef was not checked ({error}); the operator checks it before any KMS "
                "call",
            )
        )
    return selection.check_reference(
        namespace,
        raw,
        namespace_labels=labels,
        lookup=lambda r: found.get(r),
        old_status=old_status if old is not None and key_exists else None,
    )
