"""The latest body of every KmsKey as kopf's watch stream delivered it, kept small, for drift checks.

A drift check runs outside any kopf handler, so kopf hands it no body: the kopf layer keeps the last one it
saw of each object (from an `on.event` handler, and from the answers to its own status patches). Only what
a reconcile reads and what a status patch or an Event needs is kept (identity, generation, resourceVersion,
annotations, spec, status), as compact JSON text: about 1 KiB per key, not a tree of Python objects (which
would take ten times that and give the garbage collector thousands of objects to walk at every full
collection).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

METADATA_KEPT = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
ANNOTATIONS_DROPPED = ("kubectl.kubernetes.io/last-applied-configuration",)


def compact(body: Mapping[str, Any], *, dropped_status: Iterable[str] = ()) -> str:
    """The parts of `body` worth keeping, as JSON text."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in METADATA_KEPT if meta.get(k) is not None}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in ANNOTATIONS_DROPPED and not k.endswith("/last-handled-configuration")
    }
    if annotations:
        kept["annotations"] = annotations
    status = dict(body.get("status") or {})
    for field in dropped_status:
        status.pop(field, None)
    small = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": body.get("spec") or {},
        "status": status,
    }
    return json.dumps(small, separators=(",", ":"))


class WatchedBodies:
    """uid -> the newest body seen (by resourceVersion order of arrival), as compact JSON."""

    def __init__(self, *, dropped_status: Iterable[str] = ()) -> None:
        self._bodies: dict[str, str] = {}
        self._dropped_status = tuple(dropped_status)

    def __len__(self) -> int:
        return len(self._bodies)

    def put(self, body: Mapping[str, Any]) -> None:
        uid = (body.get("metadata") or {}).get("uid")
        if uid:
            self._bodies[str(uid)] = compact(body, dropped_status=self._dropped_status)

    def get(self, uid: str) -> dict[str, Any] | None:
        text = self._bodies.get(uid)
        if text is None:
            return None
        body: dict[str, Any] = json.loads(text)
        return body

    def forget(self, uid: str) -> None:
        self._bodies.pop(uid, None)

    def clear(self) -> None:
        self._bodies.clear()
