"""The reconciler's promises: adoption, deletion, pause/observe, crash safety, faults, invalid specs."""

from __future__ import annotations

import json
import time

from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import (
    READ_PREFIXES,
    apply,
    condition,
    create_key,
    creates_for,
    describe,
    get,
    wait_for,
    wait_ready,
)
from tests.harness.operator import OperatorProcess
from tests.harness.scrape import metric_sum as sample


def writes_for(emulator: EmulatorHandle, key_id: str) -> list[str]:
    return [
        c.action
        for c in emulator.calls()
        if not c.action.startswith(READ_PREFIXES) and key_id in json.dumps(c.params)
    ]


def test_adopting_a_matching_key_reconciles_mutable_fields_only(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient, emulator: EmulatorHandle
) -> None:
    key_id = create_key(kms, key_spec="Aliyun_AES_256", description="old")
    emulator.reset_calls()
    apply(kubectl, namespace, "adopt", {"keyId": key_id, "keySpec": "Aliyun_AES_256", "description": "new"})
    body = wait_ready(kubectl, namespace, "adopt")
    assert body["status"]["keyId"] == key_id
    assert describe(kms, key_id).description == "new"
    # The claim comes first (one TagResources), then only the field that differs.
    assert writes_for(emulator, key_id) == ["TagResources", "UpdateKeyDescription"]
    # No key created for it (the cluster-wide operator may meanwhile create keys of other modules' leftovers).
    uid = body["metadata"]["uid"]
    assert [c for c in emulator.calls() if c.action == "CreateKey" and uid in json.dumps(c.params)] == []
    naming_it = [c.action for c in emulator.calls() if uid in json.dumps(c.params)]
    assert naming_it == ["TagResources"]  # its claim; not even a ListKeys lookup
    reasons = kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Adopted" in reasons


def test_adopting_a_key_whose_force_new_fields_differ_reports_each_field_and_changes_none(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    key_id = create_key(kms, key_spec="RSA_2048", key_usage="SIGN/VERIFY")
    apply(
        kubectl,
        namespace,
        "mismatch",
        {
            "keyId": key_id,
            "keySpec": "Aliyun_AES_256",
            "keyUsage": "ENCRYPT/DECRYPT",
            "description": "adopted",
        },
    )
    body = wait_for(
        kubectl, namespace, "mismatch", lambda b: condition(b, "Synced").get("reason") == "ForceNewConflict"
    )
    message = condition(body, "Synced")["message"]
    assert "keySpec" in message
    assert "keyUsage" in message
    meta = describe(kms, key_id)
    assert (meta.key_spec, meta.key_usage) == ("RSA_2048", "SIGN/VERIFY")
    # Mutable fields are still reconciled.
    assert meta.description == "adopted"


def test_deletion_protection_blocks_delete_until_the_spec_allows_turning_it_off(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient
) -> None:
    spec = {"deletionPolicy": "Delete", "pendingWindowInDays": 7, "enableDeletionProtection": True}
    apply(kubectl, namespace, "guarded", spec)
    key_id = wait_ready(kubectl, namespace, "guarded")["status"]["keyId"]
    kubectl("delete", "kmskey", "guarded", "-n", namespace, "--wait=false")
    body = wait_for(
        kubectl, namespace, "guarded", lambda b: condition(b, "Synced").get("reason") == "DeletionBlocked"
    )
    assert "enableDeletionProtection" in condition(body, "Synced")["message"]
    assert describe(kms, key_id).key_state == "Enabled"
    kubectl(
        "patch",
        "kmskey",
        "guarded",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"enableDeletionProtection":false}}',
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and describe(kms, key_id).key_state != "PendingDeletion":
        time.sleep(0.5)
    assert describe(kms, key_id).key_state == "PendingDeletion"


def test_a_key_deleted_outside_kubernetes_is_reported_and_never_recreated(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient, emulator: EmulatorHandle
) -> None:
    apply(kubectl, namespace, "doomed", {"description": "doomed"})
    ready = wait_ready(kubectl, namespace, "doomed")
    key_id, uid = ready["status"]["keyId"], ready["metadata"]["uid"]
    kms.schedule_key_deletion(kms_models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))
    body = wait_for(
        kubectl,
        namespace,
        "doomed",
        lambda b: condition(b, "Ready").get("reason") == "KeyPendingDeletion",
        timeout=40,
    )
    assert condition(body, "Ready")["status"] == "False"
    emulator.reset_calls()
    emulator.advance_clock(8 * 86400)
    wait_for(
        kubectl,
        namespace,
        "doomed",
        lambda b: condition(b, "Ready").get("reason") == "KeyNotFound",
        timeout=40,
    )
    assert creates_for(emulator, uid) == []
    assert get(kubectl, namespace, "doomed")["status"]["keyId"] == key_id


def test_transient_kms_faults_converge_without_hot_loops(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, emulator: EmulatorHandle
) -> None:
    emulator.set_fault("*", rate=0.3, code="ServiceUnavailableTemporary", status=503)
    emulator.set_fault("CreateKey", rate=0.3, code="Throttling", status=400)
    emulator.reset_calls()
    try:
        for i in range(3):
            apply(kubectl, namespace, f"flaky-{i}", {"description": f"flaky {i}", "status": "Disabled"})
        uids = []
        for i in range(3):
            body = wait_ready(kubectl, namespace, f"flaky-{i}", timeout=240)
            assert body["status"]["keyState"] == "Disabled"
            uids.append(body["metadata"]["uid"])
    finally:
        emulator.clear_faults()
    # Every successful CreateKey for them, counted (a duplicate would be a second entry), and the keys KMS
    # holds.
    attempts = creates_for(emulator, *uids)
    created = sorted(str(c.params.get("Description")) for c in attempts if c.status == 200)
    assert created == ["flaky 0", "flaky 1", "flaky 2"]
    in_kms = sorted(
        k.description for k in emulator.backend.keys.values() if k.description.startswith("flaky")
    )
    assert in_kms == ["flaky 0", "flaky 1", "flaky 2"]
    assert len(attempts) < 40  # backoff, not a hot loop


def test_an_invalid_spec_that_got_past_admission_becomes_a_condition_and_makes_no_kms_call(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, emulator: EmulatorHandle
) -> None:
    emulator.reset_calls()
    apply(kubectl, namespace, "bad", {"keySpec": "EC_P256", "keyUsage": "ENCRYPT/DECRYPT"})
    body = wait_for(
        kubectl, namespace, "bad", lambda b: condition(b, "Synced").get("reason") == "InvalidSpec"
    )
    assert "keyUsage" in condition(body, "Synced")["message"]

    # And after a resync too (3 s here): the resync reconciles the same invalid spec. It writes nothing
    # (nothing changed), so it is seen in the operator's reconcile count.
    def invalid_resyncs() -> float:
        return sample(operator.metrics(), "kmskey_reconciles_total", trigger="resync", result="InvalidSpec")

    before = invalid_resyncs()
    wait_for(kubectl, namespace, "bad", lambda _: invalid_resyncs() > before, timeout=30, what="a resync")
    uid = body["metadata"]["uid"]
    # Other tests' keys resync meanwhile; no call may be about this resource (ListKeys by its ownership
    # tag, CreateKey), and no key may be created for it or for nobody.
    assert [c.action for c in emulator.calls() if uid in json.dumps(c.params)] == []
    assert creates_for(emulator, uid) == []


def test_paused_resources_get_no_writes_until_unpaused(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient, emulator: EmulatorHandle
) -> None:
    apply(kubectl, namespace, "p", {"description": "one"})
    key_id = wait_ready(kubectl, namespace, "p")["status"]["keyId"]
    kubectl("annotate", "kmskey", "p", "-n", namespace, "kms.alicloud.dev/paused=true")
    emulator.reset_calls()
    apply(kubectl, namespace, "p", {"description": "two"}, annotations={"kms.alicloud.dev/paused": "true"})
    # The pause alone is acted on at once ("no changes pending"); then the edit shows as pending.
    wait_for(
        kubectl,
        namespace,
        "p",
        lambda b: (
            condition(b, "Synced").get("reason") == "Paused"
            and "description" in condition(b, "Synced")["message"]
        ),
    )
    assert describe(kms, key_id).description == "one"
    assert writes_for(emulator, key_id) == []
    kubectl("annotate", "kmskey", "p", "-n", namespace, "kms.alicloud.dev/paused-")
    wait_for(kubectl, namespace, "p", lambda b: describe(kms, key_id).description == "two", timeout=30)


def test_observe_only_mirrors_the_key_and_never_writes_even_on_delete(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, kms: KmsClient, emulator: EmulatorHandle
) -> None:
    key_id = create_key(kms, description="theirs")
    emulator.reset_calls()
    spec = {
        "keyId": key_id,
        "managementPolicy": "Observe",
        "description": "mine",
        "deletionPolicy": "Delete",
        "pendingWindowInDays": 7,
    }
    apply(kubectl, namespace, "watcher", spec)
    body = wait_for(
        kubectl, namespace, "watcher", lambda b: condition(b, "Synced").get("reason") == "ObserveOnly"
    )
    assert body["status"]["keyState"] == "Enabled"
    assert "description" in condition(body, "Synced")["message"]
    kubectl("delete", "kmskey", "watcher", "-n", namespace, "--timeout=30s")
    assert describe(kms, key_id).description == "theirs"
    assert describe(kms, key_id).key_state == "Enabled"
    assert writes_for(emulator, key_id) == []
