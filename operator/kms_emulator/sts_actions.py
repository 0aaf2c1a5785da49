"""One decoder per STS action: wire parameters -> an StsBackend call -> the success body.

The bodies have the shapes of STS 2015-04-01 (`Credentials`, `AssumedRoleUser`, `OIDCTokenInfo`, and the flat
GetCallerIdentity answer), which alibabacloud-credentials and the STS SDK models parse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .accounts import Principal
from .clock import iso
from .params import Params
from .sts import AssumedRole, StsBackend, invalid

Body = dict[str, Any]


@dataclass(frozen=True)
class StsAction:
    name: str
    handler: Callable[[StsBackend, Principal | None, Params], Body]
    signed: bool = True  # AssumeRoleWithOIDC is anonymous: the OIDC token is the proof


def _credentials(assumed: AssumedRole) -> Body:
    credential = assumed.credential
    assert credential.expires_at is not None
    return {
        "Credentials": {
            "AccessKeyId": credential.access_key_id,
            "AccessKeySecret": credential.access_key_secret,
            "SecurityToken": credential.security_token,
            "Expiration": iso(credential.expires_at),
        },
        "AssumedRoleUser": {"AssumedRoleId": assumed.assumed_role_id, "Arn": assumed.arn},
    }


def _duration(p: Params) -> int | None:
    text = p.get("DurationSeconds")
    if text is None or text == "":
        return None
    if not text.strip().isdigit():
        raise invalid("DurationSeconds", "The parameter DurationSeconds is not an integer.")
    return int(text)


def assume_role(backend: StsBackend, caller: Principal | None, p: Params) -> Body:
    assert caller is not None
    assumed = backend.assume_role(
        caller,
        role_arn=p.get("RoleArn") or "",
        role_session_name=p.get("RoleSessionName") or "",
        duration_seconds=_duration(p),
        external_id=p.get("ExternalId"),
        policy=p.get("Policy"),
    )
    return _credentials(assumed)


def assume_role_with_oidc(backend: StsBackend, _: Principal | None, p: Params) -> Body:
    result = backend.assume_role_with_oidc(
        oidc_provider_arn=p.get("OIDCProviderArn") or "",
        role_arn=p.get("RoleArn") or "",
        oidc_token=p.get("OIDCToken") or "",
        role_session_name=p.get("RoleSessionName"),
        duration_seconds=_duration(p),
        policy=p.get("Policy"),
    )
    claims = result.claims
    body = _credentials(result.assumed)
    body["OIDCTokenInfo"] = {
        "Subject": claims.subject,
        "Issuer": claims.issuer,
        "ClientIds": ",".join(claims.audiences),
        "IssuanceTime": iso(claims.issued_at),
        "ExpirationTime": iso(claims.expires_at),
    }
    return body


def get_caller_identity(backend: StsBackend, caller: Principal | None, _: Params) -> Body:
    assert caller is not None
    who = backend.get_caller_identity(caller)
    body: Body = {
        "IdentityType": who.identity_type,
        "AccountId": who.account_id,
        "PrincipalId": who.principal_id,
        "Arn": who.arn,
    }
    if who.user_id:
        body["UserId"] = who.user_id
    if who.role_id:
        body["RoleId"] = who.role_id
    return body


STS_ACTIONS: dict[str, StsAction] = {
    action.name: action
    for action in (
        StsAction("AssumeRole", assume_role),
        StsAction("AssumeRoleWithOIDC", assume_role_with_oidc, signed=False),
        StsAction("GetCallerIdentity", get_caller_identity),
    )
}
