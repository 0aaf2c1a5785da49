"""The emulator over HTTPS: its own CA, a certificate the SDK verifies, the CLI switch, handshake counts."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from cryptography import x509

from kms_emulator.admin_client import AdminClient
from kms_emulator.testing import EmulatorHandle, run_emulator

READY = re.compile(r"^kms-emulator listening on (https?)://(127\.0\.0\.1:\d+)(?: \(CA certificate: (.+)\))?$")


def sdk_client(emu: EmulatorHandle) -> Client:
    return Client(
        Config(
            access_key_id=emu.access_key_id,
            access_key_secret=emu.access_key_secret,
            endpoint=emu.endpoint,
            protocol="https",
            region_id=emu.region_id,
            ca=str(emu.ca_file),
            connect_timeout=5000,
            read_timeout=10000,
        )
    )


def tls_connect(port: int, cafile: Path | None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    return context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )


@pytest.fixture(scope="module")
def tls_emu() -> Iterator[EmulatorHandle]:
    with run_emulator(tls=True) as handle:
        yield handle


def test_run_emulator_with_tls_serves_https_that_the_sdk_verifies_with_the_emulators_ca(
    tls_emu: EmulatorHandle,
) -> None:
    assert tls_emu.protocol == "https"
    assert tls_emu.url == f"https://{tls_emu.endpoint}"
    assert tls_emu.ca_file is not None
    assert tls_emu.ca_file.name == "ca.crt"

    created = sdk_client(tls_emu).create_key(models.CreateKeyRequest(description="over tls"))

    assert created.body.key_metadata.description == "over tls"
    assert tls_emu.call_counts().get("CreateKey") == 1


def test_a_client_that_does_not_trust_the_emulators_ca_is_refused(tls_emu: EmulatorHandle) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_emu.port, None)
    with tls_connect(tls_emu.port, tls_emu.ca_file) as verified:
        assert verified.version() in ("TLSv1.2", "TLSv1.3")


def test_the_serving_certificate_names_the_loopback_addresses_and_extra_names(tmp_path: Path) -> None:
    with run_emulator(tls_dir=tmp_path, host="127.0.0.1") as emu:
        assert emu.protocol == "https"
        with tls_connect(emu.port, emu.ca_file) as connection:
            der = connection.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    key_file = tmp_path / "tls.key"
    assert key_file.stat().st_mode & 0o077 == 0  # the private keys are the owner's only
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0


def test_plain_http_stays_the_default() -> None:
    with run_emulator() as emu:
        assert emu.protocol == "http"
        assert emu.ca_file is None
        assert emu.url.startswith("http://")
        plain = Client(
            Config(
                access_key_id=emu.access_key_id,
                access_key_secret=emu.access_key_secret,
                endpoint=emu.endpoint,
                protocol="http",
                region_id=emu.region_id,
            )
        )
        assert plain.describe_regions().body.regions.region[0].region_id == emu.region_id
        assert emu.tls_handshakes() == 0


def test_calls_on_one_kept_alive_connection_cost_one_handshake(tls_emu: EmulatorHandle) -> None:
    client = sdk_client(tls_emu)
    key_id = client.create_key(models.CreateKeyRequest()).body.key_metadata.key_id
    before = tls_emu.tls_handshakes()

    for _ in range(20):
        client.describe_key(models.DescribeKeyRequest(key_id=key_id))
    with tls_connect(tls_emu.port, tls_emu.ca_file):
        pass

    # The SDK's blocking path keeps its connection: 20 calls add no handshake; the raw connection adds one.
    assert tls_emu.tls_handshakes() - before == 1


def test_a_handshake_delay_holds_every_new_connection(tls_emu: EmulatorHandle) -> None:
    tls_emu.set_tls_handshake_delay(400)
    try:
        began = time.monotonic()
        with tls_connect(tls_emu.port, tls_emu.ca_file):
            held = time.monotonic() - began
    finally:
        tls_emu.set_tls_handshake_delay(0)
    assert held >= 0.4


class EmulatorProcess:
    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "kms_emulator", "--port", "0", "--quotas", "off", *args]
        self.popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.popen.stdout is not None
        self.line = self.popen.stdout.readline().rstrip("\n")
        match = READY.match(self.line)
        assert match, self.line + (self.popen.stderr.read() if self.popen.stderr else "")
        self.protocol, self.endpoint, ca = match.groups()
        self.ca_file = Path(ca) if ca else None

    def admin(self) -> AdminClient:
        return AdminClient(
            f"{self.protocol}://{self.endpoint}", ca_file=str(self.ca_file) if self.ca_file else None
        )

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=15)


def test_the_cli_tls_switch_prints_https_and_the_ca_and_keeps_the_ca_in_tls_dir(tmp_path: Path) -> None:
    first = EmulatorProcess("--tls-dir", str(tmp_path))
    try:
        assert first.protocol == "https"
        assert first.ca_file == tmp_path / "ca.crt"
        ca_pem = first.ca_file.read_bytes()
        admin = first.admin()
        admin.wait_ready()
        before = admin.tls_handshakes()
        admin.set_tls_handshake_delay(0)
        assert admin.tls_handshakes() > before  # each admin request here opened a connection
    finally:
        assert first.stop() == 0

    second = EmulatorProcess("--tls-dir", str(tmp_path))
    try:
        # The same CA: a client given the first emulator's ca.crt trusts the restarted one.
        assert second.ca_file is not None
        assert second.ca_file.read_bytes() == ca_pem
        second.admin().wait_ready()
    finally:
        assert second.stop() == 0


def test_the_cli_tls_switch_without_a_directory_uses_a_temporary_one_and_removes_it() -> None:
    started = EmulatorProcess("--tls")
    assert started.ca_file is not None
    assert started.ca_file.exists()
    started.admin().wait_ready()
    assert started.stop() == 0
    assert not started.ca_file.parent.exists()


def test_the_cli_without_tls_still_serves_plain_http() -> None:
    started = EmulatorProcess()
    try:
        assert started.protocol == "http"
        assert started.ca_file is None
        started.admin().wait_ready()
    finally:
        assert started.stop() == 0


def test_the_throughput_bench_measures_over_https_with_tls() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kms_emulator.bench", "--seconds", "0.5", "--concurrency", "4", "--tls"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    match = re.search(r"DescribeKey: (\d+) calls/s \((\d+) calls over HTTPS", result.stdout)
    assert match, result.stdout + result.stderr
    assert int(match.group(2)) > 0
