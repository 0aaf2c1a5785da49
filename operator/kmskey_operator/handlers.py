"""The kopf layer: turn Kubernetes causes into reconciles, and outcomes into status, events, retries.

Thin on purpose. Every decision lives in `reconcile/`; here we only translate: a body becomes a
`Resource`, an `Outcome` becomes a status patch, Events and `kopf.TemporaryError`. Handlers return
nothing (kopf would store a return value under status.<handler>), and never sleep: retries are raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import socket
import time
from typing import Any

import kopf

from kmskey_operator import metrics, names
from kmskey_operator.normalize import interval_seconds
from kmskey_operator.reconcile.reconciler import Reconciler
from kmskey_operator.reconcile.resource import Outcome, Resource
from kmskey_operator.settings import Settings

logger = logging.getLogger(__name__)

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
TIMER_TICK_SECONDS = 15.0


@dataclasses.dataclass
class Runtime:
    """Shared state of one operator process, kept in kopf's memo."""

    settings: Settings
    reconciler: Reconciler
    locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)
    next_resync: dict[str, float] = dataclasses.field(default_factory=dict)
    last_warning: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def resync_interval(self, resource: Resource) -> float:
        text = resource.annotations.get(names.RESYNC_ANNOTATION)
        if text:
            try:
                return float(interval_seconds(text))
            except ValueError:
                logger.warning(
                    "ignoring bad %s annotation %r on %s", names.RESYNC_ANNOTATION, text, resource.ref
                )
        return self.settings.resync_seconds

    def schedule_resync(self, resource: Resource) -> None:
        """Next drift check: the interval with a stable per-resource jitter, so keys spread out."""
        interval = self.resync_interval(resource)
        spread = int(hashlib.sha256(resource.uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        jitter = (spread * 2 - 1) * self.settings.resync_jitter
        self.next_resync[resource.uid] = time.monotonic() + interval * (1 + jitter)

    def forget(self, uid: str) -> None:
        self.locks.pop(uid, None)
        self.next_resync.pop(uid, None)
        self.last_warning.pop(uid, None)
        self.failures.pop(uid, None)


def _runtime(memo: Any) -> Runtime:
    runtime = memo.get("runtime") if hasattr(memo, "get") else getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("operator runtime is not initialised (startup did not run)")
    return runtime


def _deliver(
    runtime: Runtime, body: kopf.Body, patch: kopf.Patch, resource: Resource, outcome: Outcome
) -> None:
    """Write the outcome: status by merge patch, events (a repeated warning is posted once).

    A warning repeats when its reason and KMS error code (or, without a code, its message) match the
    last one posted for the resource: a retry loop's messages differ only in their RequestId. Any
    Normal event (the resource recovered) re-arms the warning.
    """
    if outcome.status:
        patch.status.update(outcome.status)
    for event in outcome.events:
        if event.type == "Warning":
            # Logged every time (a retry loop's log is bounded by its backoff); posted once per key.
            logger.warning("%s: %s", event.reason, event.message, extra={"resource": resource.ref})
            key = (event.reason, outcome.error_code or event.message)
            if runtime.last_warning.get(resource.uid) == key:
                metrics.observe_event(event.type, event.reason, posted=False)
                continue
            runtime.last_warning[resource.uid] = key
        else:
            runtime.last_warning.pop(resource.uid, None)
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        metrics.observe_event(event.type, event.reason, posted=True)


def _ready_state(resource: Resource, outcome: Outcome) -> str:
    """The Ready condition's status after this outcome is written ("Unknown" before the first one)."""
    conditions = outcome.status.get("conditions") or resource.status.get("conditions") or []
    for entry in conditions:
        if isinstance(entry, dict) and entry.get("type") == names.READY:
            return str(entry.get("status") or "Unknown")
    return "Unknown"


def _record(trigger: str, resource: Resource, outcome: Outcome, started: float) -> None:
    result = outcome.result or ("Released" if outcome.release else "Unknown")
    metrics.observe_reconcile(trigger, result, time.monotonic() - started, outcome.drift_fields)
    if outcome.release:
        metrics.forget_resource(resource.uid)
    else:
        metrics.set_resource_ready(resource.uid, _ready_state(resource, outcome))


async def _reconcile(memo: Any, body: kopf.Body, patch: kopf.Patch, retry: int, trigger: str) -> None:
    runtime = _runtime(memo)
    resource = Resource.from_body(body)
    started = time.monotonic()
    # Consecutive failures across every trigger, so a resync during an outage backs off too.
    attempt = max(retry, runtime.failures.get(resource.uid, 0))
    async with runtime.lock(resource.uid):
        outcome = await runtime.reconciler.reconcile(resource, attempt=attempt)
    _deliver(runtime, body, patch, resource, outcome)
    _record(trigger, resource, outcome, started)
    runtime.schedule_resync(resource)
    if outcome.retry_after is None:
        runtime.failures.pop(resource.uid, None)
        return
    runtime.failures[resource.uid] = attempt + 1
    if trigger == "resync":
        # The timer comes back on its own: the next check is due after the backoff, not a kopf retry.
        runtime.next_resync[resource.uid] = time.monotonic() + outcome.retry_after
        return
    why = outcome.result or "KMS did not accept the change yet"
    raise kopf.TemporaryError(f"{why}; retrying in {outcome.retry_after:.0f}s", delay=outcome.retry_after)


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """kopf's own settings: our finalizer and annotation prefix, and no status writes of its own."""
    kopf_settings.persistence.finalizer = names.FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    kopf_settings.posting.level = logging.WARNING  # our own events are posted explicitly
    # Events say who posted them (`kubectl describe`'s "From", reportingComponent): us, not kopf; the
    # instance is the pod (its hostname), so with HA the active replica is named.
    kopf_settings.posting.reporting_component = names.COMPONENT
    kopf_settings.posting.reporting_instance = socket.gethostname()
    kopf_settings.posting.event_name_prefix = f"{names.COMPONENT}-"
    kopf_settings.execution.max_workers = 64
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.networking.request_timeout = 60
    if settings.peering_name:
        # Replicas with equal priorities (kopf's default, 0) pause each other: nothing would reconcile.
        kopf_settings.peering.priority = settings.peering_priority or -int(time.time() * 1000)
        kopf_settings.peering.lifetime = settings.peering_lifetime_seconds


def register(settings: Settings, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    """Register every handler (and the admission webhook) into `registry`."""
    registry = registry or kopf.get_default_registry()
    tick = min(TIMER_TICK_SECONDS, settings.resync_seconds)

    @kopf.on.resume(*RESOURCE, id="reconcile-resume", registry=registry)
    async def on_resume(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "resume")

    @kopf.on.create(*RESOURCE, id="reconcile-create", registry=registry)
    async def on_create(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "create")

    @kopf.on.update(*RESOURCE, id="reconcile-update", registry=registry)
    async def on_update(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "update")

    @kopf.timer(
        *RESOURCE,
        id="resync",
        interval=tick,
        initial_delay=tick,
        registry=registry,
        when=lambda body, **_: not body.get("metadata", {}).get("deletionTimestamp"),
    )
    async def on_timer(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
        runtime = _runtime(memo)
        uid = str(body.get("metadata", {}).get("uid"))
        due = runtime.next_resync.get(uid)
        if due is None:
            runtime.schedule_resync(Resource.from_body(body))
            return
        if time.monotonic() < due:
            return
        await _reconcile(memo, body, patch, 0, "resync")

    @kopf.on.delete(*RESOURCE, id="finalize", registry=registry)
    async def on_delete(
        body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any, memo: Any, **_: Any
    ) -> None:
        state = _runtime(memo)
        resource = Resource.from_body(body)
        elapsed = runtime.total_seconds() if hasattr(runtime, "total_seconds") else float(runtime or 0)
        started = time.monotonic()
        async with state.lock(resource.uid):
            outcome = await state.reconciler.finalize(resource, attempt=retry, runtime=elapsed)
        _deliver(state, body, patch, resource, outcome)
        _record("delete", resource, outcome, started)
        if not outcome.release:
            raise kopf.TemporaryError("deletion is waiting", delay=outcome.retry_after or 60.0)
        state.forget(resource.uid)

    return registry
