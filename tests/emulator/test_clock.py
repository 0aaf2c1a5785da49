"""Time-driven behaviour, by advancing the emulator clock instead of waiting: deletion windows, rotation."""

from __future__ import annotations

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from kms_emulator.testing import EmulatorHandle

DAY = 86400


def test_a_pending_deletion_key_vanishes_after_its_window(client: Client, emu: EmulatorHandle) -> None:
    key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
    client.schedule_key_deletion(models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))

    emu.advance_clock(7 * DAY - 60)
    still_there = client.describe_key(models.DescribeKeyRequest(key_id=key_id)).body.key_metadata.key_state
    emu.advance_clock(61)

    assert still_there == "PendingDeletion"
    with pytest.raises(ClientException) as caught:
        client.describe_key(models.DescribeKeyRequest(key_id=key_id))
    assert caught.value.code == "Forbidden.KeyNotFound"
    listed = client.list_keys(models.ListKeysRequest(page_size=100)).body.keys.key
    assert key_id not in {k.key_id for k in listed}


def test_a_cancelled_deletion_survives_the_window(client: Client, emu: EmulatorHandle) -> None:
    key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
    client.schedule_key_deletion(models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))
    client.cancel_key_deletion(models.CancelKeyDeletionRequest(key_id=key_id))

    emu.advance_clock(8 * DAY)

    assert (
        client.describe_key(models.DescribeKeyRequest(key_id=key_id)).body.key_metadata.key_state == "Enabled"
    )


def test_an_enabled_rotating_key_gets_a_new_primary_version_each_interval(
    client: Client, emu: EmulatorHandle
) -> None:
    created = client.create_key(
        models.CreateKeyRequest(enable_automatic_rotation=True, rotation_interval="7d")
    ).body.key_metadata

    emu.advance_clock(7 * DAY + 1)
    rotated = client.describe_key(models.DescribeKeyRequest(key_id=created.key_id)).body.key_metadata

    assert rotated.primary_key_version != created.primary_key_version
    assert rotated.last_rotation_date == created.next_rotation_date
    assert rotated.next_rotation_date > created.next_rotation_date


def test_a_suspended_key_does_not_rotate_until_enabled(client: Client, emu: EmulatorHandle) -> None:
    created = client.create_key(
        models.CreateKeyRequest(enable_automatic_rotation=True, rotation_interval="7d")
    ).body.key_metadata
    client.disable_key(models.DisableKeyRequest(key_id=created.key_id))

    emu.advance_clock(8 * DAY)
    while_disabled = client.describe_key(models.DescribeKeyRequest(key_id=created.key_id)).body.key_metadata
    client.enable_key(models.EnableKeyRequest(key_id=created.key_id))
    after = client.describe_key(models.DescribeKeyRequest(key_id=created.key_id)).body.key_metadata

    assert while_disabled.primary_key_version == created.primary_key_version
    assert after.primary_key_version != created.primary_key_version
