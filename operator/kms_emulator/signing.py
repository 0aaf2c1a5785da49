"""Request authentication: ACS3-HMAC-SHA256 (the SDK default) and classic RPC v1 HMAC-SHA1 (reference §1.5,
§1.6, §6.2).

Verification recomputes the client's signature from what arrived: the headers named in `SignedHeaders`, the
decoded query pairs and the body hash (ACS3), or every query and form parameter (v1). The same canonical forms
are exposed as `sign_acs3`/`sign_v1` so that the benchmark client signs exactly as the server verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from . import errors
from .clock import parse_iso
from .credentials import Credential, CredentialStore

ACS3 = "ACS3-HMAC-SHA256"
# Algorithms a client may ask for that the emulator does not verify: answered IncompleteSignature.
UNSUPPORTED_ALGORITHMS = ("ACS3-HMAC-SM3", "ACS3-RSA-SHA256", "ACS4-HMAC-SHA256")
DATE_WINDOW_SECONDS = 15 * 60
# Emulator choice: nonces are remembered for the date window, up to this many; beyond it the oldest are
# forgotten, which bounds memory under benchmark load at the price of a weaker (still 15-minute) replay check.
MAX_REMEMBERED_NONCES = 500_000
# Emulator choice: these ACS3 headers must be signed (when sent), so that changing them breaks the signature;
# otherwise the request is answered IncompleteSignature.
_MUST_SIGN = ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
_MUST_SIGN_IF_PRESENT = ("x-acs-action", "x-acs-version", "x-acs-security-token", "host")
# v1 common parameters: part of the signature, not of the API call.
V1_COMMON_PARAMETERS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "AccessKeyId",
        "Signature",
        "SecurityToken",
        "SignatureType",
        "RegionId",
    }
)


def pct(value: str) -> str:
    """RFC 3986 percent-encoding as both schemes use it: space -> %20, of the reserved set only `~` kept."""
    return quote(value, safe="~")


@dataclass(frozen=True)
class IncomingRequest:
    """What authentication needs from an HTTP request. Header names are lower-case."""

    method: str
    path: str
    query: Sequence[tuple[str, str]]
    form: Sequence[tuple[str, str]]
    headers: Callable[[str], list[str]]  # all values of a lower-case header name
    body: bytes


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{k}={pct(v)}" for k, v in sorted(pairs))


def acs3_string_to_sign(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    header_values: Callable[[str], list[str]],
    content_sha256: str,
) -> str:
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in header_values(name)))}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        [
            method,
            path or "/",
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            content_sha256,
        ]
    )
    return f"{ACS3}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def sign_acs3(
    *,
    secret: str,
    access_key_id: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: dict[str, str],
    body: bytes = b"",
) -> str:
    """The `Authorization` header for a request; `headers` (lower-case names) are all signed."""
    names = sorted(headers)
    to_sign = acs3_string_to_sign(
        method, path, query, names, lambda n: [headers[n]], hashlib.sha256(body).hexdigest()
    )
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ACS3} Credential={access_key_id},SignedHeaders={';'.join(names)},Signature={signature}"


def v1_string_to_sign(method: str, params: Sequence[tuple[str, str]]) -> str:
    canonical = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params) if k != "Signature")
    return f"{method}&{pct('/')}&{pct(canonical)}"


def sign_v1(secret: str, method: str, params: Sequence[tuple[str, str]]) -> str:
    digest = hmac.new(
        (secret + "&").encode(), v1_string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


class NonceCache:
    """Nonces seen within the date window; a second use is a replay."""

    def __init__(self, ttl_seconds: float, max_entries: int = MAX_REMEMBERED_NONCES) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, nonce: str) -> bool:
        """Record `nonce`; False if it was already used."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) >= self._max or next(iter(self._seen.values())) < now - self._ttl
            ):
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


class Verifier:
    """Authenticates KMS API requests; returns the credential or raises the gateway's KmsError."""

    def __init__(self, credentials: CredentialStore, window_seconds: float = DATE_WINDOW_SECONDS) -> None:
        self.credentials = credentials
        self.window_seconds = window_seconds
        # A nonce can only be replayed while its date is in the window, on either side of now.
        self.nonces = NonceCache(2 * window_seconds)

    def verify(self, request: IncomingRequest) -> Credential:
        authorization = request.headers("authorization")
        if authorization:
            return self._verify_acs3(request, authorization[0])
        if any(k == "Signature" for k, _ in (*request.query, *request.form)):
            return self._verify_v1(request)
        raise errors.missing_parameter("Signature")

    def _verify_acs3(self, request: IncomingRequest, authorization: str) -> Credential:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ACS3:
            why = (
                f"{algorithm} is not supported by the emulator."
                if algorithm in UNSUPPORTED_ALGORITHMS
                else ""
            )
            raise errors.incomplete_signature(why)
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value
        access_key_id, signed, signature = (
            fields.get(n, "") for n in ("Credential", "SignedHeaders", "Signature")
        )
        if not access_key_id or not signed or not signature:
            raise errors.incomplete_signature("Credential, SignedHeaders and Signature are required.")
        signed_headers = signed.split(";")
        for name in _MUST_SIGN:
            if name not in signed_headers or not request.headers(name):
                raise errors.incomplete_signature(f"The header {name} must be sent and signed.")
        for name in _MUST_SIGN_IF_PRESENT:
            if request.headers(name) and name not in signed_headers:
                raise errors.incomplete_signature(f"The header {name} must be signed.")

        credential = self._credential(access_key_id, _first(request.headers("x-acs-security-token")))
        content_sha256 = request.headers("x-acs-content-sha256")[0]
        if not hmac.compare_digest(content_sha256, hashlib.sha256(request.body).hexdigest()):
            raise errors.signature_does_not_match()
        to_sign = acs3_string_to_sign(
            request.method, request.path, request.query, signed_headers, request.headers, content_sha256
        )
        expected = hmac.new(
            credential.access_key_secret.encode(), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise errors.signature_does_not_match()
        self._check_time(request.headers("x-acs-date")[0])
        self._check_nonce(access_key_id, request.headers("x-acs-signature-nonce")[0])
        return credential

    def _verify_v1(self, request: IncomingRequest) -> Credential:
        params = [*request.query, *request.form]
        values = dict(params)
        if values.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
            raise errors.incomplete_signature("Only SignatureMethod HMAC-SHA1 is supported.")
        access_key_id = values.get("AccessKeyId")
        if not access_key_id:
            raise errors.missing_parameter("AccessKeyId")
        credential = self._credential(access_key_id, values.get("SecurityToken"))
        to_sign = v1_string_to_sign(request.method, params)
        if not hmac.compare_digest(
            sign_v1(credential.access_key_secret, request.method, params), values["Signature"]
        ):
            raise errors.signature_does_not_match(to_sign)
        timestamp = values.get("Timestamp")
        if not timestamp:
            raise errors.illegal_timestamp()
        self._check_time(timestamp)
        nonce = values.get("SignatureNonce")
        if not nonce:
            raise errors.missing_parameter("SignatureNonce")
        self._check_nonce(access_key_id, nonce)
        return credential

    def _credential(self, access_key_id: str, security_token: str | None) -> Credential:
        credential = self.credentials.lookup(access_key_id)
        if credential is None:
            raise errors.invalid_access_key_id()
        if (security_token or None) != credential.security_token:
            raise errors.security_token_mismatch()
        return credential

    def _check_time(self, text: str) -> None:
        try:
            sent = parse_iso(text)
        except ValueError:
            raise errors.illegal_timestamp() from None
        if abs(time.time() - sent) > self.window_seconds:
            raise errors.timestamp_expired()

    def _check_nonce(self, access_key_id: str, nonce: str) -> None:
        if not self.nonces.use(f"{access_key_id}\n{nonce}"):
            raise errors.signature_nonce_used()


def _first(values: list[str]) -> str | None:
    return values[0] if values else None
