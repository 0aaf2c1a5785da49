"""Every documented error, as the official SDK raises it: code, HTTP status and the exact error body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.emulator.conftest import make_client
from tests.emulator.raw import acs3_request, send

Call = Callable[[Client, EmulatorHandle, str], Any]


def _tags(n: int, key: str = "k", value: str = "v") -> str:
    return json.dumps([{"TagKey": f"{key}{i}" if n > 1 else key, "TagValue": value} for i in range(n)])


def _policy(**fields: Any) -> str:
    return json.dumps({"Version": "1", "Statement": [], **fields})


def _protected(client: Client, emu: EmulatorHandle, key_id: str) -> Any:
    client.set_deletion_protection(
        models.SetDeletionProtectionRequest(key_id=key_id, enable_deletion_protection=True)
    )
    return client.schedule_key_deletion(
        models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7)
    )


def _overfull(client: Client, emu: EmulatorHandle, key_id: str) -> Any:
    client.tag_resource(models.TagResourceRequest(key_id=key_id, tags=_tags(15, "a")))
    return client.tag_resource(models.TagResourceRequest(key_id=key_id, tags=_tags(6, "b")))


def _asymmetric_rotation(client: Client, emu: EmulatorHandle, key_id: str) -> Any:
    rsa = client.create_key(models.CreateKeyRequest(key_spec="RSA_2048")).body.key_metadata.key_id
    return client.update_rotation_policy(
        models.UpdateRotationPolicyRequest(key_id=rsa, enable_automatic_rotation=True, rotation_interval="7d")
    )


CK = models.CreateKeyRequest
CASES: list[tuple[str, Call, str, int]] = [
    (
        "unknown key",
        lambda c, e, k: c.describe_key(models.DescribeKeyRequest(key_id="no-such-key")),
        "Forbidden.KeyNotFound",
        404,
    ),
    (
        "unknown alias",
        lambda c, e, k: c.describe_key(models.DescribeKeyRequest(key_id="alias/nope")),
        "Forbidden.AliasNotFound",
        404,
    ),
    (
        "ARN of another account",
        lambda c, e, k: c.describe_key(
            models.DescribeKeyRequest(key_id=f"acs:kms:{e.region_id}:999:key/{k}")
        ),
        "Forbidden.KeyNotFound",
        404,
    ),
    ("missing KeyId", lambda c, e, k: c.describe_key(models.DescribeKeyRequest()), "MissingParameter", 400),
    ("unknown KeySpec", lambda c, e, k: c.create_key(CK(key_spec="AES_999")), "InvalidParameter", 400),
    (
        "SIGN/VERIFY on a symmetric key",
        lambda c, e, k: c.create_key(CK(key_usage="SIGN/VERIFY")),
        "InvalidParameter",
        400,
    ),
    (
        "ENCRYPT/DECRYPT on EC_P256",
        lambda c, e, k: c.create_key(CK(key_spec="EC_P256", key_usage="ENCRYPT/DECRYPT")),
        "InvalidParameter",
        400,
    ),
    (
        "Origin is case-sensitive",
        lambda c, e, k: c.create_key(CK(origin="external")),
        "InvalidParameter",
        400,
    ),
    (
        "unknown ProtectionLevel",
        lambda c, e, k: c.create_key(CK(protection_level="CLOUD")),
        "InvalidParameter",
        400,
    ),
    (
        "unknown KMS instance",
        lambda c, e, k: c.create_key(CK(dkmsinstance_id="kst-hzz000000000000000000")),
        "InvalidParameter",
        400,
    ),
    (
        "AES_128 outside an instance",
        lambda c, e, k: c.create_key(CK(key_spec="Aliyun_AES_128")),
        "InvalidParameter",
        400,
    ),
    (
        "KeyStorageMechanism without instance",
        lambda c, e, k: c.create_key(CK(key_storage_mechanism="HsmInternal")),
        "InvalidParameter",
        400,
    ),
    (
        "rotation without interval",
        lambda c, e, k: c.create_key(CK(enable_automatic_rotation=True)),
        "MissingParameter",
        400,
    ),
    (
        "rotation of an RSA key",
        lambda c, e, k: c.create_key(
            CK(key_spec="RSA_2048", enable_automatic_rotation=True, rotation_interval="7d")
        ),
        "Rejected.UnsupportedOperation",
        400,
    ),
    (
        "rotation of an EXTERNAL key",
        lambda c, e, k: c.create_key(
            CK(origin="EXTERNAL", enable_automatic_rotation=True, rotation_interval="7d")
        ),
        "Rejected.UnsupportedOperation",
        400,
    ),
    (
        "interval below 7 days",
        lambda c, e, k: c.create_key(CK(enable_automatic_rotation=True, rotation_interval="604799s")),
        "InvalidParameter",
        400,
    ),
    (
        "interval above 730 days",
        lambda c, e, k: c.create_key(CK(enable_automatic_rotation=True, rotation_interval="731d")),
        "InvalidParameter",
        400,
    ),
    (
        "interval without unit",
        lambda c, e, k: c.create_key(CK(enable_automatic_rotation=True, rotation_interval="7")),
        "InvalidParameter",
        400,
    ),
    (
        "description over 8192 characters",
        lambda c, e, k: c.create_key(CK(description="d" * 8193)),
        "InvalidParameter",
        400,
    ),
    ("21 tags", lambda c, e, k: c.create_key(CK(tags=_tags(21))), "InvalidParameter", 400),
    (
        "tag key starting with aliyun",
        lambda c, e, k: c.create_key(CK(tags=_tags(1, "aliyun-x"))),
        "InvalidParameter",
        400,
    ),
    (
        "tag key starting with acs:",
        lambda c, e, k: c.create_key(CK(tags=_tags(1, "acs:x"))),
        "InvalidParameter",
        400,
    ),
    ("tag key with a space", lambda c, e, k: c.create_key(CK(tags=_tags(1, "a b"))), "InvalidParameter", 400),
    (
        "tag value over 128 characters",
        lambda c, e, k: c.create_key(CK(tags=_tags(1, "k", "v" * 129))),
        "InvalidParameter",
        400,
    ),
    ("Tags not JSON", lambda c, e, k: c.create_key(CK(tags="env=dev")), "InvalidParameter", 400),
    (
        "policy over 32768 bytes",
        lambda c, e, k: c.create_key(CK(policy=_policy(Pad="x" * 32768))),
        "InvalidParameter",
        400,
    ),
    (
        "policy Version 2",
        lambda c, e, k: c.create_key(CK(policy=json.dumps({"Version": "2"}))),
        "InvalidParameter",
        400,
    ),
    ("policy not JSON", lambda c, e, k: c.create_key(CK(policy="{")), "InvalidParameter", 400),
    (
        "boolean that is not one",
        lambda c, e, k: c.create_key(CK(enable_automatic_rotation="maybe")),
        "InvalidParameter",
        400,
    ),
    (
        "PageSize 101",
        lambda c, e, k: c.list_keys(models.ListKeysRequest(page_size=101)),
        "InvalidParameter",
        400,
    ),
    (
        "PageNumber 0",
        lambda c, e, k: c.list_keys(models.ListKeysRequest(page_number=0)),
        "InvalidParameter",
        400,
    ),
    (
        "unknown filter",
        lambda c, e, k: c.list_keys(
            models.ListKeysRequest(filters=json.dumps([{"Key": "Color", "Values": ["red"]}]))
        ),
        "InvalidParameter",
        400,
    ),
    (
        "update without Description",
        lambda c, e, k: c.update_key_description(models.UpdateKeyDescriptionRequest(key_id=k)),
        "MissingParameter",
        400,
    ),
    (
        "rotation policy without the flag",
        lambda c, e, k: c.update_rotation_policy(models.UpdateRotationPolicyRequest(key_id=k)),
        "MissingParameter",
        400,
    ),
    ("rotation of an asymmetric key", _asymmetric_rotation, "Rejected.UnsupportedOperation", 400),
    (
        "deletion protection without the flag",
        lambda c, e, k: c.set_deletion_protection(models.SetDeletionProtectionRequest(key_id=k)),
        "MissingParameter",
        400,
    ),
    (
        "deletion protection without a key",
        lambda c, e, k: c.set_deletion_protection(
            models.SetDeletionProtectionRequest(enable_deletion_protection=True)
        ),
        "MissingParameter",
        400,
    ),
    (
        "deletion without a window",
        lambda c, e, k: c.schedule_key_deletion(models.ScheduleKeyDeletionRequest(key_id=k)),
        "MissingParameter",
        400,
    ),
    (
        "deletion window of 6 days",
        lambda c, e, k: c.schedule_key_deletion(
            models.ScheduleKeyDeletionRequest(key_id=k, pending_window_in_days=6)
        ),
        "InvalidParameter",
        400,
    ),
    (
        "deletion window of 367 days",
        lambda c, e, k: c.schedule_key_deletion(
            models.ScheduleKeyDeletionRequest(key_id=k, pending_window_in_days=367)
        ),
        "InvalidParameter",
        400,
    ),
    ("deletion of a protected key", _protected, "Forbidden.DeletionProtection", 403),
    ("more than 20 tags on a key", _overfull, "Rejected.LimitExceeded", 400),
    (
        "TagResource without Tags",
        lambda c, e, k: c.tag_resource(models.TagResourceRequest(key_id=k)),
        "MissingParameter",
        400,
    ),
    (
        "TagResource on a secret",
        lambda c, e, k: c.tag_resource(models.TagResourceRequest(secret_name="s", tags=_tags(1))),
        "Rejected.UnsupportedOperation",
        400,
    ),
    (
        "TagKeys not a JSON list",
        lambda c, e, k: c.untag_resource(models.UntagResourceRequest(key_id=k, tag_keys="a,b")),
        "InvalidParameter",
        400,
    ),
    (
        "TagResources in another region",
        lambda c, e, k: c.tag_resources(
            models.TagResourcesRequest(
                region_id="eu-central-1",
                resource_type="key",
                resource_id=[k],
                tag=[models.TagResourcesRequestTag(key="a", value="b")],
            )
        ),
        "InvalidParameter",
        400,
    ),
    (
        "TagResources without RegionId",
        lambda c, e, k: c.tag_resources(
            models.TagResourcesRequest(
                resource_type="key", resource_id=[k], tag=[models.TagResourcesRequestTag(key="a", value="b")]
            )
        ),
        "MissingParameter",
        400,
    ),
    (
        "TagResources on secrets",
        lambda c, e, k: c.tag_resources(
            models.TagResourcesRequest(
                region_id=e.region_id,
                resource_type="secret",
                resource_id=[k],
                tag=[models.TagResourcesRequestTag(key="a", value="b")],
            )
        ),
        "Rejected.UnsupportedOperation",
        400,
    ),
    (
        "TagResources on 51 keys",
        lambda c, e, k: c.tag_resources(
            models.TagResourcesRequest(
                region_id=e.region_id,
                resource_type="key",
                resource_id=[k] * 51,
                tag=[models.TagResourcesRequestTag(key="a", value="b")],
            )
        ),
        "InvalidParameter",
        400,
    ),
    (
        "TagResources on an unknown key",
        lambda c, e, k: c.tag_resources(
            models.TagResourcesRequest(
                region_id=e.region_id,
                resource_type="key",
                resource_id=[k, "nope"],
                tag=[models.TagResourcesRequestTag(key="a", value="b")],
            )
        ),
        "Forbidden.KeyNotFound",
        404,
    ),
    (
        "UntagResources without tag keys",
        lambda c, e, k: c.untag_resources(
            models.UntagResourcesRequest(region_id=e.region_id, resource_type="key", resource_id=[k])
        ),
        "MissingParameter",
        400,
    ),
    (
        "ListTagResources with a bad token",
        lambda c, e, k: c.list_tag_resources(
            models.ListTagResourcesRequest(region_id=e.region_id, resource_type="key", next_token="abc")
        ),
        "InvalidParameter",
        400,
    ),
    (
        "SetKeyPolicy with another PolicyName",
        lambda c, e, k: c.set_key_policy(
            models.SetKeyPolicyRequest(key_id=k, policy=_policy(), policy_name="custom")
        ),
        "InvalidParameter",
        400,
    ),
    (
        "GetKeyPolicy of an unknown key",
        lambda c, e, k: c.get_key_policy(models.GetKeyPolicyRequest(key_id="nope", policy_name="default")),
        "Forbidden.KeyNotFound",
        404,
    ),
]


@pytest.mark.parametrize(("call", "code", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_documented_error_reaches_the_sdk_with_its_code_and_status(
    any_client: Client, emu: EmulatorHandle, call: Call, code: str, status: int
) -> None:
    key_id = any_client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id

    with pytest.raises(ClientException) as caught:
        call(any_client, emu, key_id)

    assert caught.value.code == code
    assert caught.value.status_code == status
    body = caught.value.data
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend", "statusCode"}
    assert body["HostId"] == f"kms.{emu.region_id}.aliyuncs.com"
    assert body["Recommend"].endswith(f"&requestId={body['RequestId']}")


def test_refused_calls_leave_the_key_unchanged(client: Client, emu: EmulatorHandle) -> None:
    key_id = client.create_key(models.CreateKeyRequest(description="before")).body.key_metadata.key_id

    with pytest.raises(ClientException):
        client.update_key_description(
            models.UpdateKeyDescriptionRequest(key_id=key_id, description="x" * 9000)
        )

    assert emu.backend.describe_key(key_id).description == "before"


def test_the_largest_allowed_values_are_accepted(client: Client) -> None:
    tags = json.dumps([{"TagKey": f"k{i}" + "k" * 120, "TagValue": "v" * 128} for i in range(20)])

    created = client.create_key(
        models.CreateKeyRequest(
            description="d" * 8192, tags=tags, enable_automatic_rotation=True, rotation_interval="730d"
        )
    )

    assert created.body.key_metadata.rotation_interval == f"{730 * 86400}s"


def test_creating_more_keys_than_the_region_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with run_emulator(max_keys=2) as small:
        client = make_client(small)
        client.create_key(models.CreateKeyRequest())
        client.create_key(models.CreateKeyRequest())

        with pytest.raises(ClientException) as caught:
            client.create_key(models.CreateKeyRequest())

    assert caught.value.code == "Rejected.LimitExceeded"
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("headers", "code", "status"),
    [
        ({"x-acs-action": "DeleteEverything"}, "InvalidAction.NotFound", 404),
        ({"x-acs-version": "2099-01-01"}, "InvalidVersion", 400),
    ],
)
def test_unknown_actions_and_versions_are_refused_before_authentication(
    emu: EmulatorHandle, headers: dict[str, str], code: str, status: int
) -> None:
    request = acs3_request(emu, "DescribeRegions", {})
    request.headers.update(headers)

    response = send(emu, request)

    assert response.status == status
    assert response.body["Code"] == code
    assert response.content_type == "application/json;charset=utf-8"


def test_a_request_without_an_action_is_a_missing_parameter(emu: EmulatorHandle) -> None:
    request = acs3_request(emu, "DescribeRegions", {})
    del request.headers["x-acs-action"]

    response = send(emu, request)

    assert response.body["Code"] == "MissingParameter"


def test_another_path_answers_a_json_invalid_action(emu: EmulatorHandle) -> None:
    request = acs3_request(emu, "DescribeRegions", {})
    request.path = "/v1/keys"

    response = send(emu, request)

    assert response.status == 404
    assert response.body["Code"] == "InvalidAction.NotFound"
