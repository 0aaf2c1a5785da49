"""The parts of a KmsKey body the reconciler reads, and what it hands back to the kopf layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kmskey_operator import timestamps


@dataclasses.dataclass(frozen=True)
class Resource:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    deleting: bool = False
    created_at: float | None = None  # metadata.creationTimestamp, epoch seconds (whole seconds)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Resource:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
            created_at=timestamps.epoch(meta.get("creationTimestamp")),
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclasses.dataclass
class Outcome:
    """What one reconcile decided: status fields to write, events to post, and when to come back.

    `retry_after` None means "done until the next change or resync". For deletion, `release` says
    whether the finalizer may go.
    """

    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    events: list[Event] = dataclasses.field(default_factory=list)
    retry_after: float | None = None
    release: bool = False
    writes: int = 0
    result: str = ""
    """The reason of the Synced condition this pass set (the reconcile metrics' `result`); "" if none."""
    drift_fields: list[str] = dataclasses.field(default_factory=list)
    """Spec fields changed outside Kubernetes that this pass put back (drift corrections)."""
    error_code: str | None = None
    """The KMS error code this pass ended on, if any: repeated warnings are de-duplicated by it."""
