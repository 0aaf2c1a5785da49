"""Pure helpers for metav1-style conditions (`Ready`, `Synced`) on the KmsKey status.

A condition keeps its lastTransitionTime while its status does not change, carries the generation it
was computed for, and is `Unknown` until the operator has looked at the resource once.

`Stalled` and `Reconciling` are derived from `Synced` (see `kstatus`), so that tools built on kstatus
(Flux, `kstatus`-based waits) tell a KmsKey that failed for good from one still converging: to them
`Ready=False` alone means "in progress" forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from kmskey_operator import names, timestamps

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# Synced reasons that no retry can fix: the spec, the credentials or the key itself must change first.
STALLED_REASONS = frozenset(
    {
        names.REASON_INVALID_SPEC,
        names.REASON_ACCESS_DENIED,
        names.REASON_FORCE_NEW_CONFLICT,
        names.REASON_KEY_CLAIMED,
        names.REASON_KEY_NOT_FOUND,
        names.REASON_NOT_OWNED,
        names.REASON_KEY_PENDING_DELETION,
        names.REASON_DELETION_BLOCKED,
        names.REASON_KEY_DISABLED,  # a change the key's state blocks (rotation of a Disabled key)
        # Provider configs: a reference or setting must change (a missing or broken config may still come).
        names.REASON_PROVIDER_CONFIG_NOT_ALLOWED,
        names.REASON_PROVIDER_CONFIG_CHANGED,
        names.REASON_PROVIDER_CONFIG_ACCOUNT_CHANGED,
        names.REASON_NO_PROVIDER_CONFIG,
    }
)


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def merge(
    existing: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The new conditions list: `updates` replace same-type entries, others are kept as they are."""
    stamp = now or timestamps.now_rfc3339()
    by_type: dict[str, dict[str, Any]] = {
        str(c.get("type")): dict(c) for c in existing or () if c.get("type")
    }
    for update in updates:
        previous = by_type.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        entry: dict[str, Any] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": stamp
            if changed or previous is None
            else previous.get("lastTransitionTime", stamp),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[update.type] = entry
    return sorted(by_type.values(), key=lambda c: str(c["type"]))


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def kstatus(synced: Condition, *, retrying: bool) -> list[Condition]:
    """kstatus's `Stalled` and `Reconciling` for a pass that ended with `synced`.

    Stalled=True (kstatus: Failed) when Synced is False for a reason in STALLED_REASONS, or for a KMS refusal
    the operator does not retry (`KmsRejected` without a retry); Reconciling=True (kstatus: InProgress)
    while a transient failure is retried. Never both True: kstatus reads the first True one it meets.
    """
    failed = synced.status == FALSE and (
        synced.reason in STALLED_REASONS or (synced.reason == names.REASON_KMS_REJECTED and not retrying)
    )
    if failed:
        return [
            Condition(names.STALLED, TRUE, synced.reason, synced.message),
            Condition(names.RECONCILING, FALSE, synced.reason, "the operator waits for a change to retry"),
        ]
    if synced.status == FALSE and retrying and synced.reason != names.REASON_PAUSED:
        return [
            Condition(names.STALLED, FALSE, synced.reason, "a transient failure: retried with backoff"),
            Condition(names.RECONCILING, TRUE, synced.reason, synced.message),
        ]
    return [
        Condition(names.STALLED, FALSE, synced.reason, ""),
        Condition(names.RECONCILING, FALSE, synced.reason, ""),
    ]
