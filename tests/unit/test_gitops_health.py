"""The kstatus conditions the operator derives (conditions.kstatus), and the Argo CD health check run by a
real Lua interpreter on the committed test objects, as Argo CD's own resource-customization tests run it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmskey_operator import conditions, names
from kmskey_operator.conditions import FALSE, TRUE, Condition
from tests.harness.health import ARGOCD_CHECK, HEALTH_LUA, REPO_ROOT, argocd_health

HEALTH_TESTS = yaml.safe_load((ARGOCD_CHECK / "health_test.yaml").read_text())["tests"]


def by_type(derived: list[Condition]) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in derived}


# --- conditions.kstatus -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(conditions.STALLED_REASONS))
def test_a_refusal_for_good_is_stalled_with_the_synced_reason_and_message(reason: str) -> None:
    synced = Condition(names.SYNCED, FALSE, reason, f"{reason}: what to fix")
    for retrying in (False, True):  # DeletionBlocked retries slowly, yet needs a person
        derived = by_type(conditions.kstatus(synced, retrying=retrying))
        assert derived[names.STALLED] == (TRUE, reason, f"{reason}: what to fix")
        assert derived[names.RECONCILING][0] == FALSE


def test_the_tenancy_claim_reason_counts_as_a_refusal_for_good() -> None:
    assert names.REASON_KEY_CLAIMED == "KeyClaimed"
    assert "KeyClaimed" in conditions.STALLED_REASONS


@pytest.mark.parametrize("reason", ["KmsUnavailable", "Throttled", "KmsRejected"])
def test_a_retried_failure_is_reconciling_not_stalled(reason: str) -> None:
    synced = Condition(names.SYNCED, FALSE, reason, "UpdateKeyDescription failed: ...")
    derived = by_type(conditions.kstatus(synced, retrying=True))
    assert derived[names.RECONCILING] == (TRUE, reason, "UpdateKeyDescription failed: ...")
    assert derived[names.STALLED][0] == FALSE


def test_a_kms_refusal_the_operator_does_not_retry_is_stalled() -> None:
    synced = Condition(names.SYNCED, FALSE, names.REASON_KMS_REJECTED, "CreateKey failed: InvalidParameter")
    derived = by_type(conditions.kstatus(synced, retrying=False))
    assert derived[names.STALLED][:2] == (TRUE, names.REASON_KMS_REJECTED)


@pytest.mark.parametrize(
    "synced",
    [
        Condition(names.SYNCED, TRUE, names.REASON_RECONCILE_SUCCESS, "the KMS key matches the spec"),
        Condition(names.SYNCED, TRUE, names.REASON_OBSERVE_ONLY, "managementPolicy Observe"),
        Condition(names.SYNCED, FALSE, names.REASON_PAUSED, "writes paused"),
    ],
    ids=["synced", "observe-only", "paused"],
)
def test_a_synced_or_paused_key_is_neither_stalled_nor_reconciling(synced: Condition) -> None:
    for retrying in (False, True):  # a paused deletion waits with a retry, but is the user's choice
        derived = by_type(conditions.kstatus(synced, retrying=retrying))
        assert (derived[names.STALLED][0], derived[names.RECONCILING][0]) == (FALSE, FALSE)


# --- the Argo CD health check -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", HEALTH_TESTS, ids=[Path(t["inputPath"]).stem for t in HEALTH_TESTS])
def test_health_lua_gives_each_test_object_its_expected_status_and_message(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD_CHECK / case["inputPath"]).read_text())
    assert argocd_health(obj) == case["healthStatus"]


def test_the_test_objects_cover_every_argocd_status_the_check_returns() -> None:
    statuses = {case["healthStatus"]["status"] for case in HEALTH_TESTS}
    assert statuses == {"Healthy", "Degraded", "Progressing", "Suspended"}
    inputs = {case["inputPath"] for case in HEALTH_TESTS}
    assert inputs == {f"testdata/{p.name}" for p in (ARGOCD_CHECK / "testdata").glob("*.yaml")}


def _testdata(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ARGOCD_CHECK / "testdata" / f"{name}.yaml").read_text())
    return loaded


def test_a_stalled_condition_of_an_older_generation_is_progressing_not_degraded() -> None:
    # The user fixed the spec (generation 2); the operator has not looked at it yet.
    obj = copy.deepcopy(_testdata("invalid-spec"))
    obj["metadata"]["generation"] += 1
    health = argocd_health(obj)
    assert health["status"] == "Progressing"
    assert f"generation {obj['metadata']['generation']}" in health["message"]


def test_an_unobserved_generation_is_progressing_even_when_ready() -> None:
    obj = copy.deepcopy(_testdata("ready"))
    obj["metadata"]["generation"] += 1
    assert argocd_health(obj)["status"] == "Progressing"


def test_the_argocd_cm_patch_carries_health_lua_byte_for_byte() -> None:
    patch = yaml.safe_load((REPO_ROOT / "deploy" / "argocd" / "argocd-cm-kmskey-health.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    lua = patch["data"]["resource.customizations.health.kms.alicloud.dev_KmsKey"]
    assert lua == HEALTH_LUA.read_text(), "copy health.lua into deploy/argocd/argocd-cm-kmskey-health.yaml"
