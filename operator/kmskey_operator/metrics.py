"""Prometheus metrics: KMS calls, reconciles, drift corrections, events and admission decisions, counted here.

The rest of the operator calls one small function per fact (`observe_reconcile`, `observe_admission`, ...);
only this module knows metric names and labels. Label values are bounded vocabularies (KMS action names and
error codes, condition reasons, spec field names): never a resource name, key ID or message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kmskey_operator.kms.gateway import CallRecord

KMS_CALLS = prom.Counter(
    "kmskey_kms_api_calls_total",
    "KMS API calls, by action and result (Success or the KMS error code)",
    ["action", "result"],
)
KMS_LATENCY = prom.Histogram(
    "kmskey_kms_api_call_duration_seconds",
    "KMS API call latency (after the rate limiter), by action",
    ["action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
KMS_THROTTLE_WAIT = prom.Counter(
    "kmskey_kms_rate_limiter_wait_seconds_total",
    "Seconds KMS calls spent waiting on the operator's own client-side rate limiter",
)
RECONCILES = prom.Counter(
    "kmskey_reconciles_total",
    "Reconciles, by trigger (create, update, resume, resync, delete) and result (the Synced condition's "
    "reason, e.g. ReconcileSuccess, KmsUnavailable, Paused; Released when a deletion let the resource go)",
    ["trigger", "result"],
)
RECONCILE_DURATION = prom.Histogram(
    "kmskey_reconcile_duration_seconds",
    "Duration of one reconcile, KMS calls and rate-limiter waits included, by trigger",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DRIFT_CORRECTIONS = prom.Counter(
    "kmskey_drift_corrections_total",
    "Fields changed outside Kubernetes that the operator put back, by spec field",
    ["field"],
)
EVENTS = prom.Counter(
    "kmskey_events_total",
    "Kubernetes Events about KmsKeys, by type and reason; posted=false counts repeats withheld",
    ["type", "reason", "posted"],
)
ADMISSION = prom.Counter(
    "kmskey_admission_requests_total",
    "Admission reviews answered by the validating webhook, by operation and result (allowed, warned, denied)",
    ["operation", "result"],
)
ACTIVE = prom.Gauge(
    "kmskey_active_replica",
    "1 when this replica processes KmsKeys (standalone, or the active kopf peer); 0 while paused for a peer",
)
RESYNC_KEYS = prom.Gauge(
    "kmskey_resync_scheduled_keys",
    "KmsKeys whose next drift check is scheduled on this replica (0 while paused for a kopf peer)",
)
RESYNC_STRETCH = prom.Gauge(
    "kmskey_resync_interval_stretch",
    "How much drift-check intervals are stretched to fit the read budget (KMSKEY_RESYNC_READ_SHARE of "
    "KMSKEY_READ_QPS), the highest of any account and region; 1 = as configured",
)
RESYNC_DELAY = prom.Histogram(
    "kmskey_resync_start_delay_seconds",
    "How late each drift check started after it was due (waiting for the read budget or a free slot)",
    buckets=(0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0),
)
EVENT_LOOP_LAG = prom.Histogram(
    "kmskey_event_loop_lag_seconds",
    "How long each tick a probe posted to the main event loop waited to run: how long the loop was busy "
    "before it could serve anything else (the webhook, the watch streams, kopf's workers)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0),
)
EVENT_LOOP_TICK_WAIT = prom.Gauge(
    "kmskey_event_loop_tick_wait_seconds",
    "Seconds the tick a probe posted has waited for the main event loop so far, 0 when none waits (read at "
    "scrape time; /healthz fails above KMSKEY_LIVENESS_STALL_SECONDS)",
)
READY_STATES = ("True", "False", "Unknown")


class _ManagedResources(Collector):
    """`kmskey_managed_resources{ready}`: the Ready condition of each KmsKey this replica reconciled."""

    def __init__(self) -> None:
        self.ready_by_uid: dict[str, str] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kmskey_managed_resources",
            "KmsKeys this replica has reconciled, by their Ready condition (True, False, Unknown)",
            labels=["ready"],
        )
        states = list(self.ready_by_uid.values())
        for state in READY_STATES:
            family.add_metric([state], states.count(state))
        yield family


MANAGED = _ManagedResources()
prom.REGISTRY.register(MANAGED)


# --- one function per fact


def observe_kms_call(record: CallRecord) -> None:
    KMS_CALLS.labels(record.action, record.result).inc()
    KMS_LATENCY.labels(record.action).observe(record.seconds)
    if record.throttle_wait_seconds:
        KMS_THROTTLE_WAIT.inc(record.throttle_wait_seconds)


def observe_reconcile(trigger: str, result: str, seconds: float, drift_fields: Iterable[str] = ()) -> None:
    RECONCILES.labels(trigger, result).inc()
    RECONCILE_DURATION.labels(trigger).observe(seconds)
    for field in drift_fields:
        DRIFT_CORRECTIONS.labels(field).inc()


def set_resource_ready(uid: str, ready: str) -> None:
    MANAGED.ready_by_uid[uid] = ready if ready in READY_STATES else "Unknown"


def forget_resource(uid: str) -> None:
    MANAGED.ready_by_uid.pop(uid, None)


def observe_event(type_: str, reason: str, *, posted: bool) -> None:
    EVENTS.labels(type_, reason, "true" if posted else "false").inc()


def observe_admission(operation: str, result: str) -> None:
    ADMISSION.labels(operation or "UNKNOWN", result).inc()


_activity_listeners: list[Callable[[bool], None]] = []
_active = True


def set_active(active: bool) -> None:
    global _active
    ACTIVE.set(1 if active else 0)
    changed, _active = _active != active, active
    if changed:
        for listener in _activity_listeners:
            listener(active)


def on_activity(listener: Callable[[bool], None]) -> None:
    """Call `listener(active)` now and whenever this replica is paused or resumed by kopf peering."""
    _activity_listeners.append(listener)
    listener(_active)


def set_resync_keys(count: int) -> None:
    RESYNC_KEYS.set(count)


def set_resync_stretch(factor: float) -> None:
    RESYNC_STRETCH.set(factor)


def observe_resync_start(delay_seconds: float) -> None:
    RESYNC_DELAY.observe(max(0.0, delay_seconds))


def is_active() -> bool:
    """Whether this replica processes resources now (standalone, or the active kopf peer)."""
    return bool(ACTIVE._value.get() == 1)


# --- whether this replica is the active kopf peer

PEERING_LOGGER = "kopf._core.engines.peering"


class PeeringActivity(logging.Handler):
    """Follow kopf's pause and resume of this replica, which kopf only reports in its peering log lines.

    kopf keeps the paused state in a private toggle and exposes it nowhere else (no API, no hook); its
    peering module logs "Pausing operations in favour of ...", "Pausing all operators, including self"
    and "Resuming operations after the pause" at each transition, and these lines are what we follow.
    If a kopf upgrade rewords them the gauge stays at its start value (0 with peering): a visible, safe
    failure, caught by the e2e peering test.
    """

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Pausing operations", "Pausing all operators")):
            set_active(False)
        elif message.startswith("Resuming operations"):
            set_active(True)


def track_peering(*, peering: bool) -> None:
    """Standalone: active from the start. With peering kopf starts paused until it has read its peers."""
    set_active(not peering)
    if peering:
        peering_logger = logging.getLogger(PEERING_LOGGER)
        if peering_logger.getEffectiveLevel() > logging.INFO:
            peering_logger.setLevel(logging.INFO)  # our output handler still filters by the log level
        if not any(isinstance(h, PeeringActivity) for h in peering_logger.handlers):
            peering_logger.addHandler(PeeringActivity())


_started = False


def start_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `addr:port` (a daemon thread of prometheus_client); 0 = off; once per process."""
    global _started
    if port and not _started:
        prom.start_http_server(port, addr=addr)
        _started = True


def observe_loop_lag(seconds: float) -> None:
    EVENT_LOOP_LAG.observe(seconds)


def track_heartbeat(waiting: Callable[[], float]) -> None:
    """How long the posted tick has waited for the main loop, read when scraped."""
    EVENT_LOOP_TICK_WAIT.set_function(waiting)
