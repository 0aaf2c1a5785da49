"""Fixtures for the CLI tools: an emulator, and the environment that points `kmskey-operator` at it.

The emulator knows two access keys: the first for the operator process (e2e fixtures take
`emulator.access_key_id`), the second for the CLI, so the call log tells the CLI's calls apart even while
an operator writes to the same emulator. After every test, the CLI must have made only read calls.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alibabacloud_credentials.utils import auth_util

from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator import cli as cli_module
from kmskey_operator.kms.gateway import READ_ONLY_ACTIONS

# The real operator process, for `plan --from-cluster`; it uses the `emulator` fixture defined here.
from tests.e2e.conftest import operator  # noqa: F401

OPERATOR_ACCESS_KEY = ("operator-access-key-id", "operator-access-key-secret")
CLI_ACCESS_KEY = ("cli-access-key-id", "cli-access-key-secret")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.out)
        return document


CliRunner = Callable[..., Run]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(quotas=False, access_keys=[OPERATOR_ACCESS_KEY, CLI_ACCESS_KEY]) as emu:
        yield emu


def cli_calls(emulator: EmulatorHandle) -> list[str]:
    """Actions the CLI (its access key) has called, oldest first."""
    return [r.action for r in emulator.calls() if r.access_key_id == CLI_ACCESS_KEY[0]]


@pytest.fixture
def cli_env(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The CLI's environment, set for this process; afterwards, assert the CLI only read KMS."""
    env = {
        "KMS_ENDPOINT": emulator.endpoint,
        "KMS_PROTOCOL": "http",
        "ALIBABA_CLOUD_REGION_ID": emulator.region_id,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": CLI_ACCESS_KEY[0],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CLI_ACCESS_KEY[1],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # alibabacloud-credentials reads its environment once, when it is imported (utils/auth_util.py); an
    # in-process CLI run must tell it too. A subprocess reads the variables above like any user's shell.
    monkeypatch.setattr(auth_util, "environment_access_key_id", CLI_ACCESS_KEY[0])
    monkeypatch.setattr(auth_util, "environment_access_key_secret", CLI_ACCESS_KEY[1])
    monkeypatch.setattr(auth_util, "environment_security_token", None)
    yield env
    writes = sorted(set(cli_calls(emulator)) - READ_ONLY_ACTIONS)
    assert not writes, f"the CLI called KMS write actions: {writes}"


@pytest.fixture
def cli(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> CliRunner:
    """`cli("plan", "-f", "-", stdin=text)`: `kmskey-operator` in this process; returns code and output."""

    def run(*argv: str, stdin: str = "") -> Run:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli_module.main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run
