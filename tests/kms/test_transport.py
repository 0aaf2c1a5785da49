"""The gateway's transport, reached through the emulator over TLS: pooled connections, a free event loop,
an extra CA that adds to the normal trust, the SDK's timeouts, proxy settings and errors, and credentials
that refresh from the worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig

from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.settings import Settings


def static_credential(emu: EmulatorHandle) -> CredentialClient:
    return CredentialClient(
        CredentialConfig(
            type="access_key", access_key_id=emu.access_key_id, access_key_secret=emu.access_key_secret
        )
    )


def gateway(
    emu: EmulatorHandle,
    *,
    ca_bundle: Path | None = None,
    connections: int = 4,
    credential: Any = None,
    **settings: Any,
) -> KmsGateway:
    bundle = ca_bundle or emu.ca_file
    return KmsGateway(
        Settings(
            kms_endpoint=emu.endpoint,
            kms_protocol="https",
            kms_ca_bundle=str(bundle) if bundle else None,
            kms_max_connections=connections,
            read_qps=0,
            write_qps=0,
            create_qps=0,
            **settings,
        ),
        credential=credential or static_credential(emu),
    )


@pytest.fixture
def emu() -> Iterator[EmulatorHandle]:
    """A fresh emulator per test: a new endpoint, so no connection kept from another test is reused."""
    with run_emulator(tls=True) as handle:
        yield handle


def test_many_calls_travel_over_a_few_kept_alive_tls_connections(emu: EmulatorHandle) -> None:
    key_id = emu.backend.create_key().key_id
    kms = gateway(emu, connections=4)

    async def many() -> None:
        for _ in range(5):
            await asyncio.gather(*(kms.describe_key(emu.region_id, key_id) for _ in range(40)))

    asyncio.run(many())

    assert emu.call_counts()["DescribeKey"] == 200
    # At most one connection per worker: 200 calls, at most 4 TLS handshakes (one per call before pooling).
    assert 1 <= emu.tls_handshakes() <= 4


def test_gateways_with_different_credentials_share_the_endpoints_connections() -> None:
    """One gateway per account (credentials) on one endpoint: one bounded pool, one set of connections."""
    with run_emulator(tls=True, access_keys={"ak-team-a": "secret-a", "ak-team-b": "secret-b"}) as emu:
        key_id = emu.backend.create_key().key_id
        team_a, team_b = (
            gateway(
                emu,
                connections=3,
                credential=CredentialClient(
                    CredentialConfig(type="access_key", access_key_id=ak, access_key_secret=secret)
                ),
            )
            for ak, secret in (("ak-team-a", "secret-a"), ("ak-team-b", "secret-b"))
        )

        async def both() -> None:
            await asyncio.gather(
                *(kms.describe_key(emu.region_id, key_id) for kms in (team_a, team_b) for _ in range(60))
            )

        asyncio.run(both())
        by_key = emu.call_counts_by_access_key()
        handshakes = emu.tls_handshakes()
    assert (by_key["ak-team-a"], by_key["ak-team-b"]) == (60, 60)
    assert 1 <= handshakes <= 3


def test_connections_the_server_closed_while_idle_are_replaced_without_failing_a_call() -> None:
    """KMS (like any server or load balancer) closes idle kept-alive connections; the pool must notice."""
    with run_emulator(tls=True, keepalive_seconds=0.5) as emu:
        kms = gateway(emu, kms_call_retries=0)  # no in-call retry may hide a failure on a dead connection

        async def create_after_idle_pauses() -> list[str]:
            created = []
            for _ in range(3):
                created.append((await kms.create_key(emu.region_id, {"Description": "after idle"})).key_id)
                await asyncio.sleep(1.5)  # longer than the server keeps an idle connection
            return created

        created = asyncio.run(create_after_idle_pauses())
        handshakes = emu.tls_handshakes()
    assert len(set(created)) == 3  # every CreateKey (never repeated) went through
    assert handshakes == 3  # a new connection each time the server had closed the old one


def test_the_event_loop_keeps_running_while_a_tls_handshake_is_held(emu: EmulatorHandle) -> None:
    key_id = emu.backend.create_key().key_id
    kms = gateway(emu)
    emu.set_tls_handshake_delay(1500)

    async def call_while_ticking() -> float:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        await kms.describe_key(emu.region_id, key_id)
        ticker.cancel()
        return max(gaps)

    longest_stall = asyncio.run(call_while_ticking())

    assert emu.tls_handshakes() == 1  # the call did wait out a held handshake...
    assert longest_stall < 0.75  # ...while the loop kept running (a loop-blocking transport stalls 1.5 s)


def test_an_extra_ca_bundle_adds_to_the_system_trust_instead_of_replacing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        run_emulator(tls=True, tls_dir=tmp_path / "system") as system_trusted,
        run_emulator(tls=True, tls_dir=tmp_path / "extra") as extra_trusted,
    ):
        # This test's system trust store: OpenSSL's default file, which the SDK's TLS context loads.
        assert system_trusted.ca_file is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(system_trusted.ca_file))
        # The operator's settings are the same for both endpoints: the extra bundle holds only one CA.
        via_extra = gateway(extra_trusted, ca_bundle=extra_trusted.ca_file)
        via_system = gateway(system_trusted, ca_bundle=extra_trusted.ca_file)
        one = extra_trusted.backend.create_key().key_id
        two = system_trusted.backend.create_key().key_id

        async def both() -> None:
            await via_extra.describe_key(extra_trusted.region_id, one)
            await via_system.describe_key(system_trusted.region_id, two)

        asyncio.run(both())
    assert extra_trusted.call_counts()["DescribeKey"] == system_trusted.call_counts()["DescribeKey"] == 1


def test_a_server_whose_ca_is_not_trusted_is_refused_as_a_network_error(tmp_path: Path) -> None:
    with run_emulator(tls=True) as untrusted, run_emulator(tls=True, tls_dir=tmp_path) as other:
        key_id = untrusted.backend.create_key().key_id
        kms = gateway(untrusted, ca_bundle=other.ca_file, kms_call_retries=0)
        with pytest.raises(KmsError) as raised:
            asyncio.run(kms.describe_key(untrusted.region_id, key_id))
    assert raised.value.code == "NetworkError"
    assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message
    assert untrusted.call_counts().get("DescribeKey", 0) == 0


def test_the_read_timeout_setting_ends_a_call_that_gets_no_answer(emu: EmulatorHandle) -> None:
    key_id = emu.backend.create_key().key_id
    emu.set_fault("DescribeKey", code=None, latency_ms=3000)
    kms = gateway(emu, kms_read_timeout_ms=500, kms_call_retries=0)
    with pytest.raises(KmsError) as raised:
        asyncio.run(kms.describe_key(emu.region_id, key_id))
    assert raised.value.code == "NetworkError"
    assert raised.value.kind is ErrorKind.RETRY
    assert "time" in raised.value.message.lower()  # "Read timed out." (requests) names the timeout


def test_the_sdk_error_mapping_is_kept_over_https(emu: EmulatorHandle) -> None:
    emu.set_fault("DescribeKey", code="Rejected.Throttling", status=429, retry_after_ms=1500)
    kms = gateway(emu, kms_call_retries=0)
    with pytest.raises(KmsError) as throttled:
        asyncio.run(kms.describe_key(emu.region_id, "any"))
    emu.clear_faults()
    with pytest.raises(KmsError) as missing:
        asyncio.run(kms.describe_key(emu.region_id, "no-such-key"))

    assert throttled.value.is_throttling
    assert throttled.value.http_status == 429
    assert throttled.value.retry_after_seconds == 1.5
    assert missing.value.kind is ErrorKind.GONE
    assert missing.value.request_id


class ConnectProxy:
    """An HTTPS proxy on 127.0.0.1 (HTTP CONNECT tunnels), counting the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, port = target.rsplit(":", 1)
            if method != "CONNECT" or host != "127.0.0.1":  # this proxy only reaches the local emulator
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            self.tunnels.append(target)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pumps = [
                    threading.Thread(target=_pump, args=(client, upstream), daemon=True),
                    threading.Thread(target=_pump, args=(upstream, client), daemon=True),
                ]
                for pump in pumps:
                    pump.start()
                for pump in pumps:
                    pump.join()

    def close(self) -> None:
        self.server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_https_proxy_from_the_environment_is_honoured(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ConnectProxy()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        key_id = emu.backend.create_key().key_id
        kms = gateway(emu)
        meta = asyncio.run(kms.describe_key(emu.region_id, key_id))
    finally:
        proxy.close()
    assert meta.key_id == key_id
    assert proxy.tunnels == [emu.endpoint]


class StsTokenServer:
    """A credentials URI (the alibabacloud-credentials `credentials_uri` provider) handing out emulator STS
    tokens that go stale after two seconds, so a few seconds of calls need several refreshes."""

    def __init__(self, emu: EmulatorHandle) -> None:
        served = self.served = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = emu.issue_sts_token(duration_seconds=3600)
                # The provider treats a token as stale 15 minutes before it expires.
                expires = datetime.fromtimestamp(time.time() + 15 * 60 + 2, UTC)
                body = json.dumps(
                    {
                        "Code": "Success",
                        "AccessKeyId": token.access_key_id,
                        "AccessKeySecret": token.access_key_secret,
                        "SecurityToken": token.security_token,
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ).encode()
                served[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/credentials"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_credentials_refresh_from_the_worker_threads(emu: EmulatorHandle) -> None:
    tokens = StsTokenServer(emu)
    key_id = emu.backend.create_key().key_id
    credential = CredentialClient(CredentialConfig(type="credentials_uri", credentials_uri=tokens.url))
    kms = gateway(emu, credential=credential, connections=8)

    async def calls_for(seconds: float) -> int:
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.gather(*(kms.describe_key(emu.region_id, key_id) for _ in range(8)))
            done += 8
            await asyncio.sleep(0.05)
        return done

    try:
        made = asyncio.run(calls_for(5.0))
    finally:
        tokens.close()

    sts_keys = [k for k in emu.call_counts_by_access_key() if k.startswith("STS.")]
    assert emu.call_counts()["DescribeKey"] == made  # every call was signed with a live token
    assert len(sts_keys) >= 2  # and the tokens were refreshed on the way
    assert tokens.served[0] == len(sts_keys)  # one fetch per refresh: the threads did not stampede
