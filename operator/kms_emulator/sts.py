"""STS state and rules (API 2015-04-01): one method per action, like backend.py is for KMS.

AssumeRole and AssumeRoleWithOIDC issue STS triples acting as a session of a RAM role, in the role's account;
GetCallerIdentity says who signed. The rules are RAM's: the trust policy of the role decides who may assume it
(trust.py), root-account keys may not assume roles, session names and durations have bounds, and OIDC tokens
must be signed by a registered provider for one of its client IDs (oidc.py). Errors carry STS's codes
(api-sts-2015-04-01-errorcodes).

Emulator choices: no identity-based RAM policies (the trust policy is the only check); `Policy` (a session
policy) is accepted and checked to be a JSON object, but does not narrow what the session may do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from . import accounts, oidc, trust
from .accounts import ASSUMED_ROLE_USER, Directory, Principal
from .credentials import Credential, CredentialStore
from .errors import KmsError

API_VERSION = "2015-04-01"
HOST_ID = "sts.aliyuncs.com"
MIN_DURATION_SECONDS = 900
SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9=,.@:/_-]{2,1224}$")
OIDC_TOKEN_LENGTH = (4, 20000)


@dataclass(frozen=True)
class AssumedRole:
    """What AssumeRole / AssumeRoleWithOIDC answer: the triple and who it acts as."""

    credential: Credential
    assumed_role_id: str  # <role id>:<session name>
    arn: str  # acs:ram::<account>:role/<role>/<session name>, as STS returns it


@dataclass(frozen=True)
class OidcAssumedRole:
    assumed: AssumedRole
    claims: oidc.Claims


def missing(name: str) -> KmsError:
    return KmsError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
        400,
    )


def invalid(name: str, message: str) -> KmsError:
    return KmsError(f"InvalidParameter.{name}", message, 400)


def no_permission(
    message: str = "You are not authorized to do this action. You should be authorized by RAM.",
) -> KmsError:
    return KmsError("NoPermission", message, 403)


class StsBackend:
    def __init__(self, directory: Directory, credentials: CredentialStore) -> None:
        self.directory = directory
        self.credentials = credentials

    def assume_role(
        self,
        caller: Principal,
        *,
        role_arn: str,
        role_session_name: str,
        duration_seconds: int | None = None,
        external_id: str | None = None,
        policy: str | None = None,
    ) -> AssumedRole:
        """https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-assumerole"""
        if caller.identity_type == accounts.ACCOUNT:
            raise no_permission("Roles may not be assumed by root accounts.")
        account_id, role = self._role(role_arn)
        self._check_session_name(role_session_name)
        if external_id is not None and not EXTERNAL_ID.match(external_id):
            raise invalid("ExternalId", "The parameter ExternalId is wrongly formed.")
        duration = self._duration(duration_seconds, role)
        _check_policy(policy)
        who = trust.Caller(
            account_id=caller.account_id,
            user_arn=caller.arn if caller.identity_type == accounts.RAM_USER else "",
            role_arn=caller.role_arn,
        )
        context = {"sts:ExternalId": external_id} if external_id else {}
        if not trust.allows(role.trust_policy, who, context):
            raise no_permission()
        return self._issue(account_id, role, role_session_name, duration)

    def assume_role_with_oidc(
        self,
        *,
        oidc_provider_arn: str,
        role_arn: str,
        oidc_token: str,
        role_session_name: str | None = None,
        duration_seconds: int | None = None,
        policy: str | None = None,
    ) -> OidcAssumedRole:
        """https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-assumerolewithoidc

        Anonymous: the token is the proof of identity, so the request carries no signature.
        """
        low, high = OIDC_TOKEN_LENGTH
        if not oidc_token:
            raise missing("OIDCToken")
        if not low <= len(oidc_token) <= high:
            raise invalid("OIDCToken", f"The OIDC token must be {low} to {high} characters long.")
        found = self.directory.oidc_provider(oidc_provider_arn)
        if found is None:
            raise KmsError("AuthenticationFail.NoPermission", "No such OIDC Provider registered.", 401)
        provider_account, provider = found
        claims = oidc.verify(oidc_token, provider)
        account_id, role = self._role(role_arn)
        session = role_session_name or f"oidc-{accounts.stable_id(claims.subject)[:8]}"
        self._check_session_name(session)
        duration = self._duration(duration_seconds, role)
        _check_policy(policy)
        context = {"oidc:iss": claims.issuer, "oidc:sub": claims.subject}
        federated = accounts.oidc_provider_arn(provider_account, provider.name)
        allowed = account_id == provider_account and any(
            trust.allows(role.trust_policy, trust.Caller(federated=federated), {**context, "oidc:aud": aud})
            for aud in claims.audiences
        )
        if not allowed:
            raise KmsError("AuthenticationFail.NoPermission", "There is no permission", 401)
        return OidcAssumedRole(self._issue(account_id, role, session, duration), claims)

    def get_caller_identity(self, caller: Principal) -> Principal:
        """https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-getcalleridentity"""
        return caller

    # -- helpers --------------------------------------------------------------------------------------------

    def _role(self, role_arn: str) -> tuple[str, accounts.RamRole]:
        if not role_arn:
            raise missing("RoleArn")
        if not re.fullmatch(r"acs:ram::\d+:role/[^/]+", role_arn.strip(), re.IGNORECASE):
            raise invalid("RoleArn", "The parameter RoleArn is wrongly formed.")
        found = self.directory.role(role_arn)
        if found is None:
            raise KmsError("EntityNotExist.Role", f"The role not exists: {role_arn}.", 404)
        return found

    @staticmethod
    def _check_session_name(name: str) -> None:
        if not name:
            raise missing("RoleSessionName")
        if not SESSION_NAME.match(name):
            raise invalid("RoleSessionName", "The parameter RoleSessionName is wrongly formed.")

    @staticmethod
    def _duration(requested: int | None, role: accounts.RamRole) -> int:
        duration = 3600 if requested is None else requested
        if not MIN_DURATION_SECONDS <= duration <= role.max_session_duration:
            raise invalid(
                "DurationSeconds",
                f"The Min/Max value of DurationSeconds is {MIN_DURATION_SECONDS}/"
                f"{role.max_session_duration}.",
            )
        return duration

    def _issue(self, account_id: str, role: accounts.RamRole, session: str, duration: int) -> AssumedRole:
        role_id = accounts.stable_id(account_id, "role", role.name.lower())
        role_arn = accounts.role_arn(account_id, role.name)
        principal = Principal(
            account_id=account_id,
            identity_type=ASSUMED_ROLE_USER,
            arn=f"acs:ram::{account_id}:assumed-role/{role.name.lower()}/{session}",
            principal_id=f"{role_id}:{session}",
            role_id=role_id,
            role_arn=role_arn,
            session_name=session,
        )
        credential = self.credentials.issue_sts(duration, principal)
        return AssumedRole(credential, f"{role_id}:{session}", f"{role_arn}/{session}")


def _check_policy(policy: str | None) -> None:
    if policy is None:
        return
    try:
        document = json.loads(policy)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise invalid("PolicyGrammar", "The parameter Policy has not passed grammar check.")
