"""The call log: counts per action and per access key, detailed records, reset."""

from __future__ import annotations

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_tea_openapi.exceptions import ClientException

from kms_emulator.testing import run_emulator
from tests.emulator.conftest import make_client


def test_calls_are_counted_per_action_and_per_access_key() -> None:
    with run_emulator(access_keys={"ak-one": "secret-one", "ak-two": "secret-two"}) as emu:
        one = make_client(emu, access_key_id="ak-one", access_key_secret="secret-one")
        two = make_client(
            emu, access_key_id="ak-two", access_key_secret="secret-two", signature_algorithm="v2"
        )
        key_id = one.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
        two.describe_key(models.DescribeKeyRequest(key_id=key_id))
        two.describe_key(models.DescribeKeyRequest(key_id=key_id))

        assert emu.call_counts() == {"CreateKey": 1, "DescribeKey": 2}
        assert emu.call_counts_by_access_key() == {"ak-one": 1, "ak-two": 2}
        assert emu.access_key_id == "ak-one"


def test_each_record_has_action_access_key_params_status_and_code() -> None:
    with run_emulator() as emu:
        client = make_client(emu)
        with pytest.raises(ClientException):
            client.describe_key(models.DescribeKeyRequest(key_id="missing"))

        [record] = emu.calls()

    assert record.action == "DescribeKey"
    assert record.access_key_id == emu.access_key_id
    assert record.params == {"KeyId": "missing"}
    assert record.status == 404
    assert record.code == "Forbidden.KeyNotFound"
    assert record.time > 0


def test_reset_calls_empties_counts_and_records() -> None:
    with run_emulator() as emu:
        make_client(emu).describe_regions()

        emu.reset_calls()

        assert emu.call_counts() == {}
        assert emu.calls() == []
