"""Observability end to end, as the on-call engineer sees it: /metrics, Events, logs, probes and kubectl.

One operator for the module, namespaced to the module's namespace, with JSON logs and the admission webhook
on, against an emulator whose only credential is a known, distinctive secret (the secret-scan test looks
for it in everything the operator emitted). Metric assertions compare scrapes taken before and after each
step, so they hold whatever ran earlier in the module.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient
from prometheus_client.parser import text_string_to_metric_families

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, condition, get, wait_for, wait_ready
from tests.harness.operator import OperatorProcess

ACCESS_KEY_ID = "LTAI5tObservabilityTest01"
SECRET = "SECRET-VALUE-obs-4c1f7a9e2d6b8035"
WRONG_SECRET = "WRONG-SECRET-VALUE-obs-8e3b5d0a1f9c"
TIMEOUT = 90.0  # two cores shared with other engineers' test runs: be patient, poll


# --- fixtures (override tests/e2e/conftest.py's for this module) -----------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(quotas=False, access_keys={ACCESS_KEY_ID: SECRET}, tls=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def obs_namespace(kubectl: Kubectl, crd_installed: list[str]) -> str:
    name = f"observability-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    kubectl: Kubectl,
    obs_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    configuration = f"kmskey-obs-{obs_namespace}"
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        kms_ca_file=emulator.ca_file,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=SECRET,
        log_dir=tmp_path_factory.mktemp("operator-obs"),
        extra_env={
            "WATCH_NAMESPACES": obs_namespace,
            "KMSKEY_RESYNC_SECONDS": "3",
            "KMSKEY_RESYNC_JITTER": "0",
            "KMSKEY_LOG_FORMAT": "json",
            "KMSKEY_WEBHOOK_ENABLED": "true",
            "KMSKEY_WEBHOOK_MANAGED": configuration,
            "KMSKEY_WEBHOOK_NAMESPACES": obs_namespace,
            "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
        },
    )
    process.start()
    try:
        poll(lambda: process.readiness()[0] == 200, "the operator's /readyz to answer 200")
        yield process
    finally:
        process.stop()
        kubectl("delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found", check=False)


# --- helpers --------------------------------------------------------------------------------------------


def poll(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout}s: {what}")


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of every sample `name` whose labels include `labels` (0 when there is none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for entry in family.samples:
            if entry.name == name and all(entry.labels.get(k) == v for k, v in labels.items()):
                total += entry.value
    return total


class Scrape:
    """Deltas between a scrape taken now and later ones."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.before = operator.metrics()

    def delta(self, name: str, **labels: str) -> float:
        return sample(self.operator.metrics(), name, **labels) - sample(self.before, name, **labels)

    def wait_delta(self, name: str, at_least: float, **labels: str) -> float:
        poll(lambda: self.delta(name, **labels) >= at_least, f"{name}{labels} to grow by {at_least}")
        return self.delta(name, **labels)


def events(kubectl: Kubectl, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if name is None or e.get("involvedObject", {}).get("name") == name]


def wait_event(kubectl: Kubectl, namespace: str, name: str, reason: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in events(kubectl, namespace, name) if e.get("reason") == reason]
        return bool(found)

    poll(seen, f"a {reason} event on {namespace}/{name}")
    return found[0]


def key_description(kms: KmsClient, key_id: str) -> str:
    return str(kms.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata.description)


def wait_gone(kubectl: Kubectl, namespace: str, name: str) -> None:
    poll(
        lambda: kubectl("get", "kmskey", name, "-n", namespace, check=False).returncode != 0,
        f"{namespace}/{name} to be deleted",
    )


def table_row(header: str, row: str) -> dict[str, str]:
    """kubectl's table as column -> cell, cut at the header's column starts (cells may be empty)."""
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


def patch_spec(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kubectl("patch", "kmskey", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}))


# --- probes ---------------------------------------------------------------------------------------------


def test_liveness_and_readiness_answer_once_watching_with_the_webhook_serving(
    operator: OperatorProcess,
) -> None:
    assert operator.healthy()
    status, body = operator.readiness()
    assert (status, body) == (200, {"ready": True, "waiting_for": []})


# --- metrics and events across a lifecycle --------------------------------------------------------------


def test_a_lifecycle_moves_each_metric_by_exactly_its_steps_and_posts_an_event_for_each(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str, kms: KmsClient
) -> None:
    ns = obs_namespace
    scrape = Scrape(operator)
    ready_before = sample(scrape.before, "kmskey_managed_resources", ready="True")

    apply(kubectl, ns, "life-a", {"description": "a", "deletionPolicy": "Delete", "pendingWindowInDays": 7})
    apply(kubectl, ns, "life-b", {"description": "b"})
    key_a = wait_ready(kubectl, ns, "life-a", TIMEOUT)["status"]["keyId"]
    key_b = wait_ready(kubectl, ns, "life-b", TIMEOUT)["status"]["keyId"]
    assert scrape.delta("kmskey_kms_api_calls_total", action="CreateKey", result="Success") == 2
    assert scrape.delta("kmskey_kms_api_call_duration_seconds_count", action="CreateKey") == 2
    assert scrape.delta("kmskey_reconciles_total", trigger="create", result="ReconcileSuccess") == 2
    assert scrape.delta("kmskey_reconcile_duration_seconds_count", trigger="create") == 2
    assert sample(operator.metrics(), "kmskey_managed_resources", ready="True") == ready_before + 2
    assert f"Created KMS key {key_a}" in wait_event(kubectl, ns, "life-a", "Created")["message"]

    # An update: one UpdateKeyDescription, one update reconcile, an Updated event naming the field.
    patch_spec(kubectl, ns, "life-b", {"description": "b2"})
    poll(lambda: key_description(kms, key_b) == "b2", "the description update to reach KMS")
    assert scrape.delta("kmskey_kms_api_calls_total", action="UpdateKeyDescription", result="Success") == 1
    scrape.wait_delta("kmskey_reconciles_total", 1, trigger="update", result="ReconcileSuccess")
    assert "description: 'b' -> 'b2'" in wait_event(kubectl, ns, "life-b", "Updated")["message"]

    # Drift: a change made in KMS is put back by a resync and counted by field, old -> new in the event.
    kms.update_key_description(kms_models.UpdateKeyDescriptionRequest(key_id=key_a, description="tampered"))
    poll(lambda: key_description(kms, key_a) == "a", "the resync to correct the drifted description")
    assert scrape.wait_delta("kmskey_drift_corrections_total", 1, field="description") == 1
    drift = wait_event(kubectl, ns, "life-a", "DriftCorrected")["message"]
    assert "description: 'tampered' -> 'a'" in drift
    assert scrape.delta("kmskey_drift_corrections_total") == 1  # no other field was touched

    # Deletion: Delete schedules deletion (the date is in the event), Retain keeps the key (its ID too).
    kubectl("delete", "kmskey", "life-a", "-n", ns, "--wait=false")
    kubectl("delete", "kmskey", "life-b", "-n", ns, "--wait=false")
    wait_gone(kubectl, ns, "life-a")
    wait_gone(kubectl, ns, "life-b")
    assert scrape.delta("kmskey_kms_api_calls_total", action="ScheduleKeyDeletion", result="Success") == 1
    assert scrape.delta("kmskey_reconciles_total", trigger="delete", result="Released") == 2
    scheduled = wait_event(kubectl, ns, "life-a", "DeletionScheduled")["message"]
    assert key_a in scheduled
    assert "in 7 days (on 20" in scheduled
    assert f"KMS key {key_b} retained" in wait_event(kubectl, ns, "life-b", "Retained")["message"]
    assert sample(operator.metrics(), "kmskey_managed_resources", ready="True") == ready_before

    text = operator.metrics()
    assert "kmskey_kms_rate_limiter_wait_seconds_total" in text
    assert sample(text, "kmskey_active_replica") == 1
    assert scrape.delta("kmskey_kms_api_calls_total", result="Success") > 0

    # Logs: JSON lines; one per KMS write, naming resource, key and action.
    writes = [
        entry
        for line in operator.log().splitlines()
        if line.startswith("{") and (entry := json.loads(line))["message"].startswith("KMS write")
    ]
    seen = {(w["resource"], w.get("key_id"), w["action"]) for w in writes}
    assert (f"{ns}/life-a", key_a, "CreateKey") in seen
    assert (f"{ns}/life-b", key_b, "UpdateKeyDescription") in seen
    assert (f"{ns}/life-a", key_a, "UpdateKeyDescription") in seen  # the drift correction
    assert (f"{ns}/life-a", key_a, "ScheduleKeyDeletion") in seen
    assert all(w["level"] == "INFO" for w in writes)


def test_every_log_line_of_the_operator_is_json(operator: OperatorProcess) -> None:
    lines = [line for line in operator.log().splitlines() if line.strip()]
    assert lines
    not_json = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        assert {"time", "level", "logger", "message"} <= set(entry), line
    assert not_json == []


def test_adoption_is_an_event_naming_the_key(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str, kms: KmsClient
) -> None:
    key_id = str(
        kms.create_key(kms_models.CreateKeyRequest(description="made outside")).body.key_metadata.key_id
    )
    apply(kubectl, obs_namespace, "adopted", {"keyId": key_id, "description": "made outside"})
    wait_ready(kubectl, obs_namespace, "adopted", TIMEOUT)
    assert wait_event(kubectl, obs_namespace, "adopted", "Adopted")["message"] == f"Adopted KMS key {key_id}"
    kubectl("delete", "kmskey", "adopted", "-n", obs_namespace)


def test_events_name_the_operator_as_their_reporting_component(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str
) -> None:
    apply(kubectl, obs_namespace, "reporter", {"description": "who posted this"})
    wait_event(kubectl, obs_namespace, "reporter", "Created")
    posted = events(kubectl, obs_namespace)
    assert posted
    for event in posted:
        # What `kubectl describe` shows as "From", and what events.k8s.io/v1 readers filter on.
        assert event["reportingComponent"] == "kmskey-operator", event
        assert event["source"]["component"] == "kmskey-operator", event
        assert event["reportingInstance"] == socket.gethostname(), event  # the pod, in a cluster
        assert event["metadata"]["name"].startswith("kmskey-operator-"), event
    kubectl("delete", "kmskey", "reporter", "-n", obs_namespace)


def test_a_kms_outage_posts_one_warning_with_code_and_request_id_not_one_per_retry(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str, emulator: EmulatorHandle
) -> None:
    ns = obs_namespace
    scrape = Scrape(operator)
    emulator.set_fault("CreateKey", code="ServiceUnavailable", status=503)
    try:
        apply(kubectl, ns, "storm", {"description": "storm"})
        # 20 s and at least five failed attempts (kopf's retries with backoff, and 3 s resyncs), each
        # answer with a new RequestId in its message.
        failing_since = time.monotonic()
        poll(
            lambda: (
                time.monotonic() - failing_since >= 20
                and scrape.delta(
                    "kmskey_kms_api_calls_total", action="CreateKey", result="ServiceUnavailable"
                )
                >= 5
            ),
            "20 s and five failed CreateKey attempts",
        )
        body = get(kubectl, ns, "storm")
        assert condition(body, "Synced")["reason"] == "KmsUnavailable"
        warnings = [e for e in events(kubectl, ns, "storm") if e.get("type") != "Normal"]
        assert len(warnings) == 1, [w["message"] for w in warnings]
        assert warnings[0]["reason"] == "KmsUnavailable"
        assert "CreateKey failed: ServiceUnavailable (HTTP 503)" in warnings[0]["message"]
        assert "[RequestId: " in warnings[0]["message"]
        assert (
            scrape.delta("kmskey_events_total", type="Warning", reason="KmsUnavailable", posted="false") >= 4
        )
        assert scrape.delta("kmskey_reconciles_total", result="KmsUnavailable") >= 5
    finally:
        emulator.clear_faults()
    wait_ready(kubectl, ns, "storm", TIMEOUT)
    wait_event(kubectl, ns, "storm", "Created")
    kubectl("delete", "kmskey", "storm", "-n", ns)


# --- admission ------------------------------------------------------------------------------------------


def test_admission_decisions_are_counted_by_result(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str
) -> None:
    scrape = Scrape(operator)

    def create(name: str, spec: dict[str, Any]) -> int:
        body = {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": name},
            "spec": spec,
        }
        command = ("create", "--dry-run=server", "-n", obs_namespace, "-f", "-")
        return kubectl(*command, input=json.dumps(body), check=False).returncode

    assert create("fine", {"description": "fine"}) == 0
    assert create("warned", {"rotationInterval": "30d"}) == 0
    assert create("denied", {"deletionPolicy": "Delete"}) != 0  # no pendingWindowInDays
    assert scrape.delta("kmskey_admission_requests_total", operation="CREATE", result="allowed") == 1
    assert scrape.delta("kmskey_admission_requests_total", operation="CREATE", result="warned") == 1
    assert scrape.delta("kmskey_admission_requests_total", operation="CREATE", result="denied") == 1


# --- kubectl --------------------------------------------------------------------------------------------


def test_kubectl_wait_for_ready_and_the_wide_columns(
    operator: OperatorProcess, kubectl: Kubectl, obs_namespace: str
) -> None:
    ns = obs_namespace
    spec = {
        "description": "wide",
        "enableAutomaticRotation": True,
        "rotationInterval": "30d",
        "enableDeletionProtection": True,
    }
    apply(kubectl, ns, "wide", spec)
    waited = kubectl(
        "wait",
        "--for=condition=Ready",
        "kmskey/wide",
        "-n",
        ns,
        f"--timeout={int(TIMEOUT)}s",
        timeout=TIMEOUT + 30,
    )
    assert "condition met" in waited.stdout
    wait_ready(kubectl, ns, "wide", TIMEOUT)
    header, row = kubectl("get", "kmskeys", "wide", "-n", ns, "-o", "wide").stdout.splitlines()
    values = table_row(header, row)
    for column in ("NAME", "KEY-ID", "STATE", "READY", "SYNCED", "ROTATION", "PROTECTION", "LAST-SYNC"):
        assert column in values, header
    status = get(kubectl, ns, "wide")["status"]
    assert values["KEY-ID"] == status["keyId"]
    assert (values["ROTATION"], values["PROTECTION"]) == ("Enabled", "Enabled")
    assert values["LAST-SYNC"] == status["lastSyncTime"]
    kubectl("delete", "kmskey", "wide", "-n", ns)


# --- credentials ----------------------------------------------------------------------------------------


def test_no_credential_reaches_logs_events_or_status(
    operator: OperatorProcess,
    emulator: EmulatorHandle,
    kubectl: Kubectl,
    kubeconfig: Path,
    obs_namespace: str,
    kms: KmsClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ns = obs_namespace
    denied_ns = f"obs-denied-{secrets.token_hex(3)}"
    kubectl("create", "namespace", denied_ns)
    wrong = OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        kms_ca_file=emulator.ca_file,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=WRONG_SECRET,
        log_dir=tmp_path_factory.mktemp("operator-wrong-secret"),
        extra_env={
            "WATCH_NAMESPACES": denied_ns,
            "KMSKEY_WEBHOOK_ENABLED": "false",
            "KMSKEY_LOG_LEVEL": "DEBUG",
        },
        name="wrong-secret",
    )
    statuses: list[str] = []
    wrong.start()
    try:
        # A whole lifecycle with the right secret: create, update, drift, delete.
        spec = {"description": "scan", "deletionPolicy": "Delete", "pendingWindowInDays": 7}
        apply(kubectl, ns, "scan", spec)
        key_id = wait_ready(kubectl, ns, "scan", TIMEOUT)["status"]["keyId"]
        patch_spec(kubectl, ns, "scan", {"description": "scan2"})
        poll(lambda: key_description(kms, key_id) == "scan2", "the update to reach KMS")
        kms.update_key_description(
            kms_models.UpdateKeyDescriptionRequest(key_id=key_id, description="drifted")
        )
        poll(lambda: key_description(kms, key_id) == "scan2", "the drift to be corrected")
        statuses.append(kubectl("get", "kmskeys", "-n", ns, "-o", "json").stdout)
        kubectl("delete", "kmskey", "scan", "-n", ns, "--wait=false")
        wait_gone(kubectl, ns, "scan")

        # The wrong secret: every call is refused, and the refusal is reported.
        apply(kubectl, denied_ns, "denied", {"description": "denied"})
        body = wait_for(
            kubectl,
            denied_ns,
            "denied",
            lambda b: condition(b, "Synced").get("reason") == "AccessDenied",
            TIMEOUT,
            "Synced=False AccessDenied",
        )
        assert "SignatureDoesNotMatch" in condition(body, "Synced")["message"]
        wait_event(kubectl, denied_ns, "denied", "AccessDenied")
        statuses.append(kubectl("get", "kmskeys", "-n", denied_ns, "-o", "json").stdout)
        # Gone before this operator stops: left behind, the next module's cluster-wide operator (with a good
        # secret) would create its key in that module's emulator, in the middle of that module's counts.
        kubectl("delete", "kmskey", "denied", "-n", denied_ns, "--wait=false")
        wait_gone(kubectl, denied_ns, "denied")
    finally:
        wrong.stop()

    emitted = {
        "operator log": operator.log(),
        "wrong-secret operator log": wrong.log(),
        "events": kubectl("get", "events", "-n", ns, "-o", "json").stdout,
        "events (denied)": kubectl("get", "events", "-n", denied_ns, "-o", "json").stdout,
        "KmsKey status": "\n".join(statuses),
    }
    assert "SignatureDoesNotMatch" in emitted["wrong-secret operator log"]
    # Nothing had to be blanked by the logs' last-line filter: no code path handed it a credential.
    assert "[REDACTED]" not in emitted["operator log"] + emitted["wrong-secret operator log"]
    for secret in (SECRET, WRONG_SECRET):
        for needle in (secret, base64.b64encode(secret.encode()).decode()):
            leaks = [where for where, text in emitted.items() if needle in text]
            assert leaks == [], f"a credential ({needle[:12]}...) appears in: {leaks}"


# --- the active replica (kopf peering) ------------------------------------------------------------------

PEERING_CRDS = (
    Path(__file__).resolve().parents[2] / "deploy/helm/kmskey-operator/crds/kopfpeerings.kopf.dev.yaml"
)


def test_the_active_replica_gauge_follows_kopf_peering(
    emulator: EmulatorHandle,
    kubectl: Kubectl,
    kubeconfig: Path,
    crd_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s", timeout=90)
    ns = f"obs-peering-{secrets.token_hex(3)}"
    kubectl("create", "namespace", ns)
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "obs", "namespace": ns},
    }
    kubectl("apply", "-f", "-", input=json.dumps(peering))

    def replica(name: str) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig=kubeconfig,
            kms_endpoint=emulator.endpoint,
            kms_ca_file=emulator.ca_file,
            access_key_id=ACCESS_KEY_ID,
            access_key_secret=SECRET,
            log_dir=tmp_path_factory.mktemp(name),
            extra_env={"WATCH_NAMESPACES": ns, "KMSKEY_PEERING": "obs", "KMSKEY_WEBHOOK_ENABLED": "false"},
            name=name,
        )

    def active(process: OperatorProcess) -> float:
        return sample(process.metrics(), "kmskey_active_replica")

    first, second = replica("peer-a"), replica("peer-b")
    first.start()
    try:
        poll(lambda: active(first) == 1, "the only peer to resume (kopf starts a peer paused)")
        second.start()
        try:
            # Two peers: exactly one reconciles, the other stands by (paused, yet ready: it serves admission).
            poll(lambda: active(first) + active(second) == 1, "exactly one active peer of two")
            time.sleep(3)  # a second look after a few keep-alive rounds: still exactly one
            assert active(first) + active(second) == 1
            leader, standby = (first, second) if active(first) == 1 else (second, first)
            assert standby.readiness() == (200, {"ready": True, "waiting_for": []})
        except BaseException:
            second.stop()
            raise
        leader.stop()  # a graceful exit tells the peers at once (lifetime 0)
        poll(lambda: active(standby) == 1, "the standby to take over")
    finally:
        first.stop()
        second.stop()
