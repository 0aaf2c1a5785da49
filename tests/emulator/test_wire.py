"""Wire details the SDK depends on: parameter decoding, large URLs, JSON bodies and headers."""

from __future__ import annotations

import json

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client

from kms_emulator.testing import EmulatorHandle
from tests.emulator.raw import acs3_request, send, v1_request


def _policy_of_bytes(size: int) -> str:
    """A valid policy of exactly `size` bytes, full of characters that percent-encode to three bytes each."""
    statement = {"Sid": "s", "Effect": "Allow", "Principal": {"RAM": ['acs:ram::1:"*"']}, "Action": ["kms:*"]}
    document: dict[str, object] = {"Version": "1", "Statement": [statement], "Pad": ""}
    base = len(json.dumps(document).encode())
    document["Pad"] = "{}" * ((size - base) // 2) + "}" * ((size - base) % 2)
    text = json.dumps(document)
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "tRuE"])
def test_booleans_are_parsed_case_insensitively(emu: EmulatorHandle, value: str) -> None:
    request = acs3_request(emu, "CreateKey", {"EnableAutomaticRotation": value, "RotationInterval": "7d"})

    response = send(emu, request)

    assert response.body["KeyMetadata"]["AutomaticRotation"] == "Enabled"


def test_a_32_kib_policy_in_a_url_over_64_kib_is_accepted(client: Client) -> None:
    policy = _policy_of_bytes(32768)
    key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id

    client.set_key_policy(models.SetKeyPolicyRequest(key_id=key_id, policy=policy))

    assert client.get_key_policy(models.GetKeyPolicyRequest(key_id=key_id)).body.policy == policy


async def test_a_32_kib_policy_works_with_async_methods_and_create_key(client: Client) -> None:
    policy = _policy_of_bytes(32768)

    created = await client.create_key_async(models.CreateKeyRequest(policy=policy))

    got = await client.get_key_policy_async(
        models.GetKeyPolicyRequest(key_id=created.body.key_metadata.key_id)
    )
    assert got.body.policy == policy


def test_a_policy_one_byte_over_the_limit_is_refused(emu: EmulatorHandle) -> None:
    response = send(emu, acs3_request(emu, "CreateKey", {"Policy": _policy_of_bytes(32769)}))

    assert response.status == 400
    assert response.body["Code"] == "InvalidParameter"


def test_every_answer_is_a_json_object_with_a_request_id_header(emu: EmulatorHandle) -> None:
    response = send(emu, acs3_request(emu, "DescribeRegions", {}))

    assert response.content_type == "application/json;charset=utf-8"
    assert response.headers["x-acs-request-id"] == response.body["RequestId"]


def test_empty_strings_are_sent_and_read_as_present(emu: EmulatorHandle) -> None:
    key_id = send(emu, acs3_request(emu, "CreateKey", {"Description": "x"})).body["KeyMetadata"]["KeyId"]

    response = send(emu, acs3_request(emu, "UpdateKeyDescription", {"KeyId": key_id, "Description": ""}))

    assert response.status == 200


def test_v1_common_parameters_are_not_logged_as_api_parameters(emu: EmulatorHandle) -> None:
    emu.reset_calls()

    send(emu, v1_request(emu, "ListKeys", {"PageSize": "3"}))

    assert emu.calls()[-1].params == {"PageSize": "3"}
