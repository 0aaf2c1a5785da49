"""The emulator assembled: configuration, the parts that hold state, and the aiohttp application.

`Emulator` owns one of each part (accounts directory, one KMS backend per account, STS, credentials, verifier,
quotas, faults, call logs, clock, TLS) so that the wire layer, the admin endpoints and the in-process test
handle all act on the same objects.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from .accounts import AccountSpec, Directory, Principal
from .backend import DEFAULT_MAX_KEYS, KmsBackend
from .calllog import CallLog
from .clock import Clock
from .credentials import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, CredentialStore
from .faults import FaultRule, Faults
from .persistence import StateFile
from .quota import Quotas, QuotaSettings
from .rules import RotationBounds
from .signing import DATE_WINDOW_SECONDS, Verifier
from .sts import StsBackend
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
    # The default account's own (root) keys; empty: the documented default pair.
    access_keys: Sequence[tuple[str, str]] = ()
    # More accounts (or more users, roles and OIDC providers of the default account): accounts.py.
    accounts: Sequence[AccountSpec] = ()
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
    keepalive_seconds: float = 75.0  # an idle kept-alive connection is closed after this long


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.directory = Directory.build(config.account_id, config.accounts)
        root_keys = list(config.access_keys) or [(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)]
        default = Principal.root(config.account_id)
        static = [(key_id, secret, default) for key_id, secret in root_keys]
        static += [(key.id, key.secret, principal) for key, principal in self.directory.static_keys()]
        self.credentials = CredentialStore(static, default)
        self.verifier = Verifier(self.credentials, config.date_window_seconds)
        self.sts = StsBackend(self.directory, self.credentials)
        self.quotas = Quotas(config.quotas)
        self.faults = Faults(config.seed)
        for rule in config.faults:
            self.faults.add(rule)
        self.calls = CallLog()
        self.sts_calls = CallLog()
        self.state_file = StateFile(config.state_file) if config.state_file else None
        self._save_lock = threading.Lock()
        self._snapshots: dict[str, list[dict[str, object]]] = {}
        self.backends: dict[str, KmsBackend] = {
            account_id: self._new_backend(account_id, index)
            for index, account_id in enumerate(self.directory.accounts)
        }
        if self.state_file is not None:
            for account_id, keys in self.state_file.load(config.account_id).items():
                backend = self.backend_for(account_id)
                backend.restore(keys)
                self._snapshots[account_id] = backend.snapshot()
        self.handshakes = Handshakes()
        self.tls: TlsFiles | None = (
            prepare(config.tls_dir, config.host, config.tls_names) if config.tls_dir else None
        )

    @property
    def protocol(self) -> str:
        return "https" if self.tls else "http"

    def _new_backend(self, account_id: str, index: int) -> KmsBackend:
        return KmsBackend(
            region_id=self.config.region_id,
            account_id=account_id,
            clock=self.clock,
            instance_ids=self.config.instance_ids,
            max_keys=self.config.max_keys,
            rotation_bounds=self.config.rotation_bounds,
            on_change=(lambda: self._save(account_id)) if self.state_file else None,
            # Each account draws its own key IDs; the default account's are those of a one-account emulator.
            seed=None if self.config.seed is None else self.config.seed + index,
        )

    @property
    def backend(self) -> KmsBackend:
        """The default account's keys (the only ones of a one-account emulator)."""
        return self.backends[self.config.account_id]

    def backend_for(self, account_id: str) -> KmsBackend:
        backend = self.backends.get(account_id)
        if backend is None:  # a state file may name an account that is no longer configured
            backend = self.backends[account_id] = self._new_backend(account_id, len(self.backends))
        return backend

    @property
    def host_id(self) -> str:
        return f"kms.{self.config.region_id}.aliyuncs.com"

    def _save(self, account_id: str) -> None:
        """Called with `account_id`'s backend lock held: only that backend is read (another backend's lock
        is never taken here, so two accounts changing at once cannot deadlock)."""
        assert self.state_file is not None
        snapshot = self.backends[account_id].snapshot()
        with self._save_lock:
            self._snapshots[account_id] = snapshot
            self.state_file.save(dict(self._snapshots))

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
            keepalive_timeout=self.config.keepalive_seconds,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
        )
