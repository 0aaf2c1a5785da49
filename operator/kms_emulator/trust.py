"""RAM role trust policies: who may assume a role (pure).

A trust policy is a RAM policy document whose statements allow (or deny) `sts:AssumeRole` to principals:

    {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"RAM": ["acs:ram::<account>:root"]},                  # any RAM user/role of <account>
        "Condition": {"StringEquals": {"sts:ExternalId": "team-a"}}}]}
    {"Version": "1", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"Federated": ["acs:ram::<account>:oidc-provider/<name>"]},
        "Condition": {"StringEquals": {"oidc:iss": "...", "oidc:aud": "sts.aliyuncs.com",
                                       "oidc:sub": "system:serviceaccount:<ns>:<sa>"}}}]}

`RAM` principals: `acs:ram::<account>:root` (or the bare account ID) means every RAM user and role session
of that account; `acs:ram::<account>:user/<name>` one user; `acs:ram::<account>:role/<name>` sessions of one
role (role chaining). Condition operators: StringEquals, StringNotEquals, StringLike (`*`, `?`) and
StringNotLike; a key absent from the request fails every operator but the Not ones. A matching Deny wins
over any Allow.

Emulator choices: anything the evaluator does not understand (another operator, a malformed statement) makes
the document invalid at load time, so a test never passes because a rule was silently ignored; there are no
identity-based policies, so a trust policy that allows a principal is all AssumeRole needs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPERATORS = ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike")
CONDITION_KEYS = ("sts:ExternalId", "oidc:iss", "oidc:aud", "oidc:sub")
ASSUME_ACTIONS = ("sts:AssumeRole", "sts:*", "*")


class PolicyError(ValueError):
    """A trust policy the emulator cannot evaluate exactly."""


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, str]) -> bool:
        actual = context.get(self.key)
        if self.operator.startswith("StringNot"):
            return actual is None or not self._matches(actual)
        return actual is not None and self._matches(actual)

    def _matches(self, actual: str) -> bool:
        if self.operator.endswith("Like"):
            return any(fnmatch.fnmatchcase(actual, pattern) for pattern in self.values)
        return actual in self.values


@dataclass(frozen=True)
class Statement:
    allow: bool
    ram: tuple[str, ...] = ()
    federated: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class TrustPolicy:
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class Caller:
    """What a trust policy is asked about: a signed-in RAM principal, or an OIDC provider's token."""

    account_id: str = ""
    user_arn: str = ""  # acs:ram::<account>:user/<name>
    role_arn: str = ""  # for a role session: the role's ARN
    federated: str = ""  # the OIDC provider ARN


def allows(policy: TrustPolicy, caller: Caller, context: Mapping[str, str]) -> bool:
    """Whether `caller`, with these condition values, may assume the role."""
    allowed = False
    for statement in policy.statements:
        if not _principal_matches(statement, caller):
            continue
        if not all(condition.holds(context) for condition in statement.conditions):
            continue
        if not statement.allow:
            return False
        allowed = True
    return allowed


def _principal_matches(statement: Statement, caller: Caller) -> bool:
    if caller.federated:
        return caller.federated in statement.federated
    for entry in statement.ram:
        if entry in (caller.account_id, f"acs:ram::{caller.account_id}:root"):
            return True
        if caller.user_arn and entry == caller.user_arn:
            return True
        if caller.role_arn and entry.lower() == caller.role_arn.lower():
            return True
    return False


# -- parsing -------------------------------------------------------------------------------------------------


def parse(document: Any) -> TrustPolicy:
    """A trust policy from its JSON document (a dict); raises PolicyError for anything not understood."""
    if not isinstance(document, Mapping):
        raise PolicyError("a JSON object with Version and Statement is required")
    if str(document.get("Version")) != "1":
        raise PolicyError('Version must be "1"')
    raw = document.get("Statement")
    if not isinstance(raw, list) or not raw:
        raise PolicyError("Statement must be a non-empty list")
    return TrustPolicy(tuple(_statement(s, i) for i, s in enumerate(raw)))


def _statement(raw: Any, index: int) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: an object is required")
    unknown = sorted(set(raw) - {"Effect", "Action", "Principal", "Condition"})
    if unknown:
        raise PolicyError(f"{where}: unknown field {unknown[0]}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}.Effect: Allow or Deny")
    actions = _strings(raw.get("Action"), f"{where}.Action")
    if not any(action in ASSUME_ACTIONS for action in actions):
        raise PolicyError(f"{where}.Action: must include sts:AssumeRole")
    principal = raw.get("Principal")
    if not isinstance(principal, Mapping) or not principal:
        raise PolicyError(f"{where}.Principal: an object with RAM or Federated is required")
    unknown = sorted(set(principal) - {"RAM", "Federated", "Service"})
    if unknown:
        raise PolicyError(f"{where}.Principal: unknown principal type {unknown[0]}")
    ram = _strings(principal.get("RAM", []), f"{where}.Principal.RAM")
    for entry in ram:
        if not re.fullmatch(r"\d{16}|acs:ram::\d{16}:(root|user/[^/]+|role/[^/]+)", entry):
            raise PolicyError(f"{where}.Principal.RAM: {entry!r} is not an account, user or role ARN")
    federated = _strings(principal.get("Federated", []), f"{where}.Principal.Federated")
    conditions: list[Condition] = []
    raw_conditions = raw.get("Condition", {})
    if not isinstance(raw_conditions, Mapping):
        raise PolicyError(f"{where}.Condition: an object is required")
    for operator, pairs in raw_conditions.items():
        if operator not in OPERATORS:
            raise PolicyError(f"{where}.Condition: operator {operator} is not one of {', '.join(OPERATORS)}")
        if not isinstance(pairs, Mapping):
            raise PolicyError(f"{where}.Condition.{operator}: an object is required")
        for key, values in pairs.items():
            if key not in CONDITION_KEYS:
                raise PolicyError(f"{where}.Condition: key {key} is not one of {', '.join(CONDITION_KEYS)}")
            conditions.append(Condition(operator, key, _strings(values, f"{where}.Condition.{key}")))
    return Statement(effect == "Allow", ram, federated, tuple(conditions))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items: Sequence[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise PolicyError(f"{where}: a string or a list of strings is required")
    return tuple(items)
