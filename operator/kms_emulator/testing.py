"""Run an emulator inside the current process, for tests: `with run_emulator() as emu: ...`.

The server runs on its own event loop in a background thread, so synchronous SDK calls from the test thread
work, and so do async ones from any other loop. The handle reaches the emulator's parts directly (no HTTP),
with the same methods as admin_client.AdminClient has over HTTP. `run_emulator(tls=True)` serves HTTPS with
the emulator's own CA; `handle.ca_file` is the certificate a client must trust.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from .accounts import AccountSpec
from .backend import DEFAULT_MAX_KEYS, KmsBackend
from .calllog import CallRecord
from .credentials import Credential
from .faults import DEFAULT_FAULT_CODE, DEFAULT_FAULT_STATUS, FaultRule
from .quota import QuotaSettings, ThrottleStyle
from .server import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Emulator, EmulatorConfig

DEFAULT_INSTANCE_IDS = ("kst-hzz62ee5fe3b7ifgq5hmg",)


class EmulatorHandle:
    """A running emulator: where it listens, its first credential, and test controls."""

    def __init__(self, emulator: Emulator, port: int) -> None:
        self.emulator = emulator
        self.port = port
        self.endpoint = f"{emulator.config.host}:{port}"
        self.protocol = emulator.protocol  # "https" or "http"
        self.url = f"{self.protocol}://{self.endpoint}"
        # The CA certificate that verifies the emulator's serving certificate (None over plain HTTP).
        self.ca_file: Path | None = emulator.tls.ca_file if emulator.tls else None
        first = emulator.credentials.static()[0]
        self.access_key_id = first.access_key_id
        self.access_key_secret = first.access_key_secret
        self.region_id = emulator.config.region_id
        self.account_id = emulator.config.account_id

    @property
    def backend(self) -> KmsBackend:
        return self.emulator.backend

    def call_counts(self, account_id: str | None = None) -> dict[str, int]:
        """KMS calls per action: all, or only those made in `account_id`."""
        return self.emulator.calls.counts(account_id)

    def call_counts_by_account(self) -> dict[str, int]:
        return self.emulator.calls.counts_by_account()

    def sts_call_counts(self, account_id: str | None = None) -> dict[str, int]:
        return self.emulator.sts_calls.counts(account_id)

    def sts_calls(self) -> list[CallRecord]:
        return self.emulator.sts_calls.records()

    def backend_for(self, account_id: str) -> KmsBackend:
        """The keys of `account_id` (the `backend` property is the default account's)."""
        return self.emulator.backends[account_id]

    def keys(self, account_id: str | None = None) -> list[dict[str, object]]:
        return self.emulator.backends[account_id or self.account_id].snapshot()

    def accounts(self) -> list[str]:
        return sorted(self.emulator.backends)

    def call_counts_by_access_key(self) -> dict[str, int]:
        return self.emulator.calls.counts_by_access_key()

    def calls(self) -> list[CallRecord]:
        return self.emulator.calls.records()

    def reset_calls(self) -> None:
        self.emulator.calls.reset()

    def set_fault(
        self,
        action: str = "*",
        rate: float = 1.0,
        code: str | None = DEFAULT_FAULT_CODE,
        status: int = DEFAULT_FAULT_STATUS,
        latency_ms: int = 0,
        drop_connection: bool = False,
        *,
        message: str | None = None,
        retry_after_ms: int | None = None,
        times: int | None = None,
        after_action: bool = False,
    ) -> None:
        rule = FaultRule(
            action=action,
            rate=rate,
            code=code,
            status=status,
            latency_ms=latency_ms,
            drop_connection=drop_connection,
            retry_after_ms=retry_after_ms,
            times=times,
            after_action=after_action,
        )
        if message is not None:
            rule.message = message
        self.emulator.faults.add(rule)

    def clear_faults(self, action: str | None = None) -> None:
        self.emulator.faults.clear(action)

    def advance_clock(self, seconds: float) -> None:
        self.emulator.clock.advance(seconds)

    def set_quotas(
        self,
        enabled: bool,
        create_qps: float = 10,
        read_qps: float = 20,
        write_qps: float = 10,
        style: ThrottleStyle | None = None,
    ) -> None:
        self.emulator.quotas.configure(
            QuotaSettings(
                enabled, create_qps, read_qps, write_qps, style or self.emulator.quotas.settings.style
            )
        )

    def issue_sts_token(self, duration_seconds: float = 3600) -> Credential:
        return self.emulator.credentials.issue_sts(duration_seconds)

    def tls_handshakes(self) -> int:
        """TLS handshakes the emulator has seen so far: one per connection a client opened."""
        return self.emulator.handshakes.count

    def set_tls_handshake_delay(self, milliseconds: int) -> None:
        """Hold every TLS handshake this long (0: no delay), as a slow TLS peer would."""
        self.emulator.handshakes.set_delay_ms(milliseconds)

    def reset_sts_calls(self) -> None:
        self.emulator.sts_calls.reset()


@contextmanager
def run_emulator(
    quotas: bool = False,
    instance_ids: Iterable[str] = DEFAULT_INSTANCE_IDS,
    state_file: str | None = None,
    access_keys: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    *,
    region_id: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
    max_keys: int = DEFAULT_MAX_KEYS,
    throttle_style: ThrottleStyle = "rejected-429",
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int | None = None,
    tls: bool = False,
    tls_dir: str | Path | None = None,
    accounts: Sequence[AccountSpec] = (),
    keepalive_seconds: float = 75.0,
) -> Iterator[EmulatorHandle]:
    """Start an emulator on `host:port` (0 = a free port) and stop it when the block ends.

    `tls=True` serves HTTPS; its CA lives in `tls_dir` (kept, and reused by the next emulator started on it)
    or, without one, in a temporary directory removed when the block ends.
    """
    pairs = tuple(access_keys.items()) if isinstance(access_keys, Mapping) else tuple(access_keys or ())
    temporary = tempfile.mkdtemp(prefix="kms-emulator-tls-") if tls and tls_dir is None else None
    directory = str(tls_dir) if tls_dir is not None else temporary
    config = EmulatorConfig(
        host=host,
        port=port,
        region_id=region_id,
        account_id=account_id,
        access_keys=pairs,
        instance_ids=tuple(instance_ids),
        state_file=state_file,
        max_keys=max_keys,
        quotas=QuotaSettings(enabled=quotas, style=throttle_style),
        seed=seed,
        tls_dir=directory,
        accounts=tuple(accounts),
        keepalive_seconds=keepalive_seconds,
    )
    try:
        emulator = Emulator(config)
        server = _BackgroundServer(emulator)
        port_found = server.start()
        try:
            yield EmulatorHandle(emulator, port_found)
        finally:
            server.stop()
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


class _BackgroundServer:
    """An aiohttp runner on a private event loop in a daemon thread."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="kms-emulator", daemon=True)

    def start(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> int:
        self.runner = self.emulator.make_runner()
        await self.runner.setup()
        await self.emulator.make_site(self.runner).start()
        return bound_port(self.runner)

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        # Calls still held (e.g. by an injected latency) are cancelled, not left pending on a closed loop.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def bound_port(runner: web.AppRunner) -> int:
    """The port the runner's first socket is bound to (useful when asked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the emulator is not listening")
