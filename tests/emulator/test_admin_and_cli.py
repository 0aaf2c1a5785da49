"""The emulator as a separate process: the CLI, its one ready line, and the /_emulator/ admin API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException

from kms_emulator.admin_client import AdminClient, AdminError
from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.emulator.conftest import make_client

READY_PREFIX = "kms-emulator listening on http://"


class Process:
    def __init__(self, *args: str, executable: list[str] | None = None) -> None:
        command = [*(executable or [sys.executable, "-m", "kms_emulator"]), "--port", "0", *args]
        self.popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.popen.stdout is not None
        self.line = self.popen.stdout.readline().rstrip("\n")
        assert self.line.startswith(READY_PREFIX), self.line + (
            self.popen.stderr.read() if self.popen.stderr else ""
        )
        self.url = self.line.removeprefix("kms-emulator listening on ")
        self.endpoint = self.url.removeprefix("http://")

    def handle(self, access_key_id: str, access_key_secret: str) -> EmulatorHandle:
        """Enough of a handle for make_client: where it listens and which key to sign with."""
        handle = EmulatorHandle.__new__(EmulatorHandle)
        handle.endpoint, handle.region_id = self.endpoint, "cn-hangzhou"
        handle.access_key_id, handle.access_key_secret = access_key_id, access_key_secret
        return handle

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=15)
        assert self.popen.stdout is not None
        assert self.popen.stdout.read() == ""  # exactly one line on stdout
        return code


@pytest.fixture
def process() -> Iterator[Process]:
    started = Process("--quotas", "off", "--access-key-id", "ak", "--access-key-secret", "sk")
    yield started
    if started.popen.poll() is None:
        started.stop()


def test_the_cli_prints_one_ready_line_serves_the_sdk_and_stops_on_sigterm(process: Process) -> None:
    client = make_client(process.handle("ak", "sk"))

    regions = client.describe_regions()

    assert regions.body.regions.region[0].region_id == "cn-hangzhou"
    assert process.stop() == 0


def test_the_console_script_runs_too() -> None:
    script = Path(sys.executable).with_name("kms-emulator")
    started = Process("--region", "cn-shanghai", executable=[str(script)])

    client = make_client(started.handle("emulator-access-key-id", "emulator-access-key-secret"))

    assert client.describe_regions().body.regions.region[0].region_id == "cn-shanghai"
    assert started.stop() == 0


def test_cli_credentials_file_instances_and_state_file_work_across_restarts(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("# test keys\nfile-ak:file-sk\n")
    state = tmp_path / "state.json"
    args = ["--credentials-file", str(credentials), "--instance-id", "kst-hzz62ee5fe3b7ifgq5hmg"]
    first = Process(*args, "--state-file", str(state))
    client = make_client(first.handle("file-ak", "file-sk"))
    key_id = client.create_key(
        models.CreateKeyRequest(dkmsinstance_id="kst-hzz62ee5fe3b7ifgq5hmg")
    ).body.key_metadata.key_id
    first.stop()

    second = Process(*args, "--state-file", str(state))
    described = make_client(second.handle("file-ak", "file-sk")).describe_key(
        models.DescribeKeyRequest(key_id=key_id)
    )
    second.stop()

    assert described.body.key_metadata.dkmsinstance_id == "kst-hzz62ee5fe3b7ifgq5hmg"


def test_cli_fault_flags_inject_errors() -> None:
    fault = ["--fault-action", "DescribeRegions", "--fault-rate", "1", "--fault-code", "InternalFailure"]
    started = Process(*fault, "--fault-status", "500")
    client = make_client(started.handle("emulator-access-key-id", "emulator-access-key-secret"))

    with pytest.raises(ServerException) as caught:
        client.describe_regions()
    started.stop()

    assert caught.value.code == "InternalFailure"


def test_the_admin_client_observes_and_steers_a_separate_process(process: Process) -> None:
    admin = AdminClient(process.url)
    admin.wait_ready()
    client = make_client(process.handle("ak", "sk"))
    key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id

    assert admin.call_counts() == {"CreateKey": 1}
    assert admin.calls()[0].params == {}
    assert admin.call_counts_by_access_key() == {"ak": 1}
    dumped = admin.keys()
    assert [k["key_id"] for k in dumped] == [key_id]

    admin.set_fault(action="DescribeKey", code="ServiceUnavailableTemporary", status=503, times=1)
    with pytest.raises(ServerException):
        client.describe_key(models.DescribeKeyRequest(key_id=key_id))
    admin.clear_faults()

    client.schedule_key_deletion(models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))
    admin.advance_clock(7 * 86400 + 1)
    with pytest.raises(ClientException) as gone:
        client.describe_key(models.DescribeKeyRequest(key_id=key_id))
    assert gone.value.code == "Forbidden.KeyNotFound"

    admin.set_quotas(True, read_qps=1)
    client.describe_regions()
    with pytest.raises(ThrottlingException) as throttled:
        client.describe_regions()
    assert throttled.value.code == "Rejected.Throttling"
    admin.set_quotas(False)

    sts = admin.issue_sts_token()
    sts_client = make_client(
        process.handle(sts.access_key_id, sts.access_key_secret), security_token=sts.security_token
    )
    assert sts_client.describe_regions().status_code == 200

    admin.reset_calls()
    assert admin.call_counts() == {}


def test_the_admin_api_refuses_bad_fault_rules() -> None:
    with run_emulator() as emu:
        admin = AdminClient(emu.url)

        with pytest.raises(AdminError):
            admin.set_fault(action="*", rate=2.0)
        with pytest.raises(AdminError):
            admin.set_quotas(True, read_qps=0)


def test_the_admin_api_needs_no_kms_signature_and_is_not_logged() -> None:
    with run_emulator() as emu:
        admin = AdminClient(emu.url)
        admin.set_fault(action="CreateKey", code="InternalFailure", status=500)

        assert admin.health() is True
        assert emu.call_counts() == {}
        assert json.loads(json.dumps(admin.keys())) == []


def test_admin_requests_ignore_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with run_emulator() as emu:
        assert AdminClient(emu.url).health() is True
    assert os.environ["http_proxy"] == "http://127.0.0.1:9"
