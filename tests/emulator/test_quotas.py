"""QPS quotas per account and region, and the two documented throttling answers."""

from __future__ import annotations

import time

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

from kms_emulator.testing import run_emulator
from tests.emulator.conftest import make_client


def test_the_eleventh_create_key_in_a_second_is_throttled_with_retry_after() -> None:
    with run_emulator(quotas=True) as emu:
        client = make_client(emu)
        for _ in range(10):
            client.create_key(models.CreateKeyRequest())

        with pytest.raises(ThrottlingException) as caught:
            client.create_key(models.CreateKeyRequest())

    assert caught.value.code == "Rejected.Throttling"
    assert caught.value.status_code == 429
    assert 0 < caught.value.retry_after <= 1000
    assert emu.calls()[-1].code == "Rejected.Throttling"


def test_throttling_400_style_answers_a_plain_client_error() -> None:
    with run_emulator(quotas=True, throttle_style="throttling-400") as emu:
        client = make_client(emu)
        emu.set_quotas(True, read_qps=2)
        client.describe_regions()
        client.describe_regions()

        with pytest.raises(ClientException) as caught:
            client.describe_regions()

    assert not isinstance(caught.value, ThrottlingException)
    assert caught.value.code == "Throttling"
    assert caught.value.status_code == 400


def test_reads_writes_and_creates_draw_from_separate_buckets() -> None:
    with run_emulator(quotas=True) as emu:
        client = make_client(emu)
        emu.set_quotas(True, create_qps=1, read_qps=1, write_qps=1)
        key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
        client.describe_key(models.DescribeKeyRequest(key_id=key_id))
        client.disable_key(models.DisableKeyRequest(key_id=key_id))

        with pytest.raises(ThrottlingException):
            client.enable_key(models.EnableKeyRequest(key_id=key_id))


def test_a_throttled_client_succeeds_after_waiting_retry_after() -> None:
    with run_emulator(quotas=True) as emu:
        client = make_client(emu)
        emu.set_quotas(True, read_qps=5)
        for _ in range(5):
            client.describe_regions()
        with pytest.raises(ThrottlingException) as caught:
            client.describe_regions()

        time.sleep(caught.value.retry_after / 1000)

        assert client.describe_regions().status_code == 200


def test_with_quotas_off_bursts_are_never_throttled() -> None:
    with run_emulator(quotas=False) as emu:
        client = make_client(emu)

        statuses = {client.create_key(models.CreateKeyRequest()).status_code for _ in range(30)}

    assert statuses == {200}
