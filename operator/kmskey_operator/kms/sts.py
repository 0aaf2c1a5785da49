"""Credentials from the unmodified alibabacloud-credentials providers, and STS GetCallerIdentity.

The one place (beside gateway.py) that touches the Alibaba SDKs for identity: it builds a credentials client
from plain values (an AccessKey pair, a role to assume with a base provider, an OIDC token file, the default
chain) and asks STS who those credentials are. The library's providers cache what STS returns, but count it
stale 15 minutes before it expires: with durationSeconds 900 (STS's shortest) that is at once, so they would
assume the role again for every KMS call. Role providers are therefore wrapped in `RoleCredentialsCache`,
which keeps the credentials until a quarter of their lifetime is left (at most 15 minutes, as the library):
one AssumeRole per ~11 minutes at 900 s, per 45 minutes at 3600 s.

STS is reached at `host[:port]` over the operator's protocol; for plain HTTP (the emulator) the endpoint
given to the library carries its scheme, because the library composes `https://` for a bare host. Over
HTTPS the library verifies with the system roots (SSL_CERT_FILE honoured) and certifi: it has no CA option.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.provider import (
    DefaultCredentialsProvider,
    OIDCRoleArnCredentialsProvider,
    RamRoleArnCredentialsProvider,
    StaticAKCredentialsProvider,
    StaticSTSCredentialsProvider,
)
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params
from darabonba.runtime import RuntimeOptions

from kmskey_operator.kms.errors import KmsError

STS_VERSION = "2015-04-01"
_GET_CALLER_IDENTITY = Params(
    action="GetCallerIdentity",
    version=STS_VERSION,
    protocol="HTTPS",
    pathname="/",
    method="POST",
    auth_type="AK",
    style="RPC",
    req_body_type="formData",
    body_type="json",
)


@dataclasses.dataclass(frozen=True)
class StsEndpoint:
    """Where STS answers, and how to reach it."""

    host: str  # host[:port]
    protocol: str = "https"
    ca_bundle: str | None = None  # for GetCallerIdentity (the credentials library cannot take one)
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 10000

    @property
    def for_credentials_library(self) -> str:
        return self.host if self.protocol == "https" else f"{self.protocol}://{self.host}"


@dataclasses.dataclass(frozen=True)
class CallerIdentity:
    account_id: str
    arn: str
    identity_type: str


Provider = Any  # an alibabacloud_credentials_api.ICredentialsProvider (untyped library)


def static_keys(access_key_id: str, access_key_secret: str, security_token: str | None = None) -> Provider:
    if security_token:
        return StaticSTSCredentialsProvider(
            access_key_id=access_key_id, access_key_secret=access_key_secret, security_token=security_token
        )
    return StaticAKCredentialsProvider(access_key_id=access_key_id, access_key_secret=access_key_secret)


def default_chain() -> Provider:
    """The operator's own credential chain: environment, RRSA variables, credentials file, ECS role."""
    return DefaultCredentialsProvider()


REFRESH_SHARE = 0.25  # of the credentials' lifetime left when they are fetched again
REFRESH_AT_MOST = 15 * 60.0  # seconds before expiry (the library's own margin)


class RoleCredentialsCache:
    """A credentials provider that keeps its inner (role) provider's credentials until near their expiry.

    Thread-safe: the gateway resolves credentials in its worker threads, and one of them fetches while the
    others wait for that fetch (never one AssumeRole per waiting thread). The async path runs the same
    code in a thread, so the event loop never waits on STS (nor on the library's lock, see kms/transport.py).
    A failed fetch is not cached: the next call tries again.
    """

    def __init__(self, inner: Provider, *, clock: Callable[[], float] = time.time) -> None:
        self._inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._refresh_at = float("-inf")

    def get_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is not None and self._clock() < self._refresh_at:
            return credentials
        with self._lock:
            if self._credentials is not None and self._clock() < self._refresh_at:
                return self._credentials
            fetched_at = self._clock()
            credentials = self._inner.get_credentials()
            expiration = credentials.get_expiration()
            if expiration is None:
                self._refresh_at = float("inf")  # credentials that never expire
            else:
                lifetime = max(0.0, float(expiration) - fetched_at)
                self._refresh_at = float(expiration) - min(REFRESH_AT_MOST, lifetime * REFRESH_SHARE)
            self._credentials = credentials
            return credentials

    async def get_credentials_async(self) -> Any:
        return await asyncio.to_thread(self.get_credentials)

    def get_provider_name(self) -> str:
        return str(self._inner.get_provider_name())

    def forget(self) -> None:
        """Fetch afresh at the next call (KMS refused the cached credentials)."""
        self._refresh_at = float("-inf")


def assume_role(
    base: Provider,
    *,
    role_arn: str,
    session_name: str,
    duration_seconds: int,
    external_id: str | None,
    endpoint: StsEndpoint,
) -> Provider:
    return RoleCredentialsCache(
        RamRoleArnCredentialsProvider(
            credentials_provider=base,
            role_arn=role_arn,
            role_session_name=session_name,
            duration_seconds=duration_seconds,
            external_id=external_id,
            sts_endpoint=endpoint.for_credentials_library,
            http_options=_http_options(endpoint),
        )
    )


def assume_role_with_oidc(
    *,
    role_arn: str,
    oidc_provider_arn: str,
    token_file: str,
    session_name: str,
    duration_seconds: int,
    endpoint: StsEndpoint,
) -> Provider:
    return RoleCredentialsCache(
        OIDCRoleArnCredentialsProvider(
            role_arn=role_arn,
            oidc_provider_arn=oidc_provider_arn,
            oidc_token_file_path=token_file,
            role_session_name=session_name,
            duration_seconds=duration_seconds,
            sts_endpoint=endpoint.for_credentials_library,
            http_options=_http_options(endpoint),
        )
    )


def client(provider: Provider) -> Any:
    """The credentials client the KMS SDK takes (`Config(credential=...)`)."""
    return CredentialClient(provider=provider)


async def caller_identity(credential: Any, endpoint: StsEndpoint) -> CallerIdentity:
    """STS GetCallerIdentity with these credentials (resolving them first, which may assume a role)."""
    from kmskey_operator.kms.gateway import _to_kms_error  # the one place that knows SDK exceptions

    sts = OpenApiClient(
        Config(
            credential=credential,
            endpoint=endpoint.host,
            protocol=endpoint.protocol,
            ca=endpoint.ca_bundle,
            connect_timeout=endpoint.connect_timeout_ms,
            read_timeout=endpoint.read_timeout_ms,
            user_agent="kmskey-operator",
        )
    )
    try:
        answer = await sts.call_api_async(_GET_CALLER_IDENTITY, OpenApiRequest(), RuntimeOptions())
    except Exception as error:
        failure = error if isinstance(error, KmsError) else _to_kms_error("GetCallerIdentity", error)
        raise failure from None
    body = answer.get("body") or {}
    account = str(body.get("AccountId") or "")
    if not account:
        raise KmsError("GetCallerIdentity", "InvalidResponse", "STS answered without an AccountId")
    return CallerIdentity(account, str(body.get("Arn") or ""), str(body.get("IdentityType") or ""))


def trust_extra_ca(ca_bundle: str | None, directory: str | None = None) -> str | None:
    """Make `ca_bundle` trusted by the credentials library's STS calls, which take no CA option.

    The library verifies with `ssl.create_default_context()` (the system roots, read from SSL_CERT_FILE when
    it is set) plus certifi. So SSL_CERT_FILE is pointed at one file holding what it held before (or the
    system's default roots), certifi's roots and `ca_bundle`: trust is only added to, never narrowed. Nothing
    is done without an extra CA. Returns the file written, if any.
    """
    import os
    import ssl
    import tempfile

    import certifi

    if not ca_bundle:
        return None
    before = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    parts = [before, ssl.get_default_verify_paths().cafile, certifi.where(), ca_bundle]
    texts = []
    for path in dict.fromkeys(parts):
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read().strip())
    fd, combined = tempfile.mkstemp(prefix="kmskey-ca-", suffix=".pem", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(texts) + "\n")
    os.environ["SSL_CERT_FILE"] = combined
    return combined


def _http_options(endpoint: StsEndpoint) -> Any:
    from alibabacloud_credentials.http import HttpOptions

    return HttpOptions(connect_timeout=endpoint.connect_timeout_ms, read_timeout=endpoint.read_timeout_ms)
