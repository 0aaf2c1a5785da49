"""The emulator's STS through the unmodified alibabacloud-credentials library and the OpenAPI SDK.

AssumeRole (v1-signed GET, as RamRoleArnCredentialsProvider sends it), AssumeRoleWithOIDC (anonymous, the
OIDC token as proof) and GetCallerIdentity (ACS3, through the SDK's generic call_api). The library always
composes `https://` unless the endpoint carries its own scheme, so these tests hand it `http://127.0.0.1:PORT`
for the plain-HTTP emulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_credentials.provider import (
    OIDCRoleArnCredentialsProvider,
    RamRoleArnCredentialsProvider,
    StaticAKCredentialsProvider,
)
from alibabacloud_kms20160120 import models
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from darabonba.runtime import RuntimeOptions

from kms_emulator import oidc, trust
from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.emulator.conftest import make_client

HOME = "1111111111111111"  # where the operator's RAM user lives
TEAM = "2222222222222222"  # a team's account, reached by assuming a role in it
ISSUER = "https://oidc.example.test/cluster-1"
PROVIDER_ARN = f"acs:ram::{TEAM}:oidc-provider/cluster-1"
ROLE_ARN = f"acs:ram::{TEAM}:role/kms-operator"
OIDC_ROLE_ARN = f"acs:ram::{TEAM}:role/kms-rrsa"
EXTERNAL_ROLE_ARN = f"acs:ram::{TEAM}:role/kms-external"
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _allow(principal: dict[str, Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}
    if condition:
        statement["Condition"] = condition
    return {"Version": "1", "Statement": [statement]}


DOCUMENT = {
    "accounts": [
        {
            "accountId": HOME,
            "accessKeys": [{"id": "ak-home-root", "secret": "root-secret"}],
            "users": [
                {"name": "operator", "accessKeys": [{"id": "ak-operator", "secret": "operator-secret"}]},
                {"name": "intruder", "accessKeys": [{"id": "ak-intruder", "secret": "intruder-secret"}]},
            ],
        },
        {
            "accountId": TEAM,
            "roles": [
                {"name": "kms-operator", "trustPolicy": _allow({"RAM": [f"acs:ram::{HOME}:user/operator"]})},
                {
                    "name": "kms-external",
                    "trustPolicy": _allow(
                        {"RAM": [f"acs:ram::{HOME}:root"]}, {"StringEquals": {"sts:ExternalId": "team-a"}}
                    ),
                },
                {
                    "name": "kms-rrsa",
                    "trustPolicy": _allow(
                        {"Federated": [PROVIDER_ARN]},
                        {
                            "StringEquals": {
                                "oidc:iss": ISSUER,
                                "oidc:aud": "sts.aliyuncs.com",
                                "oidc:sub": "system:serviceaccount:team-a:kms",
                            }
                        },
                    ),
                },
            ],
            "oidcProviders": [
                {
                    "name": "cluster-1",
                    "issuerUrl": ISSUER,
                    "clientIds": ["sts.aliyuncs.com"],
                    "publicKeys": [_pem(SIGNING_KEY)],
                }
            ],
        },
    ]
}


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(accounts=parse_document(DOCUMENT)) as handle:
        yield handle


def sts_endpoint(emu: EmulatorHandle) -> str:
    return f"http://{emu.endpoint}"


def assume(emu: EmulatorHandle, key_id: str, secret: str, role_arn: str = ROLE_ARN, **kwargs: Any) -> Any:
    provider = RamRoleArnCredentialsProvider(
        credentials_provider=StaticAKCredentialsProvider(access_key_id=key_id, access_key_secret=secret),
        role_arn=role_arn,
        role_session_name=kwargs.pop("role_session_name", "kmskey-operator"),
        sts_endpoint=sts_endpoint(emu),
        **kwargs,
    )
    return provider.get_credentials()


def caller_identity(
    emu: EmulatorHandle, key_id: str, secret: str, token: str | None = None
) -> dict[str, Any]:
    client = OpenApiClient(
        Config(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token,
            endpoint=emu.endpoint,
            protocol="http",
        )
    )
    params = Params(
        action="GetCallerIdentity",
        version="2015-04-01",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    body: dict[str, Any] = client.call_api(params, OpenApiRequest(), RuntimeOptions())["body"]
    return body


def test_assume_role_gives_credentials_that_act_in_the_roles_account(emu: EmulatorHandle) -> None:
    credentials = assume(emu, "ak-operator", "operator-secret", duration_seconds=900)

    assert credentials.get_access_key_id().startswith("STS.")
    assert credentials.get_expiration() - time.time() == pytest.approx(900, abs=30)
    kms = make_client(
        emu,
        access_key_id=credentials.get_access_key_id(),
        access_key_secret=credentials.get_access_key_secret(),
        security_token=credentials.get_security_token(),
    )
    key = kms.create_key(models.CreateKeyRequest()).body.key_metadata
    assert key.arn.startswith(f"acs:kms:{emu.region_id}:{TEAM}:key/")
    assert key.key_id in emu.backend_for(TEAM).keys
    identity = caller_identity(
        emu,
        credentials.get_access_key_id(),
        credentials.get_access_key_secret(),
        credentials.get_security_token(),
    )
    assert identity["IdentityType"] == "AssumedRoleUser"
    assert identity["AccountId"] == TEAM
    assert identity["Arn"] == f"acs:ram::{TEAM}:assumed-role/kms-operator/kmskey-operator"


def test_get_caller_identity_names_a_ram_user_and_an_accounts_root(emu: EmulatorHandle) -> None:
    user = caller_identity(emu, "ak-operator", "operator-secret")
    root = caller_identity(emu, "ak-home-root", "root-secret")

    assert (user["IdentityType"], user["AccountId"], user["Arn"]) == (
        "RAMUser",
        HOME,
        f"acs:ram::{HOME}:user/operator",
    )
    assert (root["IdentityType"], root["AccountId"], root["Arn"]) == (
        "Account",
        HOME,
        f"acs:ram::{HOME}:root",
    )


@pytest.mark.parametrize(
    ("key_id", "secret", "role_arn", "kwargs", "code"),
    [
        ("ak-intruder", "intruder-secret", ROLE_ARN, {}, "NoPermission"),  # not in the trust policy
        ("ak-home-root", "root-secret", ROLE_ARN, {}, "NoPermission"),  # roots may not assume roles
        ("ak-operator", "operator-secret", f"acs:ram::{TEAM}:role/nobody", {}, "EntityNotExist.Role"),
        ("ak-operator", "operator-secret", ROLE_ARN, {"duration_seconds": 7200}, "DurationSeconds"),
        ("ak-operator", "operator-secret", ROLE_ARN, {"role_session_name": "a b"}, "RoleSessionName"),
        ("ak-operator", "operator-secret", EXTERNAL_ROLE_ARN, {}, "NoPermission"),  # ExternalId missing
        ("ak-operator", "operator-secret", EXTERNAL_ROLE_ARN, {"external_id": "team-b"}, "NoPermission"),
        ("ak-unknown", "whatever", ROLE_ARN, {}, "InvalidAccessKeyId.NotFound"),
        ("ak-operator", "wrong-secret", ROLE_ARN, {}, "SignatureDoesNotMatch"),
    ],
)
def test_assume_role_refuses_what_ram_would_refuse(
    emu: EmulatorHandle, key_id: str, secret: str, role_arn: str, kwargs: dict[str, Any], code: str
) -> None:
    emu.reset_sts_calls()
    with pytest.raises(CredentialException) as error:
        assume(emu, key_id, secret, role_arn, **kwargs)
    assert code in str(error.value)
    # Every refusal is a logged STS call, refused credentials included (tests count a client's retries).
    [logged] = emu.sts_calls()
    assert (logged.action, logged.access_key_id) == ("AssumeRole", key_id)
    assert logged.status >= 400
    assert logged.code is not None
    assert logged.code in str(error.value)


def test_assume_role_with_the_external_id_the_trust_policy_asks_for(emu: EmulatorHandle) -> None:
    credentials = assume(emu, "ak-intruder", "intruder-secret", EXTERNAL_ROLE_ARN, external_id="team-a")
    identity = caller_identity(
        emu,
        credentials.get_access_key_id(),
        credentials.get_access_key_secret(),
        credentials.get_security_token(),
    )
    assert identity["Arn"] == f"acs:ram::{TEAM}:assumed-role/kms-external/kmskey-operator"


def token(
    subject: str = "system:serviceaccount:team-a:kms",
    *,
    key: rsa.RSAPrivateKey = SIGNING_KEY,
    issuer: str = ISSUER,
    audience: str = "sts.aliyuncs.com",
    expires_in: float = 600,
) -> str:
    now = time.time()
    claims = {"iss": issuer, "sub": subject, "aud": [audience], "iat": now, "exp": now + expires_in}
    return oidc.sign(key, claims)


def assume_with_oidc(emu: EmulatorHandle, tmp_path: Path, jwt: str, provider_arn: str = PROVIDER_ARN) -> Any:
    token_file = tmp_path / "token"
    token_file.write_text(jwt)
    provider = OIDCRoleArnCredentialsProvider(
        role_arn=OIDC_ROLE_ARN,
        oidc_provider_arn=provider_arn,
        oidc_token_file_path=str(token_file),
        role_session_name="team-a",
        sts_endpoint=sts_endpoint(emu),
    )
    return provider.get_credentials()


def test_assume_role_with_oidc_for_the_trusted_service_account(emu: EmulatorHandle, tmp_path: Path) -> None:
    credentials = assume_with_oidc(emu, tmp_path, token())

    identity = caller_identity(
        emu,
        credentials.get_access_key_id(),
        credentials.get_access_key_secret(),
        credentials.get_security_token(),
    )
    assert identity["AccountId"] == TEAM
    assert identity["Arn"] == f"acs:ram::{TEAM}:assumed-role/kms-rrsa/team-a"
    logged = [r for r in emu.sts_calls() if r.action == "AssumeRoleWithOIDC" and r.status == 200]
    assert logged
    assert all("OIDCToken" not in r.params for r in emu.sts_calls())  # tokens are never logged
    assert "AssumeRoleWithOIDC" not in emu.call_counts()  # STS calls are not KMS calls


# Each token is minted when its test runs: minted at collection, the 600 s ones had expired by then in a
# full run (AuthenticationFail.OIDCToken.Expired instead of the refusal under test).
@pytest.mark.parametrize(
    ("mint", "provider_arn", "code"),
    [
        (lambda: token("system:serviceaccount:team-b:kms"), PROVIDER_ARN, "AuthenticationFail.NoPermission"),
        (
            lambda: token(audience="someone-else"),
            PROVIDER_ARN,
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        (lambda: token(expires_in=-5), PROVIDER_ARN, "AuthenticationFail.OIDCToken.Expired"),
        (lambda: token(key=OTHER_KEY), PROVIDER_ARN, "AuthenticationFail.OIDCToken.InvalidSignature"),
        (
            lambda: token(issuer="https://elsewhere"),
            PROVIDER_ARN,
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
        ),
        (lambda: "not-a-jwt", PROVIDER_ARN, "AuthenticationFail.OIDCToken.Invalid"),
        (lambda: token(), f"acs:ram::{TEAM}:oidc-provider/nope", "AuthenticationFail.NoPermission"),
    ],
)
def test_assume_role_with_oidc_refuses_other_subjects_and_bad_tokens(
    emu: EmulatorHandle, tmp_path: Path, mint: Callable[[], str], provider_arn: str, code: str
) -> None:
    with pytest.raises(CredentialException) as error:
        assume_with_oidc(emu, tmp_path, mint(), provider_arn)
    assert code in str(error.value)


def test_expired_sts_credentials_are_refused_by_kms(emu: EmulatorHandle) -> None:
    credentials = emu.emulator.credentials.issue_sts(0.5)
    kms = make_client(
        emu,
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
    )
    kms.list_keys(models.ListKeysRequest())
    time.sleep(0.6)
    with pytest.raises(ClientException) as error:
        kms.list_keys(models.ListKeysRequest())
    assert error.value.code == "InvalidAccessKeyId.NotFound"


def test_a_deny_statement_wins_and_string_like_matches_patterns() -> None:
    policy = trust.parse(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sts:AssumeRole"],
                    "Principal": {"Federated": [PROVIDER_ARN]},
                    "Condition": {"StringLike": {"oidc:sub": "system:serviceaccount:team-*:kms"}},
                },
                {
                    "Effect": "Deny",
                    "Action": "sts:AssumeRole",
                    "Principal": {"Federated": [PROVIDER_ARN]},
                    "Condition": {"StringEquals": {"oidc:sub": "system:serviceaccount:team-x:kms"}},
                },
            ],
        }
    )
    caller = trust.Caller(federated=PROVIDER_ARN)

    assert trust.allows(policy, caller, {"oidc:sub": "system:serviceaccount:team-a:kms"})
    assert not trust.allows(policy, caller, {"oidc:sub": "system:serviceaccount:team-x:kms"})
    assert not trust.allows(policy, caller, {"oidc:sub": "system:serviceaccount:ops:kms"})
    assert not trust.allows(policy, caller, {})
    assert not trust.allows(policy, trust.Caller(federated="acs:ram::1:oidc-provider/x"), {"oidc:sub": "x"})


def test_the_credentials_library_assumes_a_role_over_https_trusting_the_emulators_ca(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The library always speaks https to a bare host:port, and verifies it with the default CA paths (which
    # honour SSL_CERT_FILE) plus certifi: how an operator reaches an STS behind a private CA.
    with run_emulator(accounts=parse_document(DOCUMENT), tls=True) as tls_emu:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_emu.ca_file))
        provider = RamRoleArnCredentialsProvider(
            credentials_provider=StaticAKCredentialsProvider(
                access_key_id="ak-operator", access_key_secret="operator-secret"
            ),
            role_arn=ROLE_ARN,
            role_session_name="over-tls",
            sts_endpoint=tls_emu.endpoint,
        )
        credentials = provider.get_credentials()
        assert credentials.get_access_key_id().startswith("STS.")
        assert [r.account_id for r in tls_emu.sts_calls() if r.status == 200] == [TEAM]
