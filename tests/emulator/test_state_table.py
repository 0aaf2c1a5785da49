"""The key-state table of reference §3.2: which operation each state allows, and the 409 code otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from kms_emulator.testing import EmulatorHandle

OK = None
SMF = "Rejected.StateModifiedFailed"
RPD = "Rejected.PendingDeletion"
STATES = ("Enabled", "Disabled", "PendingDeletion", "PendingImport")

Operation = Callable[[Client, str, str], Any]
TAG = models.TagResourcesRequestTag

# operation -> expected code per state, in STATES order (None = allowed).
TABLE: dict[str, tuple[Operation, tuple[str | None, ...]]] = {
    "EnableKey": (lambda c, k, r: c.enable_key(models.EnableKeyRequest(key_id=k)), (OK, OK, SMF, SMF)),
    "DisableKey": (lambda c, k, r: c.disable_key(models.DisableKeyRequest(key_id=k)), (OK, OK, SMF, SMF)),
    "ScheduleKeyDeletion": (
        lambda c, k, r: c.schedule_key_deletion(
            models.ScheduleKeyDeletionRequest(key_id=k, pending_window_in_days=7)
        ),
        (OK, OK, SMF, OK),
    ),
    "CancelKeyDeletion": (
        lambda c, k, r: c.cancel_key_deletion(models.CancelKeyDeletionRequest(key_id=k)),
        (SMF, SMF, OK, SMF),
    ),
    "UpdateKeyDescription": (
        lambda c, k, r: c.update_key_description(
            models.UpdateKeyDescriptionRequest(key_id=k, description="x")
        ),
        (OK, OK, RPD, OK),
    ),
    "UpdateRotationPolicy": (
        lambda c, k, r: c.update_rotation_policy(
            models.UpdateRotationPolicyRequest(
                key_id=k, enable_automatic_rotation=True, rotation_interval="7d"
            )
        ),
        (OK, "Rejected.Disabled", RPD, "Rejected.PendingImport"),
    ),
    "TagResource": (
        lambda c, k, r: c.tag_resource(
            models.TagResourceRequest(key_id=k, tags=json.dumps([{"TagKey": "a", "TagValue": "b"}]))
        ),
        (OK, OK, RPD, OK),
    ),
    "UntagResource": (
        lambda c, k, r: c.untag_resource(models.UntagResourceRequest(key_id=k, tag_keys='["a"]')),
        (OK, OK, RPD, OK),
    ),
    "TagResources": (
        lambda c, k, r: c.tag_resources(
            models.TagResourcesRequest(
                region_id=r, resource_type="key", resource_id=[k], tag=[TAG(key="a", value="b")]
            )
        ),
        (OK, OK, RPD, OK),
    ),
    "UntagResources": (
        lambda c, k, r: c.untag_resources(
            models.UntagResourcesRequest(region_id=r, resource_type="key", resource_id=[k], tag_key=["a"])
        ),
        (OK, OK, RPD, OK),
    ),
    "SetDeletionProtection": (
        lambda c, k, r: c.set_deletion_protection(
            models.SetDeletionProtectionRequest(key_id=k, enable_deletion_protection=False)
        ),
        (OK, OK, RPD, OK),
    ),
    "SetKeyPolicy": (
        lambda c, k, r: c.set_key_policy(models.SetKeyPolicyRequest(key_id=k, policy='{"Version":"1"}')),
        (OK, OK, RPD, OK),
    ),
    "DescribeKey": (lambda c, k, r: c.describe_key(models.DescribeKeyRequest(key_id=k)), (OK, OK, OK, OK)),
    "GetKeyPolicy": (
        lambda c, k, r: c.get_key_policy(models.GetKeyPolicyRequest(key_id=k)),
        (OK, OK, OK, OK),
    ),
    "ListResourceTags": (
        lambda c, k, r: c.list_resource_tags(models.ListResourceTagsRequest(key_id=k)),
        (OK, OK, OK, OK),
    ),
}

CASES = [
    pytest.param(operation, state, expected, id=f"{name}-in-{state}")
    for name, (operation, row) in TABLE.items()
    for state, expected in zip(STATES, row, strict=True)
]


def _key_in_state(emu: EmulatorHandle, state: str) -> str:
    backend = emu.backend
    key = backend.create_key(origin="EXTERNAL" if state == "PendingImport" else None)
    if state == "Disabled":
        backend.disable_key(key.key_id)
    if state == "PendingDeletion":
        backend.schedule_key_deletion(key.key_id, 7)
    assert backend.describe_key(key.key_id).key_state == state
    return key.key_id


@pytest.mark.parametrize(("operation", "state", "expected"), CASES)
def test_each_operation_in_each_key_state_follows_the_state_table(
    client: Client, emu: EmulatorHandle, operation: Operation, state: str, expected: str | None
) -> None:
    key_id = _key_in_state(emu, state)

    if expected is None:
        assert operation(client, key_id, emu.region_id).status_code == 200
        return
    with pytest.raises(ClientException) as caught:
        operation(client, key_id, emu.region_id)
    assert caught.value.code == expected
    assert caught.value.status_code == 409


def test_enable_and_disable_are_idempotent(client: Client, emu: EmulatorHandle) -> None:
    key_id = _key_in_state(emu, "Enabled")

    client.enable_key(models.EnableKeyRequest(key_id=key_id))
    client.disable_key(models.DisableKeyRequest(key_id=key_id))
    client.disable_key(models.DisableKeyRequest(key_id=key_id))

    assert emu.backend.describe_key(key_id).key_state == "Disabled"


def test_a_pending_deletion_key_with_rotation_reads_suspended(emu: EmulatorHandle) -> None:
    key = emu.backend.create_key(enable_automatic_rotation=True, rotation_interval="30d")

    emu.backend.schedule_key_deletion(key.key_id, 7)

    assert emu.backend.describe_key(key.key_id).automatic_rotation() == "Suspended"
