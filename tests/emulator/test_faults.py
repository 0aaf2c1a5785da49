"""Fault injection: errors at a chosen rate, added latency, dropped connections; the state is left alone."""

from __future__ import annotations

import time

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException

from kms_emulator.testing import EmulatorHandle
from tests.emulator.conftest import make_client


@pytest.fixture(autouse=True)
def _clear(emu: EmulatorHandle) -> None:
    emu.clear_faults()
    emu.reset_calls()


def test_an_injected_error_reaches_the_sdk_and_changes_nothing(client: Client, emu: EmulatorHandle) -> None:
    keys_before = len(emu.backend.keys)
    emu.set_fault(action="CreateKey", rate=1.0, code="ServiceUnavailableTemporary", status=503)

    with pytest.raises(ServerException) as caught:
        client.create_key(models.CreateKeyRequest())

    assert caught.value.code == "ServiceUnavailableTemporary"
    assert caught.value.status_code == 503
    assert len(emu.backend.keys) == keys_before
    assert emu.calls()[-1].code == "ServiceUnavailableTemporary"


def test_a_fault_on_one_action_leaves_the_others_alone(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="CreateKey", code="InternalFailure", status=500)

    assert client.describe_regions().status_code == 200


def test_an_error_rate_fails_about_that_share_of_calls(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="DescribeRegions", rate=0.3, code="Throttling.User", status=400)
    failures = 0
    for _ in range(300):
        try:
            client.describe_regions()
        except ClientException:
            failures += 1

    assert 50 <= failures <= 130


def test_a_fault_limited_to_n_times_fails_only_the_next_n_calls(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="*", code="InternalFailure", status=500, times=2)
    outcomes = []
    for _ in range(4):
        try:
            client.describe_regions()
            outcomes.append("ok")
        except ServerException:
            outcomes.append("failed")

    assert outcomes == ["failed", "failed", "ok", "ok"]


def test_an_injected_retry_after_makes_the_sdk_raise_throttling_exception(
    client: Client, emu: EmulatorHandle
) -> None:
    emu.set_fault(action="DescribeRegions", code="Throttling", status=400, retry_after_ms=1500)

    with pytest.raises(ThrottlingException) as caught:
        client.describe_regions()

    assert caught.value.retry_after == 1500


def test_added_latency_trips_the_sdk_read_timeout(emu: EmulatorHandle) -> None:
    impatient = make_client(emu, read_timeout=200)
    emu.set_fault(action="DescribeRegions", code=None, latency_ms=600)
    start = time.monotonic()

    with pytest.raises(UnretryableException):
        impatient.describe_regions()

    assert 0.15 < time.monotonic() - start < 0.6


def test_latency_without_an_error_still_answers(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="DescribeRegions", code=None, latency_ms=100)
    start = time.monotonic()

    client.describe_regions()

    assert time.monotonic() - start >= 0.1


def test_a_dropped_connection_is_a_network_error_for_the_sdk(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="DescribeRegions", code=None, drop_connection=True, times=1)

    with pytest.raises(UnretryableException):
        client.describe_regions()

    assert client.describe_regions().status_code == 200


async def test_a_dropped_connection_is_a_network_error_for_async_methods(
    client: Client, emu: EmulatorHandle
) -> None:
    emu.set_fault(action="DescribeRegions", code=None, drop_connection=True, times=1)

    with pytest.raises(UnretryableException):
        await client.describe_regions_async()


def test_clearing_faults_restores_normal_answers(client: Client, emu: EmulatorHandle) -> None:
    emu.set_fault(action="*", code="InternalFailure", status=500)

    emu.clear_faults()

    assert client.describe_regions().status_code == 200


def test_a_connection_dropped_after_the_action_keeps_its_state_change(
    client: Client, emu: EmulatorHandle
) -> None:
    keys_before = len(emu.backend.keys)
    emu.set_fault(action="CreateKey", code=None, drop_connection=True, after_action=True, times=1)

    with pytest.raises(UnretryableException):
        client.create_key(models.CreateKeyRequest(description="done but never told"))

    assert len(emu.backend.keys) == keys_before + 1
    assert emu.calls()[-1].code == "ConnectionDropped"


def test_latency_after_the_action_delays_an_answer_whose_work_is_already_done(emu: EmulatorHandle) -> None:
    impatient = make_client(emu, read_timeout=200)
    keys_before = len(emu.backend.keys)
    emu.set_fault(action="CreateKey", code=None, latency_ms=600, after_action=True, times=1)

    with pytest.raises(UnretryableException):
        impatient.create_key(models.CreateKeyRequest(description="slow answer"))

    assert len(emu.backend.keys) == keys_before + 1


def test_after_action_refuses_an_error_rule() -> None:
    from kms_emulator.faults import FaultRule, Faults

    with pytest.raises(ValueError, match="after_action"):
        Faults().add(FaultRule(code="InternalFailure", status=500, after_action=True))
