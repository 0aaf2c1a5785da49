"""What a reconcile's status becomes as an API write: only what changed, and `lastSyncTime` as a heartbeat.

Every write of a KmsKey's status is a PATCH, an etcd write and a watch event to every watcher (the operator
included). A drift check that finds nothing new would otherwise write `lastSyncTime` alone: one write per
key per resync, 10,000 every ten minutes at 10,000 keys. So a status field is written only when its value
changes, and `lastSyncTime` (when the operator last confirmed the key against KMS) rides along with every
such write, or on its own once it is older than the heartbeat (KMSKEY_STATUS_HEARTBEAT_SECONDS, 6 hours by
default). Why keep a heartbeat at all: a team sharing the cluster usually cannot read the operator's
metrics, but can read its own KmsKey; a LAST-SYNC within the heartbeat (plus one resync interval) tells it
that drift checks of its key run, and an older one points at a stopped or stuck operator.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kmskey_operator import timestamps

HEARTBEAT_FIELD = "lastSyncTime"


def changes(
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    *,
    heartbeat_seconds: float,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The merge patch that takes status `current` to `desired`; {} when only the heartbeat is not due."""
    patch = {k: v for k, v in desired.items() if k != HEARTBEAT_FIELD and current.get(k) != v}
    stamp = desired.get(HEARTBEAT_FIELD)
    if stamp is None:
        return patch
    if patch:
        patch[HEARTBEAT_FIELD] = stamp
        return patch
    last = timestamps.parse(current.get(HEARTBEAT_FIELD))
    now = now or datetime.datetime.now(datetime.UTC)
    if last is None or (now - last).total_seconds() >= heartbeat_seconds:
        patch[HEARTBEAT_FIELD] = stamp
    return patch
