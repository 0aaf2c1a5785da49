"""Every seed argument through the real operator: its create path, its update path and its drift.

Each test looks at KMS through the official SDK and counts the operator's KMS calls in the emulator's
call log, so "the right call, and only that call" is what passes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import READ_PREFIXES, apply, condition, describe, get, wait_for, wait_ready
from tests.harness.operator import OperatorProcess
from tests.harness.scrape import metric_sum as sample

INSTANCE = "kst-hzz62ee5fe3b7ifgq5hmg"


def policy(sid: str) -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": ["kms:*"],
                    "Resource": ["*"],
                    "Principal": {"RAM": ["*"]},
                }
            ],
        }
    )


def key_policy(kms: KmsClient, key_id: str) -> Any:
    text = kms.get_key_policy(
        kms_models.GetKeyPolicyRequest(key_id=key_id, policy_name="default")
    ).body.policy
    return json.loads(text)


def key_tags(kms: KmsClient, key_id: str) -> dict[str, str]:
    body = kms.list_resource_tags(kms_models.ListResourceTagsRequest(key_id=key_id)).body
    return {t.tag_key: t.tag_value for t in body.tags.tag}


def writes(emulator: EmulatorHandle) -> dict[str, int]:
    return {a: n for a, n in emulator.call_counts().items() if not a.startswith(READ_PREFIXES)}


# (spec, check of the created key)
CREATE_CASES: dict[str, tuple[dict[str, Any], Callable[[KmsClient, str], bool]]] = {
    "description": ({"description": "d"}, lambda k, i: describe(k, i).description == "d"),
    "keySpec": ({"keySpec": "Aliyun_SM4"}, lambda k, i: describe(k, i).key_spec == "Aliyun_SM4"),
    "keyUsage": (
        {"keySpec": "RSA_2048", "keyUsage": "SIGN/VERIFY"},
        lambda k, i: describe(k, i).key_usage == "SIGN/VERIFY" and describe(k, i).key_spec == "RSA_2048",
    ),
    "origin": ({"origin": "EXTERNAL"}, lambda k, i: describe(k, i).origin == "EXTERNAL"),
    "protectionLevel": ({"protectionLevel": "HSM"}, lambda k, i: describe(k, i).protection_level == "HSM"),
    "dkmsInstanceId": ({"dkmsInstanceId": INSTANCE}, lambda k, i: describe(k, i).dkmsinstance_id == INSTANCE),
    "enableAutomaticRotation": (
        {"enableAutomaticRotation": True, "rotationInterval": "7d"},
        lambda k, i: (
            describe(k, i).automatic_rotation == "Enabled" and describe(k, i).rotation_interval == "604800s"
        ),
    ),
    "automaticRotation": (
        {"automaticRotation": "Enabled", "rotationInterval": "30d"},
        lambda k, i: describe(k, i).rotation_interval == "2592000s",
    ),
    "enableDeletionProtection": (
        {"enableDeletionProtection": True},
        lambda k, i: describe(k, i).deletion_protection == "Enabled",
    ),
    "policy": (
        {"policy": policy("create")},
        lambda k, i: key_policy(k, i)["Statement"][0]["Sid"] == "create",
    ),
    "policyName": (
        {"policy": policy("named"), "policyName": "default"},
        lambda k, i: key_policy(k, i)["Statement"][0]["Sid"] == "named",
    ),
    "status": ({"status": "Disabled"}, lambda k, i: describe(k, i).key_state == "Disabled"),
    "tags": (
        {"tags": {"team": "platform", "env": "dev"}},
        lambda k, i: key_tags(k, i).get("team") == "platform",
    ),
}


@pytest.mark.parametrize("field", sorted(CREATE_CASES))
def test_each_seed_argument_reaches_kms_at_creation(
    field: str, operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    spec, check = CREATE_CASES[field]
    apply(kubectl, namespace, "k", spec)
    if spec.get("origin") == "EXTERNAL":
        body = wait_for(
            kubectl, namespace, "k", lambda b: bool(b.get("status", {}).get("keyId")), what="keyId"
        )
        assert condition(body, "Ready")["reason"] == "KeyMaterialPending"
    else:
        body = wait_ready(kubectl, namespace, "k")
    assert check(kms, body["status"]["keyId"])


# (spec before, spec after, the only write call expected, check after)
UPDATE_CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, Callable[[KmsClient, str], bool]]] = {
    "description": (
        {"description": "a"},
        {"description": "b"},
        "UpdateKeyDescription",
        lambda k, i: describe(k, i).description == "b",
    ),
    "status-disable": (
        {"status": "Enabled"},
        {"status": "Disabled"},
        "DisableKey",
        lambda k, i: describe(k, i).key_state == "Disabled",
    ),
    "status-enable": (
        {"status": "Disabled"},
        {"status": "Enabled"},
        "EnableKey",
        lambda k, i: describe(k, i).key_state == "Enabled",
    ),
    "rotation-on": (
        {},
        {"enableAutomaticRotation": True, "rotationInterval": "7d"},
        "UpdateRotationPolicy",
        lambda k, i: describe(k, i).automatic_rotation == "Enabled",
    ),
    "rotation-interval": (
        {"enableAutomaticRotation": True, "rotationInterval": "7d"},
        {"enableAutomaticRotation": True, "rotationInterval": "14d"},
        "UpdateRotationPolicy",
        lambda k, i: describe(k, i).rotation_interval == "1209600s",
    ),
    "rotation-off": (
        {"automaticRotation": "Enabled", "rotationInterval": "7d"},
        {"automaticRotation": "Disabled"},
        "UpdateRotationPolicy",
        lambda k, i: describe(k, i).automatic_rotation == "Disabled",
    ),
    "deletion-protection": (
        {"enableDeletionProtection": False},
        {"enableDeletionProtection": True},
        "SetDeletionProtection",
        lambda k, i: describe(k, i).deletion_protection == "Enabled",
    ),
    "policy": (
        {"policy": policy("one")},
        {"policy": policy("two")},
        "SetKeyPolicy",
        lambda k, i: key_policy(k, i)["Statement"][0]["Sid"] == "two",
    ),
}


@pytest.mark.parametrize("case", sorted(UPDATE_CASES))
def test_each_mutable_field_update_makes_exactly_its_kms_call(
    case: str,
    operator: OperatorProcess,
    kubectl: Kubectl,
    namespace: str,
    kms: KmsClient,
    emulator: EmulatorHandle,
) -> None:
    before, after, action, check = UPDATE_CASES[case]
    apply(kubectl, namespace, "k", before)
    key_id = wait_ready(kubectl, namespace, "k")["status"]["keyId"]
    emulator.reset_calls()
    apply(kubectl, namespace, "k", after)
    wait_ready(kubectl, namespace, "k")
    assert check(kms, key_id)
    assert writes(emulator) == {action: 1}


def _disable(k: KmsClient, i: str) -> None:
    k.disable_key(kms_models.DisableKeyRequest(key_id=i))


# (spec, a change made outside Kubernetes, check that the spec's value is back)
DRIFT_CASES: dict[
    str, tuple[dict[str, Any], Callable[[KmsClient, str], Any], Callable[[KmsClient, str], bool]]
] = {
    "status": ({"status": "Enabled"}, _disable, lambda k, i: describe(k, i).key_state == "Enabled"),
    "description": (
        {"description": "declared"},
        lambda k, i: k.update_key_description(
            kms_models.UpdateKeyDescriptionRequest(key_id=i, description="x")
        ),
        lambda k, i: describe(k, i).description == "declared",
    ),
    "rotation": (
        {"enableAutomaticRotation": True, "rotationInterval": "7d"},
        lambda k, i: k.update_rotation_policy(
            kms_models.UpdateRotationPolicyRequest(key_id=i, enable_automatic_rotation=False)
        ),
        lambda k, i: describe(k, i).automatic_rotation == "Enabled",
    ),
    "deletion-protection": (
        {"enableDeletionProtection": True},
        lambda k, i: k.set_deletion_protection(
            kms_models.SetDeletionProtectionRequest(key_id=i, enable_deletion_protection=False)
        ),
        lambda k, i: describe(k, i).deletion_protection == "Enabled",
    ),
    "policy": (
        {"policy": policy("declared")},
        lambda k, i: k.set_key_policy(
            kms_models.SetKeyPolicyRequest(key_id=i, policy=policy("hand"), policy_name="default")
        ),
        lambda k, i: key_policy(k, i)["Statement"][0]["Sid"] == "declared",
    ),
    "tags": (
        {"tags": {"team": "platform"}},
        lambda k, i: k.tag_resource(
            kms_models.TagResourceRequest(
                key_id=i, tags=json.dumps([{"TagKey": "team", "TagValue": "hijacked"}])
            )
        ),
        lambda k, i: key_tags(k, i).get("team") == "platform",
    ),
}


DRIFT_FIELD_NAMES = {
    "status": "status",
    "description": "description",
    "rotation": "automaticRotation",
    "deletion-protection": "enableDeletionProtection",
    "policy": "policy",
    "tags": "tags",
}


@pytest.mark.parametrize("field", sorted(DRIFT_CASES))
def test_drift_in_each_mutable_field_is_put_back_and_reported(
    field: str, operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    spec, tamper, check = DRIFT_CASES[field]
    apply(kubectl, namespace, "k", spec)
    key_id = wait_ready(kubectl, namespace, "k")["status"]["keyId"]
    tamper(kms, key_id)
    wait_for(kubectl, namespace, "k", lambda b: check(kms, key_id), timeout=40, what=f"{field} restored")

    def drift_events() -> list[dict[str, Any]]:
        result = kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=DriftCorrected", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items

    # The event is posted after the KMS write, asynchronously: poll for it rather than race it.
    wait_for(
        kubectl, namespace, "k", lambda b: bool(drift_events()), timeout=30, what="a DriftCorrected event"
    )
    assert DRIFT_FIELD_NAMES[field] in drift_events()[0]["message"]


def test_a_no_op_resync_makes_no_write_and_at_most_three_reads(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, emulator: EmulatorHandle
) -> None:
    apply(kubectl, namespace, "idle", {"description": "idle", "policy": policy("idle"), "tags": {"a": "b"}})
    ready = wait_ready(kubectl, namespace, "idle")
    key_id, uid = ready["status"]["keyId"], ready["metadata"]["uid"]

    def about_the_key(call: Any) -> bool:
        # Calls naming its ID, or its ownership tag (the UID) as a ListKeys filter.
        return key_id in json.dumps(call.params) or uid in json.dumps(call.params)

    # A no-op resync writes no status, so its boundaries are its first reads: the calls from one
    # DescribeKey of the key to the next are those of exactly one resync (every 3 s here, stretched by the
    # operator when the module's keys together need more reads than the drift checks' budget: the wait is
    # two intervals as the operator stretches them, plus a margin for a loaded machine).
    def stretch() -> float:
        return max(1.0, sample(operator.metrics(), "kmskey_resync_interval_stretch"))

    emulator.reset_calls()
    began = time.monotonic()
    while True:
        calls = emulator.calls()
        starts = [i for i, c in enumerate(calls) if c.action == "DescribeKey" and about_the_key(c)]
        if len(starts) >= 2:
            break
        waited, factor = time.monotonic() - began, stretch()
        assert waited < 2 * 3 * factor + 20, (
            f"no two resyncs of the key in {waited:.0f} s (stretch {factor:.2f})"
        )
        time.sleep(0.2)
    one_resync = calls[starts[0] : starts[1]]
    mine = [c for c in one_resync if about_the_key(c)]
    assert [c.action for c in mine if not c.action.startswith(READ_PREFIXES)] == []
    assert [c.action for c in mine].count("DescribeKey") == 1
    assert len(mine) <= 3, [c.action for c in mine]
    # A read that names no key at all (an unfiltered ListKeys) would be a scan of the account.
    assert [c.action for c in calls if c.action == "ListKeys" and "Filters" not in c.params] == []
    # Nothing was written to Kubernetes either: not even lastSyncTime (its heartbeat is 6 hours).
    after = get(kubectl, namespace, "idle")
    assert after["metadata"]["resourceVersion"] == ready["metadata"]["resourceVersion"]
    assert after["status"]["lastSyncTime"] == ready["status"]["lastSyncTime"]
