"""Fixtures for the emulator tests: a running emulator and official SDK clients pointed at it.

The SDK sends even 127.0.0.1 through HTTP_PROXY when it is set, and may probe the ECS metadata service for
credentials; both are switched off for every test here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.utils_models import Config

from kms_emulator.testing import EmulatorHandle, run_emulator

_PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
for _name in _PROXY_VARIABLES:
    os.environ.pop(_name, None)
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

ClientFactory = Callable[..., Client]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorHandle]:
    """One emulator per test module; tests that need a pristine one start their own."""
    with run_emulator(max_keys=10_000) as handle:
        yield handle


def make_client(
    emu: EmulatorHandle,
    *,
    signature_algorithm: str | None = None,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    read_timeout: int = 5000,
) -> Client:
    return Client(
        Config(
            access_key_id=access_key_id or emu.access_key_id,
            access_key_secret=access_key_secret or emu.access_key_secret,
            security_token=security_token,
            endpoint=emu.endpoint,
            protocol="http",
            region_id=emu.region_id,
            signature_algorithm=signature_algorithm,
            connect_timeout=2000,
            read_timeout=read_timeout,
        )
    )


@pytest.fixture(scope="module")
def client(emu: EmulatorHandle) -> Client:
    """The default SDK client: ACS3-HMAC-SHA256 with a static access key."""
    return make_client(emu)


@pytest.fixture(scope="module", params=["acs3", "v2"])
def any_client(request: pytest.FixtureRequest, emu: EmulatorHandle) -> Client:
    """Each test that takes it runs twice: with the default ACS3 signature and with classic v1 (`v2`)."""
    return make_client(emu, signature_algorithm=None if request.param == "acs3" else "v2")
