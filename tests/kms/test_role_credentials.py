"""Role credentials (AssumeRole, AssumeRoleWithOIDC) through kms/sts.py, counted at the emulator's STS.

The credentials library treats role credentials as stale 15 minutes before they expire, so with STS's
shortest (and a common) durationSeconds, 900, it would assume the role again for every KMS call. sts.py
keeps them until a quarter of their lifetime is left (at most 15 minutes): one AssumeRole per ~11 minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator.kms import sts
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.settings import Settings

HOME = "1111111111111111"
TEAM = "2222222222222222"
ROLE_ARN = f"acs:ram::{TEAM}:role/kms-operator"
DOCUMENT = {
    "accounts": [
        {
            "accountId": HOME,
            "users": [
                {"name": "base", "accessKeys": [{"id": "ak-base", "secret": "base-secret-0123456789"}]}
            ],
        },
        {
            "accountId": TEAM,
            "roles": [
                {
                    "name": "kms-operator",
                    "trustPolicy": {
                        "Version": "1",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "sts:AssumeRole",
                                "Principal": {"RAM": [f"acs:ram::{HOME}:user/base"]},
                            }
                        ],
                    },
                }
            ],
        },
    ]
}


@pytest.fixture
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(accounts=parse_document(DOCUMENT)) as handle:
        yield handle


def role_gateway(emu: EmulatorHandle, duration_seconds: int) -> KmsGateway:
    endpoint = sts.StsEndpoint(host=emu.endpoint, protocol="http")
    provider = sts.assume_role(
        sts.static_keys("ak-base", "base-secret-0123456789"),
        role_arn=ROLE_ARN,
        session_name="kmskey-operator",
        duration_seconds=duration_seconds,
        external_id=None,
        endpoint=endpoint,
    )
    settings = Settings(kms_endpoint=emu.endpoint, kms_protocol="http", read_qps=0, write_qps=0, create_qps=0)
    return KmsGateway(settings, credential=sts.client(provider))


def assume_role_calls(emu: EmulatorHandle) -> int:
    return sum(1 for r in emu.sts_calls() if r.action == "AssumeRole")


@pytest.mark.parametrize("duration_seconds", [900, 3600])
def test_role_credentials_are_assumed_once_for_many_kms_calls(
    emu: EmulatorHandle, duration_seconds: int
) -> None:
    kms = role_gateway(emu, duration_seconds)

    async def calls() -> None:
        for _ in range(5):
            await asyncio.gather(*(kms.list_keys(emu.region_id, {}) for _ in range(4)))

    asyncio.run(calls())
    assert emu.call_counts(TEAM).get("ListKeys") == 20  # in the role's account
    assert assume_role_calls(emu) == 1
