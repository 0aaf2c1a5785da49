"""The access keys the emulator accepts: static pairs, and STS triples it issues itself.

Emulator choice: STS credentials are issued by the emulator itself (no AssumeRole), as an
(AccessKeyId, AccessKeySecret, SecurityToken) triple with an expiry; like the real
service, a request signed with an expired one is answered `InvalidAccessKeyId.NotFound` (reference §3.4).
Expiry uses the real wall clock, as signatures do.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_ACCESS_KEY_ID = "emulator-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "emulator-access-key-secret"


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    expires_at: float | None = None  # epoch seconds (wall clock); None = never

    @property
    def provider(self) -> str:
        return "sts" if self.security_token else "static"


class CredentialStore:
    """Thread-safe lookup of secrets by access key ID."""

    def __init__(self, static_keys: Iterable[tuple[str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Credential] = {}
        for key_id, secret in static_keys:
            self._by_id[key_id] = Credential(key_id, secret)
        if not self._by_id:
            self._by_id[DEFAULT_ACCESS_KEY_ID] = Credential(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)

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

    def issue_sts(self, duration_seconds: float = 3600.0) -> Credential:
        """A fresh STS triple, as AssumeRole would return it (ID prefixed `STS.`)."""
        credential = Credential(
            access_key_id="STS." + secrets.token_hex(12),
            access_key_secret=secrets.token_urlsafe(24),
            security_token=secrets.token_urlsafe(48),
            expires_at=time.time() + duration_seconds,
        )
        with self._lock:
            self._by_id[credential.access_key_id] = credential
        return credential
