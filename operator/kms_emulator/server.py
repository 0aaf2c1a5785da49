"""The emulator assembled: configuration, the parts that hold state, and the aiohttp application.

`Emulator` owns one of each part (backend, credentials, verifier, quotas, faults, call log, clock, TLS) so
that the wire layer, the admin endpoints and the in-process test handle all act on the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from .backend import DEFAULT_MAX_KEYS, KmsBackend
from .calllog import CallLog
from .clock import Clock
from .credentials import CredentialStore
from .faults import FaultRule, Faults
from .persistence import StateFile
from .quota import Quotas, QuotaSettings
from .rules import RotationBounds
from .signing import DATE_WINDOW_SECONDS, Verifier
from .tls import Handshakes, TlsFiles, prepare, server_context

DEFAULT_REGION = "cn-hangzhou"
# Emulator choice: a made-up 16-digit account ID (real ones have 16 digits), used in ARNs and as Creator.
DEFAULT_ACCOUNT_ID = "1234567890123456"
# Request lines and headers up to this size are accepted: a 32 KiB policy percent-encodes to over 64 KiB.
MAX_REQUEST_LINE = 1024 * 1024


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    region_id: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    access_keys: Sequence[tuple[str, str]] = ()  # empty: the documented default pair
    instance_ids: Sequence[str] = ()
    state_file: str | None = None
    max_keys: int = DEFAULT_MAX_KEYS
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    faults: Sequence[FaultRule] = ()
    rotation_bounds: RotationBounds = field(default_factory=RotationBounds)
    date_window_seconds: float = DATE_WINDOW_SECONDS
    seed: int | None = None  # makes key IDs and fault dice reproducible
    tls_dir: str | None = None  # serve HTTPS with the CA kept in this directory; None: plain HTTP
    tls_names: Sequence[str] = ()  # more names (DNS or IP) for the serving certificate


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.credentials = CredentialStore(config.access_keys)
        self.verifier = Verifier(self.credentials, config.date_window_seconds)
        self.quotas = Quotas(config.quotas)
        self.faults = Faults(config.seed)
        for rule in config.faults:
            self.faults.add(rule)
        self.calls = CallLog()
        self.state_file = StateFile(config.state_file) if config.state_file else None
        self.backend = KmsBackend(
            region_id=config.region_id,
            account_id=config.account_id,
            clock=self.clock,
            instance_ids=config.instance_ids,
            max_keys=config.max_keys,
            rotation_bounds=config.rotation_bounds,
            on_change=self._save if self.state_file else None,
            seed=config.seed,
        )
        if self.state_file is not None:
            self.backend.restore(self.state_file.load())
        self.handshakes = Handshakes()
        self.tls: TlsFiles | None = (
            prepare(config.tls_dir, config.host, config.tls_names) if config.tls_dir else None
        )

    @property
    def protocol(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host_id(self) -> str:
        return f"kms.{self.config.region_id}.aliyuncs.com"

    def _save(self) -> None:
        assert self.state_file is not None
        self.state_file.save(self.backend.snapshot())

    def make_app(self) -> web.Application:
        from .admin import admin_routes
        from .wire import KmsApi

        app = web.Application(client_max_size=MAX_REQUEST_LINE)
        app.add_routes(admin_routes(self))
        app.router.add_route("*", "/{tail:.*}", KmsApi(self).handle)
        return app

    def make_site(self, runner: web.AppRunner) -> web.TCPSite:
        """Where the runner listens: config.host:port, over TLS when the emulator has a TLS directory."""
        context = server_context(self.tls, self.handshakes) if self.tls else None
        return web.TCPSite(runner, self.config.host, self.config.port, ssl_context=context)

    def make_runner(self) -> web.AppRunner:
        # access_log=None: per-request logging would cost more than serving a DescribeKey.
        return web.AppRunner(
            self.make_app(),
            access_log=None,
            handle_signals=False,
            # Stopping waits this long for in-flight calls, e.g. ones held by an injected latency.
            shutdown_timeout=2.0,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
        )
