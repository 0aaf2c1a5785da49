"""The gateway against the emulator over HTTPS through the real SDK: quick in-call retries, and when not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig

from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator.kms.errors import KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import KmsCall
from kmskey_operator.settings import Settings


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(tls=True) as emu:
        yield emu


def gateway(emu: EmulatorHandle, retries: int = 2) -> KmsGateway:
    settings = Settings(
        kms_endpoint=emu.endpoint,
        kms_protocol=emu.protocol,
        kms_ca_bundle=str(emu.ca_file) if emu.ca_file else None,
        kms_call_retries=retries,
        read_qps=0,
        write_qps=0,
    )
    credential = CredentialClient(
        CredentialConfig(
            type="access_key", access_key_id=emu.access_key_id, access_key_secret=emu.access_key_secret
        )
    )
    return KmsGateway(settings, credential=credential)


def create(emu: EmulatorHandle) -> str:
    return asyncio.run(gateway(emu).create_key(emu.region_id, {"Description": "g"})).key_id


def test_a_transient_read_failure_is_repeated_within_the_call(emulator: EmulatorHandle) -> None:
    key_id = create(emulator)
    emulator.set_fault("DescribeKey", code="ServiceUnavailableTemporary", status=503, times=2)
    emulator.reset_calls()
    try:
        meta = asyncio.run(gateway(emulator).describe_key(emulator.region_id, key_id))
    finally:
        emulator.clear_faults()
    assert meta.key_id == key_id
    assert emulator.call_counts()["DescribeKey"] == 3


def test_repeats_stop_after_the_configured_number(emulator: EmulatorHandle) -> None:
    key_id = create(emulator)
    emulator.set_fault("DescribeKey", code="ServiceUnavailableTemporary", status=503, times=5)
    emulator.reset_calls()
    try:
        with pytest.raises(KmsError) as raised:
            asyncio.run(gateway(emulator, retries=1).describe_key(emulator.region_id, key_id))
    finally:
        emulator.clear_faults()
    assert raised.value.code == "ServiceUnavailableTemporary"
    assert emulator.call_counts()["DescribeKey"] == 2


def test_create_key_is_never_repeated_after_a_5xx(emulator: EmulatorHandle) -> None:
    """The key may exist after a 5xx: only the ownership-tag lookup of the next reconcile may decide."""
    emulator.set_fault("CreateKey", code="InternalFailure", status=500, times=1)
    emulator.reset_calls()
    try:
        with pytest.raises(KmsError):
            asyncio.run(gateway(emulator).call(emulator.region_id, KmsCall("CreateKey", {})))
    finally:
        emulator.clear_faults()
    assert emulator.call_counts()["CreateKey"] == 1


def test_create_key_is_repeated_after_throttling(emulator: EmulatorHandle) -> None:
    emulator.set_fault("CreateKey", code="Throttling", status=400, times=1)
    emulator.reset_calls()
    try:
        asyncio.run(gateway(emulator).call(emulator.region_id, KmsCall("CreateKey", {})))
    finally:
        emulator.clear_faults()
    assert emulator.call_counts()["CreateKey"] == 2


def test_terminal_errors_are_not_repeated(emulator: EmulatorHandle) -> None:
    emulator.reset_calls()
    with pytest.raises(KmsError) as raised:
        asyncio.run(gateway(emulator).describe_key(emulator.region_id, "no-such-key"))
    assert raised.value.code == "Forbidden.KeyNotFound"
    assert emulator.call_counts()["DescribeKey"] == 1
