"""What the chaos scenarios assert on KMS itself: keys per ownership tag, orphans, lost keys, writes per key.

It reads the emulator's state (its backend in-process, or the admin API's `keys` for an emulator process),
never the operator's own view, so a status that looks right over a wrong KMS state still fails.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kms_emulator.calllog import CallRecord
from kms_emulator.testing import EmulatorHandle

OWNER_TAG = "kms.alicloud.dev/owner-uid"
READ_PREFIXES = ("Describe", "List", "Get")
# KMS answers to a request the operator should never have sent: a bad or missing parameter.
INVALID_PARAMETER_CODES = ("InvalidParameter", "MissingParameter")


def backend_keys(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    """The emulator's keys as plain dicts (the same shape as AdminClient.keys())."""
    backend = emulator.backend
    with backend.lock:
        return [key.to_dict() for key in backend.keys.values()]


@dataclasses.dataclass
class Audit:
    """KMS state against the live KmsKeys: every number but `keys` should be zero."""

    keys: int = 0
    duplicated: int = 0  # keys beyond the first that carry one live resource's tag
    orphaned: int = 0  # live (not PendingDeletion) keys tagged for a resource that does not exist
    lost: int = 0  # live resources that own no key
    wrong_status: int = 0  # status.keyId is not the key KMS says the resource owns
    details: list[str] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicated or self.orphaned or self.lost or self.wrong_status)

    def __str__(self) -> str:
        head = (
            f"{self.keys} keys: {self.duplicated} duplicated, {self.orphaned} orphaned, {self.lost} lost, "
            f"{self.wrong_status} with a wrong status.keyId"
        )
        return head + "".join(f"\n  {line}" for line in self.details[:30])


def audit(keys: Iterable[Mapping[str, Any]], resources: Iterable[Mapping[str, Any]]) -> Audit:
    """Compare KMS keys with the live KmsKeys that should each own exactly one (none adopts a key)."""
    by_owner: dict[str, list[Mapping[str, Any]]] = {}
    result = Audit()
    for key in keys:
        result.keys += 1
        owner = (key.get("tags") or {}).get(OWNER_TAG)
        if owner:
            by_owner.setdefault(str(owner), []).append(key)
    live: dict[str, Mapping[str, Any]] = {str(r["metadata"]["uid"]): r for r in resources}
    for uid, resource in live.items():
        name = resource["metadata"]["name"]
        owned = [k for k in by_owner.get(uid, []) if k.get("key_state") != "PendingDeletion"]
        if not owned:
            result.lost += 1
            result.details.append(f"{name} ({uid}) owns no KMS key")
            continue
        if len(owned) > 1:
            result.duplicated += len(owned) - 1
            result.details.append(f"{name} owns {len(owned)} keys: {[k['key_id'] for k in owned]}")
        status_key = (resource.get("status") or {}).get("keyId")
        if status_key not in {k["key_id"] for k in owned}:
            result.wrong_status += 1
            result.details.append(f"{name}: status.keyId {status_key} is not one of its keys")
    for uid, owned in by_owner.items():
        if uid in live:
            continue
        for key in owned:
            if key.get("key_state") != "PendingDeletion":
                result.orphaned += 1
                result.details.append(f"key {key['key_id']} is owned by {uid}, which no KmsKey has")
    return result


def is_write(record: CallRecord) -> bool:
    return not record.action.startswith(READ_PREFIXES)


def writes_to(calls: Iterable[CallRecord], key_id: str) -> list[CallRecord]:
    """Write calls (anything but Describe/List/Get) that name `key_id` in a parameter."""
    return [c for c in calls if is_write(c) and key_id in json.dumps(c.params)]


def invalid_parameter_calls(calls: Iterable[CallRecord]) -> list[CallRecord]:
    return [c for c in calls if c.code is not None and c.code.startswith(INVALID_PARAMETER_CODES)]
