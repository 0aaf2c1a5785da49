"""A KmsKey's life through the real operator, API server and the KMS emulator (via the official SDK)."""

from __future__ import annotations

import json

from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import (
    READ_PREFIXES,
    apply,
    condition,
    creates_for,
    describe,
    get,
    wait_for,
    wait_ready,
)
from tests.harness.operator import OperatorProcess

SEED_POLICY = json.dumps(
    {
        "Version": "1",
        "Statement": [
            {
                "Action": ["kms:*"],
                "Resource": ["*"],
                "Effect": "Allow",
                "Principal": {"RAM": ["acs:ram::1192853035118460:*"]},
                "Sid": "kms default key policy",
            }
        ],
    }
)


def test_seed_example_becomes_ready_with_the_state_the_seed_describes(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    spec = {
        "protectionLevel": "SOFTWARE",
        "description": "key description example",
        "keySpec": "Aliyun_AES_256",
        "keyUsage": "ENCRYPT/DECRYPT",
        "rotationInterval": "604800s",
        "dkmsInstanceId": "kst-hzz62ee5fe3b7ifgq5hmg",
        "origin": "Aliyun_KMS",
        "policy": SEED_POLICY,
        "enableAutomaticRotation": True,
        "automaticRotation": "Enabled",
        "status": "Enabled",
    }
    apply(kubectl, namespace, "seed", spec)
    body = wait_ready(kubectl, namespace, "seed")
    key_id = body["status"]["keyId"]
    meta = describe(kms, key_id)
    assert meta.key_state == "Enabled"
    assert meta.description == "key description example"
    assert meta.automatic_rotation == "Enabled"
    assert meta.rotation_interval == "604800s"
    assert meta.dkmsinstance_id == "kst-hzz62ee5fe3b7ifgq5hmg"
    assert body["status"]["rotationInterval"] == "604800s"
    assert body["status"]["arn"].endswith(f"key/{key_id}")
    policy = kms.get_key_policy(
        kms_models.GetKeyPolicyRequest(key_id=key_id, policy_name="default")
    ).body.policy
    assert json.loads(policy) == json.loads(SEED_POLICY)


def test_description_update_calls_update_key_description_only(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient, emulator: EmulatorHandle
) -> None:
    apply(kubectl, namespace, "desc", {"description": "before"})
    ready = wait_ready(kubectl, namespace, "desc")
    key_id, uid = ready["status"]["keyId"], ready["metadata"]["uid"]
    emulator.reset_calls()
    apply(kubectl, namespace, "desc", {"description": "after"})
    wait_for(
        kubectl, namespace, "desc", lambda b: b["status"].get("observedGeneration") == 2, what="generation 2"
    )
    assert describe(kms, key_id).description == "after"
    # The writes about this key (its ID, or its ownership tag: a CreateKey for it): other keys of the
    # module may be reconciled meanwhile.
    writes = [
        c.action
        for c in emulator.calls()
        if not c.action.startswith(READ_PREFIXES)
        and (key_id in json.dumps(c.params) or uid in json.dumps(c.params))
    ]
    assert writes == ["UpdateKeyDescription"]
    assert creates_for(emulator, uid) == []


def test_drift_in_description_is_corrected_by_resync(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    apply(kubectl, namespace, "drift", {"description": "declared"})
    key_id = wait_ready(kubectl, namespace, "drift")["status"]["keyId"]
    kms.update_key_description(
        kms_models.UpdateKeyDescriptionRequest(key_id=key_id, description="changed by hand")
    )
    wait_for(
        kubectl, namespace, "drift", lambda b: describe(kms, key_id).description == "declared", timeout=40
    )


def test_deleting_with_retain_keeps_the_key(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    apply(kubectl, namespace, "keep", {"description": "kept"})
    key_id = wait_ready(kubectl, namespace, "keep")["status"]["keyId"]
    kubectl("delete", "kmskey", "keep", "-n", namespace, "--timeout=30s")
    assert describe(kms, key_id).key_state == "Enabled"


def test_deleting_with_delete_policy_schedules_deletion(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    apply(kubectl, namespace, "gone", {"deletionPolicy": "Delete", "pendingWindowInDays": 7})
    key_id = wait_ready(kubectl, namespace, "gone")["status"]["keyId"]
    kubectl("delete", "kmskey", "gone", "-n", namespace, "--timeout=30s")
    assert describe(kms, key_id).key_state == "PendingDeletion"


def test_adopting_a_missing_key_reports_key_not_found_and_creates_nothing(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, emulator: EmulatorHandle
) -> None:
    emulator.reset_calls()
    apply(kubectl, namespace, "ghost", {"keyId": "00000000-0000-0000-0000-000000000000"})
    body = wait_for(
        kubectl,
        namespace,
        "ghost",
        lambda b: condition(b, "Ready").get("reason") == "KeyNotFound",
        what="KeyNotFound",
    )
    assert condition(body, "Ready")["status"] == "False"
    assert creates_for(emulator, body["metadata"]["uid"]) == []
    assert get(kubectl, namespace, "ghost")["status"].get("keyId") is None
