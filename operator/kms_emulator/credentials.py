"""The access keys the emulator accepts: long-term keys of accounts and RAM users, and STS triples.

Every credential maps to a principal (accounts.Principal), and so to an account: that is how a signed request
finds its account's keys, quotas and call log. STS triples (AccessKeyId, AccessKeySecret, SecurityToken) are
issued by the emulator's STS (AssumeRole, AssumeRoleWithOIDC) or, for tests, by `issue_sts` directly; like the
real service, a request signed with an expired one is answered `InvalidAccessKeyId.NotFound` (reference §3.4).
Expiry uses the real wall clock, as signatures do.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .accounts import Principal

DEFAULT_ACCESS_KEY_ID = "emulator-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "emulator-access-key-secret"


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    expires_at: float | None = None  # epoch seconds (wall clock); None = never
    principal: Principal | None = None  # None only for credentials built by hand outside the store

    @property
    def provider(self) -> str:
        return "sts" if self.security_token else "static"

    @property
    def account_id(self) -> str:
        return self.principal.account_id if self.principal is not None else ""


class CredentialStore:
    """Thread-safe lookup of secrets by access key ID."""

    def __init__(
        self, static_keys: Iterable[tuple[str, str, Principal]], default_principal: Principal
    ) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Credential] = {}
        self.default_principal = default_principal
        for key_id, secret, principal in static_keys:
            self._by_id[key_id] = Credential(key_id, secret, principal=principal)

    def static(self) -> list[Credential]:
        with self._lock:
            return [c for c in self._by_id.values() if c.security_token is None]

    def lookup(self, access_key_id: str) -> Credential | None:
        """The live credential for this ID, or None if unknown or expired."""
        with self._lock:
            credential = self._by_id.get(access_key_id)
        if credential is None:
            return None
        if credential.expires_at is not None and credential.expires_at <= time.time():
            return None
        return credential

    def issue_sts(self, duration_seconds: float = 3600.0, principal: Principal | None = None) -> Credential:
        """A fresh STS triple (ID prefixed `STS.`) acting as `principal` (default: the default account)."""
        credential = Credential(
            access_key_id="STS." + secrets.token_hex(12),
            access_key_secret=secrets.token_urlsafe(24),
            security_token=secrets.token_urlsafe(48),
            expires_at=time.time() + duration_seconds,
            principal=principal or self.default_principal,
        )
        with self._lock:
            self._forget_expired()
            self._by_id[credential.access_key_id] = credential
        return credential

    def _forget_expired(self) -> None:
        # Bounds memory under long runs that assume roles often; an expired triple is unknown anyway.
        now = time.time()
        expired = [k for k, c in self._by_id.items() if c.expires_at is not None and c.expires_at <= now]
        for key_id in expired:
            del self._by_id[key_id]
