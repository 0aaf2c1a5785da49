"""Flux (kstatus) and Argo CD judge KmsKeys right: each condition the real operator writes, read back from the
real API server, gets the verdict a GitOps user expects from the real kstatus library and from the Argo CD
health check (deploy/argocd/kms.alicloud.dev/KmsKey/health.lua) run by a Lua interpreter.

The committed test objects beside health.lua (testdata/) are captures of these same objects: this module
checks that each still carries the conditions the operator writes today, and rewrites them when run with
KMSKEY_UPDATE_HEALTH_TESTDATA=1. docs/gitops.md tabulates the same verdicts.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, condition, create_key, wait_for, wait_ready
from tests.harness.health import ARGOCD_CHECK, argocd_health, kstatus
from tests.harness.operator import OperatorProcess

TIMEOUT = 90.0
TESTDATA = ARGOCD_CHECK / "testdata"
MISSING_KEY = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Expected:
    """The verdicts for one scenario, and how to know the operator has written its condition."""

    kstatus: str
    argocd: str
    synced_reason: str | None


EXPECTED = {
    "just-applied": Expected("InProgress", "Progressing", None),
    "ready": Expected("Current", "Healthy", "ReconcileSuccess"),
    "invalid-spec": Expected("Failed", "Degraded", "InvalidSpec"),
    "access-denied": Expected("Failed", "Degraded", "AccessDenied"),
    "force-new-conflict": Expected("Failed", "Degraded", "ForceNewConflict"),
    "key-not-found": Expected("Failed", "Degraded", "KeyNotFound"),
    "key-claimed": Expected("Failed", "Degraded", "KeyClaimed"),
    "kms-unavailable": Expected("InProgress", "Progressing", "KmsUnavailable"),
    "paused-with-pending-edit": Expected("InProgress", "Suspended", "Paused"),
    "key-material-pending": Expected("InProgress", "Progressing", "ReconcileSuccess"),
}


@pytest.fixture(scope="module")
def captured(
    operator: OperatorProcess,
    kubectl: Kubectl,
    crd_installed: list[str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> Iterator[dict[str, dict[str, Any]]]:
    """Each scenario's KmsKey as the API server returns it, once the operator wrote its condition."""
    namespace = f"gitops-health-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace, check=False)
    bodies: dict[str, dict[str, Any]] = {}

    def settle(name: str, extra: Callable[[dict[str, Any]], bool] = lambda b: True) -> None:
        reason = EXPECTED[name].synced_reason
        bodies[name] = wait_for(
            kubectl,
            namespace,
            name,
            lambda b: condition(b, "Synced").get("reason") == reason and extra(b),
            TIMEOUT,
            f"Synced reason {reason}",
        )

    # As stored before the operator looks at it (the CRD defaults status.observedGeneration to 0).
    bodies["just-applied"] = json.loads(
        kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(manifest(namespace, "just-applied", {"description": "just applied"})),
        ).stdout
    )

    apply(kubectl, namespace, "ready", {"description": "ready"})
    bodies["ready"] = wait_ready(kubectl, namespace, "ready", TIMEOUT)

    # Admission (off in this tier) would refuse it; the reconciler's own check catches it.
    apply(kubectl, namespace, "invalid-spec", {"policy": "not json"})
    settle("invalid-spec")

    emulator.set_fault("CreateKey", code="Forbidden.NoPermission", status=403, message="no permission")
    try:
        apply(kubectl, namespace, "access-denied", {"description": "denied"})
        settle("access-denied")
    finally:
        emulator.clear_faults()

    sm4_key = create_key(kms, key_spec="Aliyun_AES_256", description="made outside")
    apply(kubectl, namespace, "force-new-conflict", {"keyId": sm4_key, "keySpec": "Aliyun_SM4"})
    settle("force-new-conflict")

    apply(kubectl, namespace, "key-not-found", {"keyId": MISSING_KEY})
    settle("key-not-found")

    # A key another KmsKey has adopted (and so claimed) first.
    claimed_key = create_key(kms, description="adopted by another KmsKey")
    apply(kubectl, namespace, "key-claimed-first", {"keyId": claimed_key})
    wait_ready(kubectl, namespace, "key-claimed-first", TIMEOUT)
    apply(kubectl, namespace, "key-claimed", {"keyId": claimed_key})
    settle("key-claimed")

    # A transient outage during an edit: retried with backoff, the edit's generation not yet observed.
    apply(kubectl, namespace, "kms-unavailable", {"description": "before"})
    wait_ready(kubectl, namespace, "kms-unavailable", TIMEOUT)
    emulator.set_fault("UpdateKeyDescription", code="ServiceUnavailable", status=503)
    try:
        apply(kubectl, namespace, "kms-unavailable", {"description": "after"})
        settle("kms-unavailable")
    finally:
        emulator.clear_faults()
    bodies["kms-unavailable-recovered"] = wait_ready(kubectl, namespace, "kms-unavailable", TIMEOUT)

    apply(kubectl, namespace, "paused-with-pending-edit", {"description": "before"})
    wait_ready(kubectl, namespace, "paused-with-pending-edit", TIMEOUT)
    paused = {"kms.alicloud.dev/paused": "true"}
    apply(kubectl, namespace, "paused-with-pending-edit", {"description": "after"}, annotations=paused)
    settle("paused-with-pending-edit", lambda b: "after" in condition(b, "Synced").get("message", ""))

    apply(kubectl, namespace, "key-material-pending", {"origin": "EXTERNAL"})
    settle("key-material-pending", lambda b: condition(b, "Ready").get("reason") == "KeyMaterialPending")

    yield bodies
    # Gone before this module's operator stops: a later module's cluster-wide operator must not find them.
    kubectl("delete", "kmskey", "--all", "-n", namespace, "--timeout=60s", check=False, timeout=90)


def manifest(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _verdicts(bodies: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    names = list(bodies)
    judged = kstatus([bodies[n] for n in names])
    return {n: (judged[i]["status"], argocd_health(bodies[n])["status"]) for i, n in enumerate(names)}


def test_kstatus_and_argocd_give_each_condition_the_expected_verdict(
    captured: dict[str, dict[str, Any]],
) -> None:
    verdicts = _verdicts({n: captured[n] for n in EXPECTED})
    assert verdicts == {n: (e.kstatus, e.argocd) for n, e in EXPECTED.items()}


def test_a_recovered_transient_failure_is_current_and_healthy(captured: dict[str, dict[str, Any]]) -> None:
    assert _verdicts({"recovered": captured["kms-unavailable-recovered"]}) == {
        "recovered": ("Current", "Healthy")
    }


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e.kstatus == "Failed"])
def test_a_refusal_for_good_is_stalled_with_the_synced_message(
    captured: dict[str, dict[str, Any]], name: str
) -> None:
    body = captured[name]
    stalled, synced = condition(body, "Stalled"), condition(body, "Synced")
    assert (stalled["status"], stalled["reason"]) == ("True", synced["reason"])
    assert stalled["message"] == synced["message"] != ""
    assert argocd_health(body)["message"] == synced["message"]
    assert kstatus([body])[0]["message"] == synced["message"]
    assert condition(body, "Reconciling")["status"] == "False"


def test_a_transient_failure_is_reconciling_with_a_stale_generation(
    captured: dict[str, dict[str, Any]],
) -> None:
    body = captured["kms-unavailable"]
    assert body["status"]["observedGeneration"] < body["metadata"]["generation"]
    assert condition(body, "Reconciling")["status"] == "True"
    assert condition(body, "Stalled")["status"] == "False"
    assert "UpdateKeyDescription failed: ServiceUnavailable" in condition(body, "Reconciling")["message"]
    assert "generation" in kstatus([body])[0]["message"]


# --- the committed Argo CD test objects are these captures -------------------------------------------------


def _scrubbed(body: dict[str, Any]) -> dict[str, Any]:
    """A capture fit to commit: no managedFields or kopf bookkeeping, a stable namespace."""
    clean = copy.deepcopy(body)
    meta = clean["metadata"]
    for field in ("managedFields", "uid", "resourceVersion", "creationTimestamp"):
        meta.pop(field, None)
    meta["namespace"] = "team-a"
    annotations = {
        k: v
        for k, v in meta.get("annotations", {}).items()
        if "last-handled" not in k and "last-applied" not in k
    }
    meta["annotations"] = annotations
    if not annotations:
        meta.pop("annotations")
    return clean


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    """What a verdict depends on: each condition's type, status and reason, and whether generation is seen."""
    status = body.get("status", {})
    return {
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])),
        "generation observed": status.get("observedGeneration") == body["metadata"].get("generation"),
    }


def _write_testdata(captured: dict[str, dict[str, Any]]) -> None:
    """testdata/<scenario>.yaml and health_test.yaml (Argo CD's layout) from this run's captures."""
    bodies = {name: _scrubbed(captured[name]) for name in EXPECTED}
    tests = []
    for name, body in bodies.items():
        (TESTDATA / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
        tests.append({"healthStatus": argocd_health(body), "inputPath": f"testdata/{name}.yaml"})
    (ARGOCD_CHECK / "health_test.yaml").write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))


def test_the_committed_argocd_test_objects_match_what_the_operator_writes(
    captured: dict[str, dict[str, Any]],
) -> None:
    if os.environ.get("KMSKEY_UPDATE_HEALTH_TESTDATA") == "1":
        _write_testdata(captured)
    mismatched = {}
    for name in EXPECTED:
        committed = yaml.safe_load((TESTDATA / f"{name}.yaml").read_text())
        if _shape(committed) != _shape(captured[name]):
            mismatched[name] = {"committed": _shape(committed), "live": _shape(captured[name])}
    assert mismatched == {}, "rerun with KMSKEY_UPDATE_HEALTH_TESTDATA=1 to refresh testdata/"
