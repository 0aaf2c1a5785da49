"""Prometheus metrics: every KMS call, reconcile and admission decision is counted here."""

from __future__ import annotations

import prometheus_client as prom

from kmskey_operator.kms.gateway import CallRecord

KMS_CALLS = prom.Counter("kmskey_kms_api_calls_total", "KMS API calls", ["action", "result"])
KMS_LATENCY = prom.Histogram("kmskey_kms_api_call_seconds", "KMS API call latency", ["action"])
KMS_THROTTLE_WAIT = prom.Counter(
    "kmskey_kms_rate_limiter_wait_seconds_total", "Seconds spent waiting on the client-side rate limiter"
)


def observe_kms_call(record: CallRecord) -> None:
    KMS_CALLS.labels(record.action, record.result).inc()
    KMS_LATENCY.labels(record.action).observe(record.seconds)
    if record.throttle_wait_seconds:
        KMS_THROTTLE_WAIT.inc(record.throttle_wait_seconds)


_started = False


def start_server(port: int, addr: str = "0.0.0.0") -> None:
    global _started
    if port and not _started:
        prom.start_http_server(port, addr=addr)
        _started = True
