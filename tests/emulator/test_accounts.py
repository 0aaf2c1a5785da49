"""Several accounts in one emulator: keys, ARNs, quotas and the call log belong to the caller's account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

from kms_emulator import accounts
from kms_emulator.__main__ import build_parser, config_from_args
from kms_emulator.accounts import AccountsError, parse_document
from kms_emulator.admin_client import AdminClient
from kms_emulator.server import Emulator
from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.emulator.conftest import make_client

ACCOUNT_A = "1111111111111111"
ACCOUNT_B = "2222222222222222"
DOCUMENT = {
    "accounts": [
        {"accountId": ACCOUNT_A, "accessKeys": [{"id": "ak-a", "secret": "secret-a"}]},
        {
            "accountId": ACCOUNT_B,
            "users": [{"name": "ops", "accessKeys": [{"id": "ak-b-ops", "secret": "secret-b"}]}],
        },
    ]
}


def create(emu: EmulatorHandle, key_id: str, secret: str) -> models.CreateKeyResponseBodyKeyMetadata:
    client = make_client(emu, access_key_id=key_id, access_key_secret=secret)
    return client.create_key(models.CreateKeyRequest(description=key_id)).body.key_metadata


def test_a_key_lands_in_the_account_of_the_credential_that_created_it() -> None:
    with run_emulator(accounts=parse_document(DOCUMENT)) as emu:
        in_a = create(emu, "ak-a", "secret-a")
        in_b = create(emu, "ak-b-ops", "secret-b")

        assert in_a.arn == f"acs:kms:{emu.region_id}:{ACCOUNT_A}:key/{in_a.key_id}"
        assert in_a.creator == ACCOUNT_A
        assert in_b.arn == f"acs:kms:{emu.region_id}:{ACCOUNT_B}:key/{in_b.key_id}"
        assert set(emu.backend_for(ACCOUNT_A).keys) == {in_a.key_id}
        assert set(emu.backend_for(ACCOUNT_B).keys) == {in_b.key_id}
        assert emu.backend.keys == {}  # the default account made none


def test_another_account_cannot_see_or_touch_a_key_by_id_or_arn() -> None:
    with run_emulator(accounts=parse_document(DOCUMENT)) as emu:
        key = create(emu, "ak-a", "secret-a")
        other = make_client(emu, access_key_id="ak-b-ops", access_key_secret="secret-b")

        for key_id in (key.key_id, key.arn):
            with pytest.raises(ClientException) as error:
                other.describe_key(models.DescribeKeyRequest(key_id=key_id))
            assert error.value.code == "Forbidden.KeyNotFound"
        with pytest.raises(ClientException) as error:
            other.disable_key(models.DisableKeyRequest(key_id=key.key_id))
        assert error.value.code == "Forbidden.KeyNotFound"
        listed = other.list_keys(models.ListKeysRequest(page_size=100)).body
        assert listed.total_count == 0
        assert emu.backend_for(ACCOUNT_A).keys[key.key_id].key_state == "Enabled"


def test_the_call_log_counts_calls_per_account() -> None:
    with run_emulator(accounts=parse_document(DOCUMENT)) as emu:
        create(emu, "ak-a", "secret-a")
        create(emu, "ak-a", "secret-a")
        create(emu, "ak-b-ops", "secret-b")

        assert emu.call_counts(ACCOUNT_A) == {"CreateKey": 2}
        assert emu.call_counts(ACCOUNT_B) == {"CreateKey": 1}
        assert emu.call_counts_by_account() == {ACCOUNT_A: 2, ACCOUNT_B: 1}
        assert {r.account_id for r in emu.calls()} == {ACCOUNT_A, ACCOUNT_B}


def test_quotas_are_per_account_one_account_throttled_does_not_throttle_another() -> None:
    with run_emulator(quotas=True, accounts=parse_document(DOCUMENT)) as emu:
        emu.set_quotas(enabled=True, create_qps=1)
        create(emu, "ak-a", "secret-a")
        with pytest.raises(ThrottlingException) as throttled:
            create(emu, "ak-a", "secret-a")
        assert throttled.value.code == "Rejected.Throttling"

        create(emu, "ak-b-ops", "secret-b")  # account B's bucket is full


def test_keys_of_every_account_survive_a_restart(tmp_path: Path) -> None:
    state_file = str(tmp_path / "state.json")
    with run_emulator(state_file=state_file, accounts=parse_document(DOCUMENT)) as first:
        in_a = create(first, "ak-a", "secret-a")
        in_b = create(first, "ak-b-ops", "secret-b")
    with run_emulator(state_file=state_file, accounts=parse_document(DOCUMENT)) as second:
        assert set(second.backend_for(ACCOUNT_A).keys) == {in_a.key_id}
        assert set(second.backend_for(ACCOUNT_B).keys) == {in_b.key_id}


def test_a_version_1_state_file_is_read_as_the_default_accounts_keys(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with run_emulator(state_file=str(state_file)) as emu:
        key = emu.backend.create_key(description="old")
    keys = json.loads(state_file.read_text())["accounts"][emu.account_id]
    state_file.write_text(json.dumps({"version": 1, "keys": keys}))

    with run_emulator(state_file=str(state_file)) as emu:
        assert emu.backend.keys[key.key_id].description == "old"


def test_the_admin_api_shows_keys_and_calls_per_account() -> None:
    with run_emulator(accounts=parse_document(DOCUMENT)) as emu:
        key = create(emu, "ak-b-ops", "secret-b")
        admin = AdminClient(emu.url)

        assert [k["key_id"] for k in admin.keys(ACCOUNT_B)] == [key.key_id]
        assert admin.keys(ACCOUNT_A) == []
        assert admin.call_counts(ACCOUNT_B) == {"CreateKey": 1}
        assert admin.call_counts(ACCOUNT_A) == {}
        assert set(admin.accounts()) == {emu.account_id, ACCOUNT_A, ACCOUNT_B}


def test_the_cli_reads_an_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(DOCUMENT))
    config = config_from_args(build_parser().parse_args(["--accounts-file", str(path)]))
    emulator = Emulator(config)

    assert set(emulator.backends) == {config.account_id, ACCOUNT_A, ACCOUNT_B}
    assert emulator.credentials.lookup("ak-b-ops") is not None
    principal = emulator.credentials.lookup("ak-b-ops").principal  # type: ignore[union-attr]
    assert principal is not None
    assert principal.arn == f"acs:ram::{ACCOUNT_B}:user/ops"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"accounts": [{"accountId": "42"}]}, "16 digits"),
        ({"accounts": [{"accountId": ACCOUNT_A, "keys": []}]}, "unknown field 'keys'"),
        (
            {
                "accounts": [
                    {"accountId": ACCOUNT_A, "accessKeys": [{"id": "same", "secret": "x"}]},
                    {"accountId": ACCOUNT_B, "accessKeys": [{"id": "same", "secret": "y"}]},
                ]
            },
            "access key same is given twice",
        ),
        (
            {
                "accounts": [
                    {"accountId": ACCOUNT_A, "roles": [{"name": "r", "trustPolicy": {"Version": "1"}}]}
                ]
            },
            "Statement must be a non-empty list",
        ),
        (
            {
                "accounts": [
                    {
                        "accountId": ACCOUNT_A,
                        "roles": [
                            {
                                "name": "r",
                                "trustPolicy": {
                                    "Version": "1",
                                    "Statement": [
                                        {
                                            "Effect": "Allow",
                                            "Action": "sts:AssumeRole",
                                            "Principal": {"RAM": [ACCOUNT_B]},
                                            "Condition": {"IpAddress": {"acs:SourceIp": "1.2.3.4"}},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ]
            },
            "operator IpAddress is not one of",
        ),
    ],
)
def test_a_malformed_accounts_document_is_refused_naming_the_entry(document: object, message: str) -> None:
    with pytest.raises(AccountsError, match=message):
        accounts.Directory.build("1234567890123456", parse_document(document))
