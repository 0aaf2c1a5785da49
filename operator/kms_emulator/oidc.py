"""OIDC tokens (JWTs) as STS's AssumeRoleWithOIDC checks them: signature, issuer, audience, expiry.

The tokens are the ones a Kubernetes API server issues to ServiceAccounts (RS256, `iss` the cluster's
service-account issuer, `sub` `system:serviceaccount:<namespace>:<name>`, `aud` the requested audience). The
error codes and messages are STS's (api-sts-2015-04-01-errorcodes).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .accounts import OidcProvider
from .errors import KmsError


@dataclass(frozen=True)
class Claims:
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    issued_at: float
    expires_at: float


def _invalid(message: str) -> KmsError:
    return KmsError("AuthenticationFail.OIDCToken.Invalid", message, 401)


def _segment(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("Cannot decode base64 encoded response(format invalided).") from None


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise _invalid("The Jwt content is invalid that cannot be recognized.") from None
    if not isinstance(value, dict):
        raise _invalid("The Jwt content is invalid that cannot be recognized.")
    return value


def verify(token: str, provider: OidcProvider, now: float | None = None) -> Claims:
    """The token's claims if `provider` issued it, for one of its client IDs, and it is still valid."""
    if not token:
        raise _invalid("The OIDCToken can not empty.")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise _invalid("The number of Jwt field should be divided into 3 parts with '.' .")
    header, payload, signature = (_segment(p) for p in parts)
    head = _json(header)
    if head.get("alg") != "RS256":
        raise _invalid(f"The algorithm {head.get('alg')} that be specified in Jwt header is unknown.")
    signed = f"{parts[0]}.{parts[1]}".encode()
    if not any(_signature_ok(pem, signed, signature) for pem in provider.public_keys):
        raise KmsError(
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: invalid signature.",
            401,
        )
    claims = _json(payload)
    issuer = str(claims.get("iss") or "")
    if issuer != provider.issuer_url:
        raise KmsError(
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
            f"Issuer not match: the token is from {issuer!r}, the provider trusts {provider.issuer_url!r}.",
            401,
        )
    aud = claims.get("aud")
    audiences = tuple(aud) if isinstance(aud, list) else (str(aud),) if aud else ()
    if not set(audiences) & set(provider.client_ids):
        raise KmsError("AuthenticationFail.OIDCToken.AudienceNotMatch", "Invalid audience.", 401)
    now = time.time() if now is None else now
    try:
        expires_at = float(claims["exp"])
        issued_at = float(claims.get("iat", 0))
        not_before = float(claims.get("nbf", 0))
    except (KeyError, TypeError, ValueError):
        raise _invalid("The Jwt content is invalid that cannot be recognized.") from None
    if expires_at <= now:
        raise KmsError("AuthenticationFail.OIDCToken.Expired", "This JsonWebToken is expired.", 401)
    if not_before > now + 60:  # a minute of clock skew, as issuers allow
        raise _invalid("The Jwt is not valid yet (nbf).")
    return Claims(issuer, str(claims.get("sub") or ""), audiences, issued_at, expires_at)


def _signature_ok(pem: str, signed: bytes, signature: bytes) -> bool:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign(private_key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str = "emulator") -> str:
    """An RS256 JWT with `claims`: what tests use to stand in for an identity provider."""

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = encode(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    payload = encode(json.dumps(claims).encode())
    signature = private_key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{encode(signature)}"
