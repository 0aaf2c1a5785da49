"""The kopf layer: turn Kubernetes causes into reconciles, and outcomes into status, events, retries.

Thin on purpose. Every decision lives in `reconcile/`; here we only translate: a body becomes a
`Resource`, an `Outcome` becomes a status patch, Events and `kopf.TemporaryError`. Handlers return
nothing (kopf would store a return value under status.<handler>), and never sleep: retries are raised.

Creates, edits, resumes and deletions are kopf handlers. Drift checks are not: kopf's timers cost a task per
object, so the `Runtime` owns one `ResyncScheduler` (resync.py) and runs each check itself, with the body
the watch stream last delivered (watched.py, fed by an `on.event` handler) and a status write of its own
(kube.py). Both paths share one reconcile step (`Runtime.reconcile`): the per-key lock, the consecutive
failures that back off across triggers, the rate limiter's priority, metrics, and the next check's time.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import kopf

from kmskey_operator import metrics, names, statuspatch
from kmskey_operator.kms import ratelimit
from kmskey_operator.kms.ratelimit import CallClass, Priority
from kmskey_operator.kube import KubeApi, KubeApiError, ObjectRef
from kmskey_operator.normalize import interval_seconds
from kmskey_operator.reconcile.reconciler import Reconciler
from kmskey_operator.reconcile.resource import Event, Outcome, Resource
from kmskey_operator.resync import ResyncScheduler
from kmskey_operator.settings import Settings
from kmskey_operator.watched import WatchedBodies

logger = logging.getLogger(__name__)

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# kopf's diff base ("last handled configuration") lives in status, so that it travels in the status patch
# of the same handling cycle instead of a metadata patch of its own (see `configure_kopf`).
DIFF_BASE_FIELD = "status.kopf.last-handled-configuration"
LEGACY_DIFF_BASE_ANNOTATION = f"{names.GROUP}/last-handled-configuration"
KOPF_MARKER_ANNOTATION = f"{names.GROUP}/kopf-managed"
CONFLICT_RETRY_SECONDS = 2.0
API_ERROR_RETRY_SECONDS = 30.0
# Annotations that change when and whether a key is checked: a change to one is acted on at once.
SCHEDULING_ANNOTATIONS = (names.PAUSED_ANNOTATION, names.RESYNC_ANNOTATION)


class _KeyLocks:
    """One asyncio.Lock per key, held only while someone holds or waits for it (none per idle key)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, uid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(uid) or (asyncio.Lock(), 0)
        self._locks[uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uid]
            if users <= 1:
                del self._locks[uid]
            else:
                self._locks[uid] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclasses.dataclass
class Runtime:
    """Shared state of one operator process, kept in kopf's memo."""

    settings: Settings
    reconciler: Reconciler
    kube: KubeApi = dataclasses.field(default_factory=KubeApi)
    locks: _KeyLocks = dataclasses.field(default_factory=_KeyLocks)
    last_warning: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    bad_annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    bodies: WatchedBodies = dataclasses.field(default_factory=lambda: WatchedBodies(dropped_status=["kopf"]))
    scheduler: ResyncScheduler = dataclasses.field(init=False)
    # A context of kopf's per-object processing: kopf keeps its Event queue in context variables that it
    # sets only there, so Events of drift checks (which run in no kopf handler) are posted inside a copy.
    kopf_context: contextvars.Context | None = None
    reconciles_started: int = 0
    """Reconciles started by kopf handlers (not drift checks) since start: what memory.py watches."""
    reconciles_running: int = 0
    """Of those, the ones not finished yet (a wave is over only when none runs)."""

    def __post_init__(self) -> None:
        self.scheduler = ResyncScheduler(
            self.resync, jitter=self.settings.resync_jitter, read_budget=self.read_budget
        )

    # --- scheduling

    def read_budget(self, _quota: str) -> float:
        """Reads per second drift checks may use of one quota (0 = unlimited, like KMSKEY_READ_QPS 0)."""
        return self.settings.read_qps * self.settings.resync_read_share

    def region_of(self, resource: Resource) -> str:
        """The quota a key's drift checks spend: KMS's are per account and region (accounts/registry.py
        gives each its own rate limiter). The account is the one status records; "" for the operator's own
        credentials and for keys not reconciled yet."""
        region = resource.spec.get("regionId") if isinstance(resource.spec, Mapping) else None
        region = region or resource.status.get("regionId") or self.settings.region_id
        return f"{resource.status.get('accountId') or ''}/{region}"

    def resync_interval(self, resource: Resource) -> float:
        """The annotation's interval (to the second), else KMSKEY_RESYNC_SECONDS; a bad one is reported."""
        text = resource.annotations.get(names.RESYNC_ANNOTATION)
        if not text:
            self.bad_annotations.pop(resource.uid, None)
            return self.settings.resync_seconds
        try:
            seconds = float(interval_seconds(text))
            if seconds <= 0:
                raise ValueError(text)
        except ValueError:
            self._report_bad_annotation(resource, text)
            return self.settings.resync_seconds
        self.bad_annotations.pop(resource.uid, None)
        return seconds

    def _report_bad_annotation(self, resource: Resource, text: str) -> None:
        message = (
            f"annotation {names.RESYNC_ANNOTATION}={text!r} is not an interval (write a number of "
            f"seconds or a duration such as 90s, 10m, 2h, 1d); drift checks use the default "
            f"{self.settings.resync_seconds:.0f}s"
        )
        logger.warning("%s", message, extra={"resource": resource.ref})
        if self.bad_annotations.get(resource.uid) == text:
            return  # already posted for this value
        self.bad_annotations[resource.uid] = text
        self.post(_event_body(resource), Event("Warning", names.REASON_INVALID_ANNOTATION, message))

    def schedule_next(self, resource: Resource, retry_after: float | None = None) -> None:
        """After a reconcile: the next drift check after the key's interval (or a failure's backoff)."""
        if resource.deleting:
            self.scheduler.forget(resource.uid)
            return
        self.scheduler.track(resource.uid, self.resync_interval(resource), self.region_of(resource))
        self.scheduler.schedule(resource.uid, retry_after)

    def wake(self, uids: Iterable[str]) -> None:
        """Reconcile these keys now (their provider config became usable), not after their backoff."""
        for uid in uids:
            self.scheduler.schedule(uid, 0.0)

    def forget(self, uid: str) -> None:
        self.scheduler.forget(uid)
        self.bodies.forget(uid)
        self.last_warning.pop(uid, None)
        self.failures.pop(uid, None)
        self.bad_annotations.pop(uid, None)

    def set_active(self, active: bool) -> None:
        """kopf peering paused or resumed this replica: a paused one keeps and runs no drift checks."""
        if active:
            self.scheduler.resume()
            return
        self.scheduler.pause()
        self.bodies.clear()
        self.failures.clear()

    # --- the watch stream

    def watched(self, event_type: str | None, body: kopf.Body) -> None:
        """Every watch event of a KmsKey: keep its body; schedule keys no reconcile has scheduled yet."""
        if self.kopf_context is None:
            self.kopf_context = contextvars.copy_context()
        uid = str(body.get("metadata", {}).get("uid") or "")
        if not uid:
            return
        if event_type == "DELETED":
            self.forget(uid)
            return
        if not self.scheduler.active:
            return
        previous = self.bodies.get(uid)
        self.bodies.put(body)
        resource = Resource.from_body(body)
        if resource.deleting:
            self.scheduler.forget(uid)
            return
        changed = previous is not None and any(
            (previous.get("metadata", {}).get("annotations") or {}).get(a) != resource.annotations.get(a)
            for a in SCHEDULING_ANNOTATIONS
        )
        if changed:
            # kopf sees no change in these annotations (they are not part of its diff base): act here.
            self.schedule_next(resource, retry_after=0.0)
        elif not self.scheduler.is_scheduled(uid):
            self.schedule_next(resource)

    # --- one reconcile, from any trigger

    async def reconcile(self, resource: Resource, trigger: str, retry: int = 0) -> Outcome:
        """Reconcile under the key's lock; record it; schedule the key's next drift check."""
        started = time.monotonic()
        wave = trigger != "resync"  # what memory.py calls a wave; drift checks are the steady state
        if wave:
            self.reconciles_started += 1
            self.reconciles_running += 1
        # Consecutive failures across every trigger, so a resync during an outage backs off too.
        attempt = max(retry, self.failures.get(resource.uid, 0))
        try:
            with ratelimit.scope(_priority(resource, trigger)) as calls:
                outcome = await self.reconciler.reconcile(resource, attempt=attempt)
        finally:
            if wave:
                self.reconciles_running -= 1
        if trigger == "resync":
            self.scheduler.observe_reads(self.region_of(resource), calls.calls[CallClass.READ])
        _record(trigger, resource, outcome, started)
        if outcome.retry_after is None:
            self.failures.pop(resource.uid, None)
        else:
            self.failures[resource.uid] = attempt + 1
        # A failed drift check comes back after its backoff; a failed kopf handler is retried by kopf
        # (it raises TemporaryError), and its next drift check stays at the usual interval.
        self.schedule_next(resource, outcome.retry_after if trigger == "resync" else None)
        return outcome

    async def resync(self, uid: str) -> None:
        """A drift check (the scheduler's callback): reconcile the watched body, write what changed."""
        async with self.locks.hold(uid):
            body = self.bodies.get(uid)
            if body is None or not self.scheduler.active:
                self.scheduler.forget(uid)
                return
            resource = Resource.from_body(body)
            if resource.deleting:
                self.scheduler.forget(uid)
                return
            outcome = await self.reconcile(resource, "resync")
            self.deliver_events(body, resource, outcome)
            patch = self.status_patch(resource, outcome)
            if patch:
                await self._write_status(body, resource, patch)

    async def _write_status(self, body: dict[str, Any], resource: Resource, patch: dict[str, Any]) -> None:
        ref = ObjectRef(names.GROUP, names.VERSION, names.PLURAL, resource.namespace, resource.name)
        version = body.get("metadata", {}).get("resourceVersion")
        try:
            self.bodies.put(await self.kube.patch_status(ref, patch, resource_version=version))
        except KubeApiError as error:
            if error.status == 404:
                self.forget(resource.uid)
                return
            retry = CONFLICT_RETRY_SECONDS if error.status == 409 else API_ERROR_RETRY_SECONDS
            if error.status == 409:
                # Changed since the body we reconciled: check again soon, from the current body.
                try:
                    self.bodies.put(await self.kube.get(ref))
                except KubeApiError as again:
                    logger.warning("re-reading %s: %s", resource.ref, again)
            else:
                logger.warning("status of %s not written: %s", resource.ref, error)
            self.scheduler.schedule(resource.uid, retry)

    # --- writing an outcome

    def status_patch(self, resource: Resource, outcome: Outcome) -> dict[str, Any]:
        return statuspatch.changes(
            resource.status, outcome.status, heartbeat_seconds=self.settings.status_heartbeat_seconds
        )

    def deliver_events(self, body: Mapping[str, Any], resource: Resource, outcome: Outcome) -> None:
        """Post the outcome's events (a repeated warning is posted once).

        A warning repeats when its reason and KMS error code (or, without a code, its message) match the
        last one posted for the resource: a retry loop's messages differ only in their RequestId. Any
        Normal event (the resource recovered) re-arms the warning.
        """
        for event in outcome.events:
            if event.type == "Warning":
                # Logged every time (a retry loop's log is bounded by its backoff); posted once per key.
                logger.warning("%s: %s", event.reason, event.message, extra={"resource": resource.ref})
                key = (event.reason, outcome.error_code or event.message)
                if self.last_warning.get(resource.uid) == key:
                    metrics.observe_event(event.type, event.reason, posted=False)
                    continue
                self.last_warning[resource.uid] = key
            else:
                self.last_warning.pop(resource.uid, None)
            self.post(body, event)

    def post(self, body: Mapping[str, Any], event: Event) -> None:
        """kopf.event, from a kopf handler or (in a copy of kopf's context) from a drift check."""
        obj = body if isinstance(body, kopf.Body) else kopf.Body(cast(Any, body))
        if self.kopf_context is not None:
            self.kopf_context.run(
                kopf.event, obj, type=event.type, reason=event.reason, message=event.message
            )
        else:
            kopf.event(obj, type=event.type, reason=event.reason, message=event.message)
        metrics.observe_event(event.type, event.reason, posted=True)


def _priority(resource: Resource, trigger: str) -> Priority:
    """Drift checks, and resumes of keys already in sync, wait behind creates and edits for KMS tokens."""
    if trigger == "resync":
        return Priority.BACKGROUND
    status = resource.status
    if (
        trigger == "resume"
        and status.get("keyId")
        and status.get("observedGeneration") == resource.generation
    ):
        return Priority.BACKGROUND
    return Priority.FOREGROUND


def _event_body(resource: Resource) -> dict[str, Any]:
    """What kopf.event needs to name the object."""
    return {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": resource.name, "namespace": resource.namespace, "uid": resource.uid},
    }


def _runtime(memo: Any) -> Runtime:
    runtime = memo.get("runtime") if hasattr(memo, "get") else getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("operator runtime is not initialised (startup did not run)")
    return runtime


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
    async with runtime.locks.hold(resource.uid):
        outcome = await runtime.reconcile(resource, trigger, retry)
    runtime.deliver_events(body, resource, outcome)
    patch.status.update(runtime.status_patch(resource, outcome))
    if outcome.retry_after is None:
        return
    why = outcome.result or "KMS did not accept the change yet"
    raise kopf.TemporaryError(f"{why}; retrying in {outcome.retry_after:.0f}s", delay=outcome.retry_after)


class DiffBaseInStatus(kopf.StatusDiffBaseStorage):  # type: ignore[misc]
    """kopf's diff base in `status.kopf`, so a create or an edit costs one status patch, not two patches.

    kopf writes the diff base once all handlers of a cycle are done, in the same patch as their status.
    In an annotation (kopf's default, and this operator's before) it needs a metadata patch besides the
    status patch; in status both go in one request. Bodies written by earlier versions keep the annotation:
    it is read when status has none, and dropped by the first write here (one metadata patch, once).

    Annotations under the operator's own prefix are not part of the diff base (as they were not before:
    kopf ignored them once its marker annotation was there): the kopf layer acts on them itself.
    """

    def __init__(self) -> None:
        super().__init__(field=DIFF_BASE_FIELD)
        self._legacy = kopf.AnnotationsDiffBaseStorage(prefix=names.GROUP, key="last-handled-configuration")

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations")
        if annotations:
            for key in [k for k in annotations if k.startswith(f"{names.GROUP}/")]:
                del annotations[key]
            if not annotations:
                del essence["metadata"]["annotations"]
            if not essence["metadata"]:
                del essence["metadata"]
        return essence

    def fetch(self, *, body: kopf.Body) -> Any:
        return super().fetch(body=body) or self._legacy.fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        super().store(body=body, patch=patch, essence=essence)
        if LEGACY_DIFF_BASE_ANNOTATION in body.metadata.annotations:
            patch.metadata.annotations[LEGACY_DIFF_BASE_ANNOTATION] = None


class ProgressInAnnotations(kopf.AnnotationsProgressStorage):  # type: ignore[misc]
    """kopf's handler progress in annotations (written only while a handler retries), minus kopf's marker.

    kopf adds a `<prefix>/kopf-managed` marker annotation whenever it stores progress, even when the
    progress of a handler that succeeded at once is purged in the same patch: that alone made the first
    handling of every object a metadata patch. The marker only tells kopf's diff bases to ignore the
    prefix's annotations, which `DiffBaseInStatus` does anyway.
    """

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        super().store(key=key, record=record, body=body, patch=patch)
        _drop_new_marker(body, patch)

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        super().touch(body=body, patch=patch, value=value)
        _drop_new_marker(body, patch)


def _drop_new_marker(body: kopf.Body, patch: kopf.Patch) -> None:
    if KOPF_MARKER_ANNOTATION in body.metadata.annotations:
        return
    annotations = patch.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict) and annotations.get(KOPF_MARKER_ANNOTATION) is not None:
        del annotations[KOPF_MARKER_ANNOTATION]
        if not annotations:
            del patch["metadata"]["annotations"]
        if not patch["metadata"]:
            del patch["metadata"]


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """kopf's own settings: our finalizer and storages, and no status writes of its own."""
    kopf_settings.persistence.finalizer = names.FINALIZER
    kopf_settings.persistence.progress_storage = ProgressInAnnotations(prefix=names.GROUP)
    kopf_settings.persistence.diffbase_storage = DiffBaseInStatus()
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

    @kopf.on.event(*RESOURCE, id="watch", registry=registry)
    async def on_event(event: Mapping[str, Any], body: kopf.Body, memo: Any, **_: Any) -> None:
        _runtime(memo).watched(event.get("type"), body)

    @kopf.on.resume(*RESOURCE, id="reconcile-resume", registry=registry)
    async def on_resume(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "resume")

    @kopf.on.create(*RESOURCE, id="reconcile-create", registry=registry)
    async def on_create(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "create")

    @kopf.on.update(*RESOURCE, id="reconcile-update", registry=registry)
    async def on_update(body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, **_: Any) -> None:
        await _reconcile(memo, body, patch, retry, "update")

    @kopf.on.delete(*RESOURCE, id="finalize", registry=registry)
    async def on_delete(
        body: kopf.Body, patch: kopf.Patch, retry: int, runtime: Any, memo: Any, **_: Any
    ) -> None:
        state = _runtime(memo)
        resource = Resource.from_body(body)
        state.scheduler.forget(resource.uid)
        elapsed = runtime.total_seconds() if hasattr(runtime, "total_seconds") else float(runtime or 0)
        started = time.monotonic()
        async with state.locks.hold(resource.uid):
            with ratelimit.scope(Priority.FOREGROUND):
                outcome = await state.reconciler.finalize(resource, attempt=retry, runtime=elapsed)
        state.deliver_events(body, resource, outcome)
        patch.status.update(state.status_patch(resource, outcome))
        _record("delete", resource, outcome, started)
        if not outcome.release:
            raise kopf.TemporaryError("deletion is waiting", delay=outcome.retry_after or 60.0)
        state.forget(resource.uid)

    return registry
