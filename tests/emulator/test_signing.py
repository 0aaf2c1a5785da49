"""Authentication: both signature schemes, STS tokens, and every way a request can fail to prove itself."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from kms_emulator.testing import EmulatorHandle
from tests.emulator.conftest import make_client
from tests.emulator.raw import acs3_request, now_iso, send, v1_request


@pytest.fixture(scope="module")
def key_id(client: Client) -> str:
    return str(client.create_key(models.CreateKeyRequest(description="signing")).body.key_metadata.key_id)


def test_a_request_signed_by_the_sdk_signer_is_accepted(emu: EmulatorHandle, key_id: str) -> None:
    response = send(emu, acs3_request(emu, "DescribeKey", {"KeyId": key_id}))

    assert response.status == 200
    assert response.body["KeyMetadata"]["KeyId"] == key_id


def test_values_with_reserved_characters_cjk_and_emoji_verify(client: Client) -> None:
    description = "a b ~!*'()[]{}:;/?#@&=+$,%\"<>\\| 中文 😀 end"

    created = client.create_key(models.CreateKeyRequest(description=description))

    assert created.body.key_metadata.description == description


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: r.headers.update({"user-agent": "changed"}), id="a-signed-header"),
        pytest.param(lambda r: r.headers.update({"x-acs-action": "ListKeys"}), id="the-action-header"),
        pytest.param(lambda r: r.query.update({"KeyId": r.query["KeyId"] + "x"}), id="a-query-value"),
        pytest.param(lambda r: r.extra_query.append(("PageSize", "5")), id="an-added-query-parameter"),
        pytest.param(
            lambda r: r.headers.update({"x-acs-date": now_iso(timedelta(seconds=-5))}), id="the-date"
        ),
        pytest.param(lambda r: r.headers.update({"x-acs-signature-nonce": "0" * 32}), id="the-nonce"),
    ],
)
def test_tampering_with_a_signed_part_is_refused(emu: EmulatorHandle, key_id: str, tamper: object) -> None:
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id})
    assert callable(tamper)
    tamper(request)

    response = send(emu, request)

    assert response.status == 400
    assert response.body["Code"] == "SignatureDoesNotMatch"


def test_tampering_with_the_body_is_refused(emu: EmulatorHandle, key_id: str) -> None:
    request = acs3_request(
        emu, "DescribeKey", {"KeyId": key_id}, body=b"Description=x", content_type="text/plain"
    )
    request.body = b"Description=y"

    response = send(emu, request)

    assert response.status == 400
    assert response.body["Code"] == "SignatureDoesNotMatch"


def test_tampering_with_a_v1_parameter_is_refused(emu: EmulatorHandle, key_id: str) -> None:
    request = v1_request(emu, "DescribeKey", {"KeyId": key_id})
    request.query["KeyId"] = key_id + "x"

    response = send(emu, request)

    assert response.body["Code"] == "SignatureDoesNotMatch"
    assert "server string to sign is:" in response.body["Message"]


def test_tampering_with_a_v1_form_body_is_refused(emu: EmulatorHandle, key_id: str) -> None:
    request = v1_request(emu, "UpdateKeyDescription", {"KeyId": key_id, "Description": "a"}, in_body=True)
    request.body = request.body.replace(b"Description=a", b"Description=b")

    response = send(emu, request)

    assert response.body["Code"] == "SignatureDoesNotMatch"


def test_a_v1_request_with_api_parameters_in_a_form_body_is_served(emu: EmulatorHandle, key_id: str) -> None:
    request = v1_request(
        emu, "UpdateKeyDescription", {"KeyId": key_id, "Description": "from a form"}, in_body=True
    )

    response = send(emu, request)

    assert response.status == 200
    assert emu.backend.describe_key(key_id).description == "from a form"


def test_a_v1_get_request_is_served(emu: EmulatorHandle, key_id: str) -> None:
    response = send(emu, v1_request(emu, "DescribeKey", {"KeyId": key_id}, method="GET"))

    assert response.status == 200


@pytest.mark.parametrize("scheme", ["acs3", "v1"])
def test_a_replayed_nonce_is_refused(emu: EmulatorHandle, key_id: str, scheme: str) -> None:
    build = acs3_request if scheme == "acs3" else v1_request
    request = build(emu, "DescribeKey", {"KeyId": key_id})

    first, second = send(emu, request), send(emu, request)

    assert first.status == 200
    assert second.status == 400
    assert second.body["Code"] == "SignatureNonceUsed"


@pytest.mark.parametrize("scheme", ["acs3", "v1"])
@pytest.mark.parametrize("skew", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_a_date_outside_the_15_minute_window_is_refused(
    emu: EmulatorHandle, key_id: str, scheme: str, skew: timedelta
) -> None:
    if scheme == "acs3":
        request = acs3_request(emu, "DescribeKey", {"KeyId": key_id}, date=now_iso(skew))
    else:
        request = v1_request(emu, "DescribeKey", {"KeyId": key_id}, timestamp=now_iso(skew))

    response = send(emu, request)

    assert response.status == 400
    assert response.body["Code"] == "InvalidTimeStamp.Expired"


def test_a_date_within_the_window_is_accepted(emu: EmulatorHandle, key_id: str) -> None:
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id}, date=now_iso(timedelta(minutes=-14)))

    assert send(emu, request).status == 200


def test_an_unparsable_v1_timestamp_is_refused(emu: EmulatorHandle, key_id: str) -> None:
    response = send(emu, v1_request(emu, "DescribeKey", {"KeyId": key_id}, timestamp="yesterday"))

    assert response.body["Code"] == "IllegalTimestamp"


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_an_unknown_access_key_is_refused(emu: EmulatorHandle, algorithm: str | None) -> None:
    stranger = make_client(emu, signature_algorithm=algorithm, access_key_id="nobody", access_key_secret="x")

    with pytest.raises(ClientException) as caught:
        stranger.describe_regions()

    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert caught.value.status_code == 404


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_a_wrong_secret_is_refused(emu: EmulatorHandle, algorithm: str | None) -> None:
    wrong = make_client(emu, signature_algorithm=algorithm, access_key_secret="not-the-secret")

    with pytest.raises(ClientException) as caught:
        wrong.describe_regions()

    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.status_code == 400


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_sts_credentials_are_accepted_and_logged_under_their_access_key(
    emu: EmulatorHandle, algorithm: str | None
) -> None:
    sts = emu.issue_sts_token()
    client = make_client(
        emu,
        signature_algorithm=algorithm,
        access_key_id=sts.access_key_id,
        access_key_secret=sts.access_key_secret,
        security_token=sts.security_token,
    )

    regions = client.describe_regions()

    assert regions.body.regions.region[0].region_id == emu.region_id
    assert emu.call_counts_by_access_key()[sts.access_key_id] == 1


async def test_sts_credentials_work_with_async_methods(emu: EmulatorHandle) -> None:
    sts = emu.issue_sts_token()
    client = make_client(
        emu,
        access_key_id=sts.access_key_id,
        access_key_secret=sts.access_key_secret,
        security_token=sts.security_token,
    )

    response = await client.describe_regions_async()

    assert response.status_code == 200


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_an_sts_access_key_with_a_wrong_token_is_refused(emu: EmulatorHandle, algorithm: str | None) -> None:
    sts = emu.issue_sts_token()
    client = make_client(
        emu,
        signature_algorithm=algorithm,
        access_key_id=sts.access_key_id,
        access_key_secret=sts.access_key_secret,
        security_token="forged",
    )

    with pytest.raises(ClientException) as caught:
        client.describe_regions()

    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_an_sts_access_key_without_its_token_is_refused(emu: EmulatorHandle) -> None:
    sts = emu.issue_sts_token()
    client = make_client(emu, access_key_id=sts.access_key_id, access_key_secret=sts.access_key_secret)

    with pytest.raises(ClientException) as caught:
        client.describe_regions()

    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_an_expired_sts_token_reads_as_an_unknown_access_key(emu: EmulatorHandle) -> None:
    sts = emu.issue_sts_token(duration_seconds=0.01)
    time.sleep(0.02)
    client = make_client(
        emu,
        access_key_id=sts.access_key_id,
        access_key_secret=sts.access_key_secret,
        security_token=sts.security_token,
    )

    with pytest.raises(ClientException) as caught:
        client.describe_regions()

    assert caught.value.code == "InvalidAccessKeyId.NotFound"


@pytest.mark.parametrize("algorithm", ["ACS3-HMAC-SM3", "ACS4-HMAC-SHA256"])
def test_unsupported_signature_algorithms_are_answered_incomplete_signature(
    emu: EmulatorHandle, key_id: str, algorithm: str
) -> None:
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id})
    request.headers["Authorization"] = request.headers["Authorization"].replace("ACS3-HMAC-SHA256", algorithm)

    response = send(emu, request)

    assert response.body["Code"] == "IncompleteSignature"


def test_an_unsigned_date_header_is_refused(emu: EmulatorHandle, key_id: str) -> None:
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id})
    request.headers["Authorization"] = request.headers["Authorization"].replace("x-acs-date;", "")

    response = send(emu, request)

    assert response.body["Code"] == "IncompleteSignature"


def test_a_request_without_any_signature_is_a_missing_parameter(emu: EmulatorHandle, key_id: str) -> None:
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id})
    del request.headers["Authorization"]

    response = send(emu, request)

    assert response.status == 400
    assert response.body["Code"] == "MissingParameter"


def test_refused_requests_are_not_in_the_call_log(emu: EmulatorHandle, key_id: str) -> None:
    emu.reset_calls()
    request = acs3_request(emu, "DescribeKey", {"KeyId": key_id})
    request.headers["user-agent"] = "tampered"

    send(emu, request)

    assert emu.call_counts() == {}
