"""CreateKey, DescribeKey and ListKeys through the official SDK, with both signature schemes."""

from __future__ import annotations

import json

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client

from kms_emulator.testing import EmulatorHandle

KEY_METADATA_FIELDS = {
    "KeyId",
    "Arn",
    "KeyState",
    "CreationDate",
    "Creator",
    "Description",
    "KeySpec",
    "KeyUsage",
    "Origin",
    "ProtectionLevel",
    "PrimaryKeyVersion",
    "LastRotationDate",
    "MaterialExpireTime",
    "DeleteDate",
    "AutomaticRotation",
    "DKMSInstanceId",
}


def test_create_key_returns_every_metadata_field_except_deletion_protection(
    any_client: Client, emu: EmulatorHandle
) -> None:
    response = any_client.create_key(models.CreateKeyRequest(description="first key"))

    assert response.status_code == 200
    metadata = response.body.to_map()["KeyMetadata"]
    assert set(metadata) == KEY_METADATA_FIELDS
    assert metadata["KeyState"] == "Enabled"
    assert metadata["KeySpec"] == "Aliyun_AES_256"
    assert metadata["KeyUsage"] == "ENCRYPT/DECRYPT"
    assert metadata["Origin"] == "Aliyun_KMS"
    assert metadata["ProtectionLevel"] == "SOFTWARE"
    assert metadata["AutomaticRotation"] == "Disabled"
    assert metadata["DeleteDate"] == ""
    assert metadata["MaterialExpireTime"] == ""
    assert metadata["Arn"] == f"acs:kms:{emu.region_id}:{emu.account_id}:key/{metadata['KeyId']}"
    assert metadata["Creator"] == emu.account_id
    assert response.body.request_id


def test_describe_key_adds_deletion_protection_fields(any_client: Client) -> None:
    key_id = any_client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id

    metadata = any_client.describe_key(models.DescribeKeyRequest(key_id=key_id)).body.to_map()["KeyMetadata"]

    assert set(metadata) == KEY_METADATA_FIELDS | {"DeletionProtection"}
    assert metadata["DeletionProtection"] == "Disabled"


def test_list_keys_pages_through_keys_in_creation_order(client: Client, emu: EmulatorHandle) -> None:
    tag = json.dumps([{"TagKey": "suite", "TagValue": "paging"}])
    created = [
        client.create_key(models.CreateKeyRequest(tags=tag)).body.key_metadata.key_id for _ in range(5)
    ]
    filters = json.dumps([{"Key": "TagKey", "Values": ["suite"]}, {"Key": "TagValue", "Values": ["paging"]}])

    pages = [
        client.list_keys(models.ListKeysRequest(page_number=n, page_size=2, filters=filters)).body
        for n in (1, 2, 3)
    ]

    assert [k.key_id for page in pages for k in page.keys.key] == created
    assert all(page.total_count == 5 for page in pages)
    assert pages[0].keys.key[0].key_arn == f"acs:kms:{emu.region_id}:{emu.account_id}:key/{created[0]}"


async def test_async_methods_reach_the_emulator(client: Client) -> None:
    created = await client.create_key_async(models.CreateKeyRequest(description="async"))

    described = await client.describe_key_async(
        models.DescribeKeyRequest(key_id=created.body.key_metadata.key_id)
    )

    assert described.body.key_metadata.description == "async"
