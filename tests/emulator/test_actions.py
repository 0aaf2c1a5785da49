"""Every KMS action, driven by the official SDK with both signature schemes (ACS3 and classic v1)."""

from __future__ import annotations

import json

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client

from kms_emulator.testing import DEFAULT_INSTANCE_IDS, EmulatorHandle


def _new_key(client: Client, **fields: object) -> str:
    return str(client.create_key(models.CreateKeyRequest(**fields)).body.key_metadata.key_id)


def _describe(client: Client, key_id: str) -> dict[str, str]:
    body = client.describe_key(models.DescribeKeyRequest(key_id=key_id)).body.to_map()
    metadata: dict[str, str] = body["KeyMetadata"]
    return metadata


def test_update_key_description_changes_the_description(any_client: Client) -> None:
    key_id = _new_key(any_client, description="old")

    response = any_client.update_key_description(
        models.UpdateKeyDescriptionRequest(key_id=key_id, description="new")
    )

    assert response.body.request_id
    assert _describe(any_client, key_id)["Description"] == "new"


def test_an_empty_description_clears_it(any_client: Client) -> None:
    key_id = _new_key(any_client, description="old")

    any_client.update_key_description(models.UpdateKeyDescriptionRequest(key_id=key_id, description=""))

    assert _describe(any_client, key_id)["Description"] == ""


def test_disable_then_enable_key_round_trips_the_state(any_client: Client) -> None:
    key_id = _new_key(any_client)

    any_client.disable_key(models.DisableKeyRequest(key_id=key_id))
    disabled = _describe(any_client, key_id)["KeyState"]
    any_client.enable_key(models.EnableKeyRequest(key_id=key_id))

    assert disabled == "Disabled"
    assert _describe(any_client, key_id)["KeyState"] == "Enabled"


def test_update_rotation_policy_normalises_the_interval_to_seconds(any_client: Client) -> None:
    key_id = _new_key(any_client)

    any_client.update_rotation_policy(
        models.UpdateRotationPolicyRequest(
            key_id=key_id, enable_automatic_rotation=True, rotation_interval="8d"
        )
    )

    metadata = _describe(any_client, key_id)
    assert metadata["AutomaticRotation"] == "Enabled"
    assert metadata["RotationInterval"] == "691200s"
    assert metadata["NextRotationDate"]


def test_turning_rotation_off_omits_interval_and_next_date(any_client: Client) -> None:
    key_id = _new_key(any_client, enable_automatic_rotation=True, rotation_interval="605800s")

    any_client.update_rotation_policy(
        models.UpdateRotationPolicyRequest(key_id=key_id, enable_automatic_rotation=False)
    )

    metadata = _describe(any_client, key_id)
    assert metadata["AutomaticRotation"] == "Disabled"
    assert "RotationInterval" not in metadata
    assert "NextRotationDate" not in metadata


def test_a_disabled_rotating_key_reads_suspended_and_keeps_its_interval(any_client: Client) -> None:
    key_id = _new_key(any_client, enable_automatic_rotation=True, rotation_interval="7d")

    any_client.disable_key(models.DisableKeyRequest(key_id=key_id))
    suspended = _describe(any_client, key_id)
    any_client.enable_key(models.EnableKeyRequest(key_id=key_id))

    assert suspended["AutomaticRotation"] == "Suspended"
    assert suspended["RotationInterval"] == "604800s"
    assert _describe(any_client, key_id)["AutomaticRotation"] == "Enabled"


def test_set_deletion_protection_by_key_id_shows_the_description(any_client: Client) -> None:
    key_id = _new_key(any_client)

    any_client.set_deletion_protection(
        models.SetDeletionProtectionRequest(
            key_id=key_id, enable_deletion_protection=True, deletion_protection_description="keep me"
        )
    )

    metadata = _describe(any_client, key_id)
    assert metadata["DeletionProtection"] == "Enabled"
    assert metadata["DeletionProtectionDescription"] == "keep me"


def test_set_deletion_protection_by_arn_and_turning_it_off_drops_the_description(any_client: Client) -> None:
    key_id = _new_key(any_client)
    arn = _describe(any_client, key_id)["Arn"]

    any_client.set_deletion_protection(
        models.SetDeletionProtectionRequest(protected_resource_arn=arn, enable_deletion_protection=True)
    )
    any_client.set_deletion_protection(
        models.SetDeletionProtectionRequest(protected_resource_arn=arn, enable_deletion_protection=False)
    )

    metadata = _describe(any_client, key_id)
    assert metadata["DeletionProtection"] == "Disabled"
    assert "DeletionProtectionDescription" not in metadata


def test_schedule_key_deletion_sets_pending_deletion_and_a_delete_date(any_client: Client) -> None:
    key_id = _new_key(any_client)

    any_client.schedule_key_deletion(
        models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7)
    )

    metadata = _describe(any_client, key_id)
    assert metadata["KeyState"] == "PendingDeletion"
    assert metadata["DeleteDate"] > metadata["CreationDate"]


def test_cancel_key_deletion_returns_the_key_to_enabled(any_client: Client) -> None:
    key_id = _new_key(any_client)
    any_client.disable_key(models.DisableKeyRequest(key_id=key_id))
    any_client.schedule_key_deletion(
        models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=30)
    )

    any_client.cancel_key_deletion(models.CancelKeyDeletionRequest(key_id=key_id))

    metadata = _describe(any_client, key_id)
    assert metadata["KeyState"] == "Enabled"
    assert metadata["DeleteDate"] == ""


def test_tag_resource_untag_resource_and_list_resource_tags(any_client: Client) -> None:
    key_id = _new_key(any_client)

    any_client.tag_resource(
        models.TagResourceRequest(
            key_id=key_id,
            tags=json.dumps([{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}]),
        )
    )
    any_client.untag_resource(models.UntagResourceRequest(key_id=key_id, tag_keys=json.dumps(["a"])))
    tags = any_client.list_resource_tags(models.ListResourceTagsRequest(key_id=key_id)).body.to_map()

    assert tags["Tags"] == {"Tag": [{"KeyId": key_id, "TagKey": "b", "TagValue": "2"}]}


def test_tag_resources_untag_resources_and_list_tag_resources(
    any_client: Client, emu: EmulatorHandle
) -> None:
    keys = [_new_key(any_client), _new_key(any_client)]
    tag = models.TagResourcesRequestTag

    any_client.tag_resources(
        models.TagResourcesRequest(
            region_id=emu.region_id,
            resource_type="key",
            resource_id=keys,
            tag=[tag(key="team", value="kms"), tag(key="env", value="dev")],
        )
    )
    any_client.untag_resources(
        models.UntagResourcesRequest(
            region_id=emu.region_id, resource_type="key", resource_id=keys, tag_key=["env"]
        )
    )
    listed = any_client.list_tag_resources(
        models.ListTagResourcesRequest(region_id=emu.region_id, resource_type="key", resource_id=keys)
    ).body

    rows = [
        (r.resource_id, r.resource_type, r.tag_key, r.tag_value) for r in listed.tag_resources.tag_resource
    ]
    assert rows == [(k, "key", "team", "kms") for k in keys]
    assert listed.next_token == ""


def test_untag_resources_with_all_removes_every_tag(any_client: Client, emu: EmulatorHandle) -> None:
    key_id = _new_key(any_client, tags=json.dumps([{"TagKey": "x", "TagValue": "1"}]))

    any_client.untag_resources(
        models.UntagResourcesRequest(
            region_id=emu.region_id, resource_type="key", resource_id=[key_id], all=True
        )
    )

    assert emu.backend.describe_key(key_id).tags == {}


def test_list_tag_resources_filters_by_tag_and_pages_with_next_token(
    client: Client, emu: EmulatorHandle
) -> None:
    marker = models.ListTagResourcesRequestTag(key="page-test", value="yes")
    tags = json.dumps(
        [{"TagKey": "page-test", "TagValue": "yes"}]
        + [{"TagKey": f"t{i}", "TagValue": "v"} for i in range(19)]
    )
    for _ in range(11):  # 11 keys x 20 tags = 220 rows: two pages of at most 200
        _new_key(client, tags=tags)

    request = models.ListTagResourcesRequest(region_id=emu.region_id, resource_type="key", tag=[marker])
    first = client.list_tag_resources(request).body
    request.next_token = first.next_token
    second = client.list_tag_resources(request).body

    assert len(first.tag_resources.tag_resource) == 200
    assert len(second.tag_resources.tag_resource) == 20
    assert second.next_token == ""


def test_set_key_policy_then_get_key_policy_returns_it(any_client: Client) -> None:
    key_id = _new_key(any_client)
    policy = json.dumps({"Version": "1", "Statement": []})

    any_client.set_key_policy(models.SetKeyPolicyRequest(key_id=key_id, policy=policy, policy_name="default"))

    got = any_client.get_key_policy(models.GetKeyPolicyRequest(key_id=key_id, policy_name="default"))
    assert got.body.policy == policy


def test_a_key_created_without_a_policy_has_the_default_policy(
    any_client: Client, emu: EmulatorHandle
) -> None:
    key_id = _new_key(any_client)

    policy = json.loads(any_client.get_key_policy(models.GetKeyPolicyRequest(key_id=key_id)).body.policy)

    assert policy["Version"] == "1"
    assert policy["Statement"][0]["Principal"] == {"RAM": [f"acs:ram::{emu.account_id}:*"]}


def test_key_policy_actions_accept_the_key_arn(any_client: Client) -> None:
    key_id = _new_key(any_client, policy=json.dumps({"Version": "1", "Statement": []}))
    arn = _describe(any_client, key_id)["Arn"]

    got = any_client.get_key_policy(models.GetKeyPolicyRequest(key_id=arn, policy_name="default"))

    assert json.loads(got.body.policy) == {"Version": "1", "Statement": []}


def test_describe_regions_lists_the_emulated_region(any_client: Client, emu: EmulatorHandle) -> None:
    regions = any_client.describe_regions().body.to_map()

    assert regions["Regions"] == {"Region": [{"RegionId": emu.region_id}]}


def test_an_external_key_starts_pending_import_without_a_key_version(any_client: Client) -> None:
    created = any_client.create_key(models.CreateKeyRequest(origin="EXTERNAL")).body.key_metadata

    assert created.key_state == "PendingImport"
    assert created.primary_key_version == ""
    assert created.last_rotation_date == ""


def test_an_instance_key_has_an_instance_style_id(any_client: Client) -> None:
    instance = DEFAULT_INSTANCE_IDS[0]

    created = any_client.create_key(
        models.CreateKeyRequest(dkmsinstance_id=instance, key_spec="Aliyun_AES_128")
    ).body.key_metadata

    assert created.dkmsinstance_id == instance
    assert created.key_id.startswith("key-hzz")
    assert len(created.key_id) == len("key-hzz62ee5fe3b7ifgq5hmg")


def test_asymmetric_specs_get_their_default_usage(any_client: Client) -> None:
    ec = any_client.create_key(models.CreateKeyRequest(key_spec="EC_P256")).body.key_metadata
    rsa = any_client.create_key(models.CreateKeyRequest(key_spec="RSA_2048")).body.key_metadata
    rsa_sign = any_client.create_key(models.CreateKeyRequest(key_spec="RSA_3072", key_usage="SIGN/VERIFY"))

    assert ec.key_usage == "SIGN/VERIFY"
    assert rsa.key_usage == "ENCRYPT/DECRYPT"
    assert rsa_sign.body.key_metadata.key_usage == "SIGN/VERIFY"


def test_list_keys_filters_by_state_and_spec_with_values_ored_across_entries(client: Client) -> None:
    tag = json.dumps([{"TagKey": "filter-suite", "TagValue": "1"}])
    enabled = _new_key(client, tags=tag)
    disabled = _new_key(client, tags=tag)
    client.disable_key(models.DisableKeyRequest(key_id=disabled))
    _new_key(client, tags=tag, key_spec="RSA_2048")
    filters = [
        {"Key": "TagKey", "Values": ["filter-suite"]},
        {"Key": "KeyState", "Values": ["Enabled"]},
        {"Key": "KeyState", "Values": ["Disabled"]},
        {"Key": "KeySpec", "Values": ["Aliyun_AES_256"]},
    ]

    listed = client.list_keys(models.ListKeysRequest(page_size=100, filters=json.dumps(filters))).body

    assert [k.key_id for k in listed.keys.key] == [enabled, disabled]
