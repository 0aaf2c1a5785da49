"""Pure helpers for metav1-style conditions (`Ready`, `Synced`) on the KmsKey status.

A condition keeps its lastTransitionTime while its status does not change, carries the generation it
was computed for, and is `Unknown` until the operator has looked at the resource once.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    existing: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The new conditions list: `updates` replace same-type entries, others are kept as they are."""
    stamp = now or now_rfc3339()
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
