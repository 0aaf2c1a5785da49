"""The accounts the emulator knows: their RAM users and access keys, RAM roles, and OIDC identity providers.

This is the emulator's RAM: static configuration, read once (from `EmulatorConfig` or an accounts file), and
asked who a principal is. Keys, quotas and the call log are kept per account elsewhere; here only identity
lives. The JSON document of `--accounts-file` (camelCase, like RAM's own API):

    {"accounts": [{
        "accountId": "1111111111111111",
        "accessKeys": [{"id": "...", "secret": "..."}],                  # the account's own (root) keys
        "users": [{"name": "ops", "accessKeys": [{"id": "...", "secret": "..."}]}],
        "roles": [{"name": "kms-admin", "maxSessionDuration": 3600,
                   "trustPolicy": {"Version": "1", "Statement": [...]}}],  # a RAM trust policy document
        "oidcProviders": [{"name": "ack-rrsa", "issuerUrl": "https://...", "clientIds": ["sts.aliyuncs.com"],
                           "publicKeys": ["-----BEGIN PUBLIC KEY-----..."]}]
    }]}

Emulator choices: user and role IDs are derived from the account and the name (stable across restarts);
ARNs follow RAM: `acs:ram::<account>:root`, `:user/<name>`, `:role/<name>` (role names are case-insensitive
in ARNs, as RAM's are), `:oidc-provider/<name>`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import trust

ACCOUNT_ID = re.compile(r"^\d{16}$")
DEFAULT_MAX_SESSION_DURATION = 3600
# RAM allows a role's maximum session duration from 1 to 12 hours.
MAX_SESSION_DURATION_RANGE = (3600, 43200)


class AccountsError(ValueError):
    """The accounts configuration is malformed; the message names the entry."""


# Principal kinds, as GetCallerIdentity's IdentityType names them.
ACCOUNT = "Account"
RAM_USER = "RAMUser"
ASSUMED_ROLE_USER = "AssumedRoleUser"


@dataclass(frozen=True)
class Principal:
    """Who signed a request: the account's root, one of its RAM users, or a session of one of its roles."""

    account_id: str
    identity_type: str
    arn: str
    principal_id: str
    user_id: str = ""
    role_id: str = ""
    # For AssumedRoleUser: the role's ARN (what a trust policy names) and the session name.
    role_arn: str = ""
    session_name: str = ""

    @classmethod
    def root(cls, account_id: str) -> Principal:
        return cls(account_id, ACCOUNT, root_arn(account_id), account_id, user_id=account_id)

    def to_dict(self) -> dict[str, str]:
        return {
            "account_id": self.account_id,
            "identity_type": self.identity_type,
            "arn": self.arn,
            "principal_id": self.principal_id,
            "user_id": self.user_id,
            "role_id": self.role_id,
            "role_arn": self.role_arn,
            "session_name": self.session_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Principal:
        return cls(**{k: str(data.get(k) or "") for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AccessKey:
    id: str
    secret: str


@dataclass(frozen=True)
class RamUser:
    name: str
    access_keys: tuple[AccessKey, ...] = ()


@dataclass(frozen=True)
class RamRole:
    name: str
    trust_policy: trust.TrustPolicy
    max_session_duration: int = DEFAULT_MAX_SESSION_DURATION


@dataclass(frozen=True)
class OidcProvider:
    """An OIDC identity provider registered in RAM: tokens of `issuer_url`, signed by one of `public_keys`
    (PEM), for one of `client_ids` (the token's `aud`)."""

    name: str
    issuer_url: str
    client_ids: tuple[str, ...]
    public_keys: tuple[str, ...]


@dataclass(frozen=True)
class AccountSpec:
    account_id: str
    access_keys: tuple[AccessKey, ...] = ()
    users: tuple[RamUser, ...] = ()
    roles: tuple[RamRole, ...] = ()
    oidc_providers: tuple[OidcProvider, ...] = ()

    def merged(self, other: AccountSpec) -> AccountSpec:
        return AccountSpec(
            self.account_id,
            self.access_keys + other.access_keys,
            self.users + other.users,
            self.roles + other.roles,
            self.oidc_providers + other.oidc_providers,
        )


def root_arn(account_id: str) -> str:
    return f"acs:ram::{account_id}:root"


def user_arn(account_id: str, name: str) -> str:
    return f"acs:ram::{account_id}:user/{name}"


def role_arn(account_id: str, name: str) -> str:
    return f"acs:ram::{account_id}:role/{name.lower()}"


def oidc_provider_arn(account_id: str, name: str) -> str:
    return f"acs:ram::{account_id}:oidc-provider/{name}"


def stable_id(*parts: str) -> str:
    """A 16-digit ID derived from `parts`, as RAM's user and role IDs look."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return str(int(digest[:15], 16) % 10**16).rjust(16, "3")


@dataclass
class Directory:
    """Every account, and lookups by access key, role ARN and OIDC provider ARN."""

    default_account_id: str
    accounts: dict[str, AccountSpec] = field(default_factory=dict)

    @classmethod
    def build(cls, default_account_id: str, specs: Iterable[AccountSpec]) -> Directory:
        if not ACCOUNT_ID.match(default_account_id):
            raise AccountsError(f"account ID {default_account_id!r}: 16 digits expected")
        directory = cls(default_account_id, {default_account_id: AccountSpec(default_account_id)})
        for spec in specs:
            if not ACCOUNT_ID.match(spec.account_id):
                raise AccountsError(f"account ID {spec.account_id!r}: 16 digits expected")
            current = directory.accounts.get(spec.account_id)
            directory.accounts[spec.account_id] = current.merged(spec) if current else spec
        directory._check()
        return directory

    def _check(self) -> None:
        seen: dict[str, str] = {}
        for spec in self.accounts.values():
            owners = [(key, "root") for key in spec.access_keys]
            owners += [(key, f"user/{user.name}") for user in spec.users for key in user.access_keys]
            for key, owner in owners:
                where = f"{spec.account_id}:{owner}"
                if key.id in seen:
                    raise AccountsError(f"access key {key.id} is given twice ({seen[key.id]}, {where})")
                seen[key.id] = where
            for kind, names in (
                ("user", [u.name for u in spec.users]),
                ("role", [r.name.lower() for r in spec.roles]),
                ("OIDC provider", [p.name for p in spec.oidc_providers]),
            ):
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if duplicates:
                    raise AccountsError(f"account {spec.account_id}: {kind} {duplicates[0]} is given twice")

    def static_keys(self) -> list[tuple[AccessKey, Principal]]:
        """Every long-term access key with the principal it signs as."""
        found: list[tuple[AccessKey, Principal]] = []
        for spec in self.accounts.values():
            found += [(key, Principal.root(spec.account_id)) for key in spec.access_keys]
            for user in spec.users:
                user_id = stable_id(spec.account_id, "user", user.name)
                principal = Principal(
                    spec.account_id,
                    RAM_USER,
                    user_arn(spec.account_id, user.name),
                    user_id,
                    user_id=user_id,
                )
                found += [(key, principal) for key in user.access_keys]
        return found

    def role(self, arn: str) -> tuple[str, RamRole] | None:
        """(account ID, role) for a role ARN, or None."""
        match = re.fullmatch(r"acs:ram::(\d+):role/(.+)", arn.strip(), re.IGNORECASE)
        if match is None:
            return None
        spec = self.accounts.get(match.group(1))
        if spec is None:
            return None
        name = match.group(2).lower()
        role = next((r for r in spec.roles if r.name.lower() == name), None)
        return (spec.account_id, role) if role is not None else None

    def oidc_provider(self, arn: str) -> tuple[str, OidcProvider] | None:
        match = re.fullmatch(r"acs:ram::(\d+):oidc-provider/(.+)", arn.strip())
        if match is None:
            return None
        spec = self.accounts.get(match.group(1))
        if spec is None:
            return None
        provider = next((p for p in spec.oidc_providers if p.name == match.group(2)), None)
        return (spec.account_id, provider) if provider is not None else None


# -- reading the JSON document ------------------------------------------------------------------------------


def parse_document(document: Any) -> list[AccountSpec]:
    """The `{"accounts": [...]}` document (see the module docstring) as AccountSpecs."""
    if not isinstance(document, Mapping) or not isinstance(document.get("accounts"), list):
        raise AccountsError('expected a JSON object {"accounts": [...]}')
    return [_account(entry, f"accounts[{i}]") for i, entry in enumerate(document["accounts"])]


def read_accounts_file(path: str | Path) -> list[AccountSpec]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AccountsError(f"{path}: {error}") from None
    return parse_document(document)


def _account(entry: Any, where: str) -> AccountSpec:
    data = _object(entry, where, {"accountId", "accessKeys", "users", "roles", "oidcProviders"})
    account_id = _text(data, "accountId", where)
    return AccountSpec(
        account_id=account_id,
        access_keys=_keys(data.get("accessKeys"), f"{where}.accessKeys"),
        users=tuple(
            RamUser(
                name=_text(_object(u, f"{where}.users[{i}]", {"name", "accessKeys"}), "name", where),
                access_keys=_keys(u.get("accessKeys"), f"{where}.users[{i}].accessKeys"),
            )
            for i, u in enumerate(_list(data.get("users"), f"{where}.users"))
        ),
        roles=tuple(_role(r, f"{where}.roles[{i}]") for i, r in enumerate(_list(data.get("roles"), where))),
        oidc_providers=tuple(
            _oidc_provider(p, f"{where}.oidcProviders[{i}]")
            for i, p in enumerate(_list(data.get("oidcProviders"), where))
        ),
    )


def _role(entry: Any, where: str) -> RamRole:
    data = _object(entry, where, {"name", "trustPolicy", "maxSessionDuration"})
    duration = data.get("maxSessionDuration", DEFAULT_MAX_SESSION_DURATION)
    low, high = MAX_SESSION_DURATION_RANGE
    if isinstance(duration, bool) or not isinstance(duration, int) or not low <= duration <= high:
        raise AccountsError(f"{where}.maxSessionDuration: {low} to {high} seconds")
    try:
        policy = trust.parse(data.get("trustPolicy"))
    except trust.PolicyError as error:
        raise AccountsError(f"{where}.trustPolicy: {error}") from None
    return RamRole(_text(data, "name", where), policy, duration)


def _oidc_provider(entry: Any, where: str) -> OidcProvider:
    data = _object(entry, where, {"name", "issuerUrl", "clientIds", "publicKeys"})
    client_ids = _strings(data.get("clientIds"), f"{where}.clientIds")
    keys = _strings(data.get("publicKeys"), f"{where}.publicKeys")
    if not client_ids or not keys:
        raise AccountsError(f"{where}: clientIds and publicKeys need at least one entry each")
    return OidcProvider(_text(data, "name", where), _text(data, "issuerUrl", where), client_ids, keys)


def _keys(value: Any, where: str) -> tuple[AccessKey, ...]:
    keys = []
    for i, entry in enumerate(_list(value, where)):
        data = _object(entry, f"{where}[{i}]", {"id", "secret"})
        keys.append(AccessKey(_text(data, "id", where), _text(data, "secret", where)))
    return tuple(keys)


def _object(value: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AccountsError(f"{where}: expected an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise AccountsError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise AccountsError(f"{where}: expected a list")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(v, str) and v for v in items):
        raise AccountsError(f"{where}: expected a list of non-empty strings")
    return tuple(items)


def _text(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise AccountsError(f"{where}.{name}: a non-empty string is required")
    return value
