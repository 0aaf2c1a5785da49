"""Observability without a cluster: readiness, the active-replica gauge, metrics, log lines, settings."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import prometheus_client as prom
import pytest

from kmskey_operator import health, logs, metrics, names, redact, webhook
from kmskey_operator.settings import Settings


def value(name: str, **labels: str) -> float:
    return prom.REGISTRY.get_sample_value(name, labels) or 0.0


# --- readiness ------------------------------------------------------------------------------------------


def test_readiness_waits_for_startup_the_first_listing_the_kmskey_watch_and_the_webhook() -> None:
    readiness = health.Readiness(webhook_enabled=True)

    async def status() -> tuple[int, dict[str, Any]]:
        response = await readiness.handle(None)  # type: ignore[arg-type]
        assert response.text is not None
        return response.status, json.loads(response.text)

    async def scenario() -> None:
        code, body = await status()
        assert code == 503
        assert body["ready"] is False
        assert len(body["waiting_for"]) == 3  # startup, listing, webhook

        readiness.started.set()
        readiness.insights.ready_resources.set()
        readiness.insights.ready_namespaces.set()
        code, body = await status()
        assert code == 503
        assert any(names.CRD_NAME in reason for reason in body["waiting_for"])  # listed, but no KmsKey watch

        readiness.insights.watched_resources.add(kopf.Resource(names.GROUP, names.VERSION, names.PLURAL))
        code, body = await status()
        assert (code, body["waiting_for"]) == (503, ["the admission webhook server"])

        async def server(_fn: Any) -> AsyncIterator[dict[str, str]]:
            yield {"url": "https://127.0.0.1:9443"}

        serving = readiness.track_webhook(server)(None)
        await anext(serving)
        assert await status() == (200, {"ready": True, "waiting_for": []})
        await serving.aclose()  # type: ignore[attr-defined]
        assert (await status())[0] == 503  # the server stopped: not ready any more

    asyncio.run(scenario())


def test_readiness_without_the_webhook_does_not_wait_for_it() -> None:
    readiness = health.Readiness(webhook_enabled=False)
    readiness.started.set()
    readiness.insights.ready_resources.set()
    readiness.insights.ready_namespaces.set()
    readiness.insights.watched_resources.add(kopf.Resource(names.GROUP, names.VERSION, names.PLURAL))
    assert readiness.waiting_for() == []


# --- the active-replica gauge ---------------------------------------------------------------------------


def test_the_active_gauge_follows_kopfs_pause_and_resume() -> None:
    metrics.track_peering(peering=True)
    assert value("kmskey_active_replica") == 0  # kopf starts pre-paused with a peering name
    peering = logging.getLogger(metrics.PEERING_LOGGER)
    peering.info(
        "Resuming operations after the pause. Conflicting operators with the same priority are gone."
    )
    assert value("kmskey_active_replica") == 1
    peering.warning("Pausing all operators, including self: [...]")
    assert value("kmskey_active_replica") == 0
    peering.info("Resuming operations after the pause.")
    peering.info("Pausing operations in favour of [Peer(...)].")
    assert value("kmskey_active_replica") == 0
    metrics.track_peering(peering=False)
    assert value("kmskey_active_replica") == 1


# --- metrics --------------------------------------------------------------------------------------------


def test_a_reconcile_is_counted_by_trigger_and_result_and_drift_by_field() -> None:
    before = value("kmskey_reconciles_total", trigger="resync", result="ReconcileSuccess")
    drift_before = value("kmskey_drift_corrections_total", field="rotationInterval")
    metrics.observe_reconcile("resync", "ReconcileSuccess", 0.2, ["rotationInterval", "description"])
    assert value("kmskey_reconciles_total", trigger="resync", result="ReconcileSuccess") == before + 1
    assert value("kmskey_drift_corrections_total", field="rotationInterval") == drift_before + 1
    assert value("kmskey_reconcile_duration_seconds_count", trigger="resync") >= 1


def test_managed_resources_count_each_uid_once_by_ready_state_until_forgotten() -> None:
    start = {s: value("kmskey_managed_resources", ready=s) for s in metrics.READY_STATES}
    metrics.set_resource_ready("uid-obs-1", "False")
    metrics.set_resource_ready("uid-obs-1", "True")  # the same resource changed state: still one
    metrics.set_resource_ready("uid-obs-2", "bogus")
    assert value("kmskey_managed_resources", ready="True") == start["True"] + 1
    assert value("kmskey_managed_resources", ready="False") == start["False"]
    assert value("kmskey_managed_resources", ready="Unknown") == start["Unknown"] + 1
    metrics.forget_resource("uid-obs-1")
    metrics.forget_resource("uid-obs-2")
    assert {s: value("kmskey_managed_resources", ready=s) for s in metrics.READY_STATES} == start


@pytest.mark.parametrize(
    ("operation", "spec", "result"),
    [
        ("CREATE", {"description": "fine"}, "allowed"),
        ("CREATE", {"rotationInterval": "30d"}, "warned"),
        ("CREATE", {"deletionPolicy": "Delete"}, "denied"),
    ],
)
async def test_each_admission_review_is_counted_by_result(
    operation: str, spec: dict[str, Any], result: str
) -> None:
    before = value("kmskey_admission_requests_total", operation=operation, result=result)
    warnings: list[str] = []
    body = kopf.Body({"metadata": {"name": "k"}, "spec": spec})
    refused = False
    try:
        await webhook.validate_kmskey(warnings=warnings, operation=operation, new=body)
    except kopf.AdmissionError:
        refused = True
    # The count must match what the API server was told: refused exactly when counted "denied".
    assert refused == (result == "denied")
    assert bool(warnings) == (result == "warned")
    assert value("kmskey_admission_requests_total", operation=operation, result=result) == before + 1


# --- logs -----------------------------------------------------------------------------------------------


def record(name: str, level: int, msg: str, **extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_resource_key_and_action_also_for_kopfs_per_object_lines() -> None:
    formatter = logs.JsonFormatter()
    write = json.loads(
        formatter.format(
            record(
                "x", logging.INFO, "KMS write CreateKey", resource="ns/a", key_id="key-1", action="CreateKey"
            )
        )
    )
    assert (write["level"], write["resource"], write["key_id"], write["action"]) == (
        "INFO",
        "ns/a",
        "key-1",
        "CreateKey",
    )
    ref = {"namespace": "ns", "name": "b", "uid": "u", "kind": "KmsKey", "apiVersion": "v"}
    kopf_line = json.loads(
        formatter.format(record("kopf.objects", logging.INFO, "Handler 'x' succeeded.", k8s_ref=ref))
    )
    assert kopf_line["resource"] == "ns/b"
    text = logs.TextFormatter("%(message)s").format(record("x", logging.INFO, "KMS write X", resource="ns/a"))
    assert text == "KMS write X resource=ns/a"


def test_routine_kopf_lines_are_debug_and_temporary_failures_warnings() -> None:
    levels = logs.KopfLevels(logging.INFO)
    assert not levels.filter(record("kopf.objects", logging.INFO, "Timer 'resync' succeeded."))
    assert not levels.filter(record("kopf.objects", logging.INFO, "Webhook 'validate-kmskey' succeeded."))
    assert not levels.filter(record("kopf.objects", logging.INFO, "Handler 'watch' succeeded."))
    assert not levels.filter(record("aiohttp.access", logging.INFO, "GET /healthz 200"))
    assert levels.filter(record("kopf.objects", logging.INFO, "Handler 'reconcile-create' succeeded."))
    failed = record("kopf.objects", logging.ERROR, "Handler 'reconcile-create' failed temporarily: retrying")
    assert levels.filter(failed)
    assert failed.levelname == "WARNING"
    assert logs.KopfLevels(logging.DEBUG).filter(
        record("kopf.objects", logging.INFO, "Timer 'resync' succeeded.")
    )


def test_an_admission_refusal_is_info_and_other_permanent_failures_stay_errors() -> None:
    levels = logs.KopfLevels(logging.INFO)
    refused = record(
        "kopf.objects",
        logging.ERROR,
        "Webhook 'validate-kmskey' failed permanently: spec.keySpec is immutable",
    )
    assert levels.filter(refused)
    assert refused.levelname == "INFO"
    assert not logs.KopfLevels(logging.WARNING).filter(
        record("kopf.objects", logging.ERROR, "Webhook 'validate-kmskey' failed permanently: no")
    )
    handler = record("kopf.objects", logging.ERROR, "Handler 'reconcile-delete' failed permanently: boom")
    assert levels.filter(handler)
    assert handler.levelname == "ERROR"


def test_secret_values_and_their_base64_are_blanked_from_whole_lines() -> None:
    secret = "SECRET-VALUE-unit-0123456789"
    encoded = base64.b64encode(secret.encode()).decode()
    redactor = logs.RedactSecrets({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret})
    handler = logs._RedactingHandler(redactor)
    handler.setFormatter(logs.JsonFormatter())
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        import sys

        failure = record("x", logging.ERROR, f"saw {encoded}", exc_info=sys.exc_info())
    line = handler.format(failure)
    assert secret not in line
    assert encoded not in line
    assert line.count("[REDACTED]") == 2


def test_a_secret_registered_at_run_time_is_blanked_by_redactors_made_before_and_after() -> None:
    earlier = logs.RedactSecrets({})
    secret = "run-time-secret-" + "x7" * 8
    redact.register_secret(secret)
    later = logs.RedactSecrets({})
    line = f"key {secret} and {base64.b64encode(secret.encode()).decode()}"

    assert earlier.redact(line) == "key [REDACTED] and [REDACTED]"
    assert later.redact(line) == "key [REDACTED] and [REDACTED]"


# --- settings -------------------------------------------------------------------------------------------


def test_metrics_host_and_ready_port_are_settings() -> None:
    settings = Settings.from_env({"KMSKEY_METRICS_HOST": "127.0.0.1", "KMSKEY_READY_PORT": "9100"})
    assert (settings.metrics_host, settings.ready_port) == ("127.0.0.1", 9100)
    assert (Settings().metrics_host, Settings().ready_port, Settings().health_host) == (
        "0.0.0.0",
        8082,
        "0.0.0.0",
    )
