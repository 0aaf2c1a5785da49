"""The structure of a KMS key policy: what makes valid JSON a policy KMS can apply, each fault named by its
JSON path (`$.Statement[0].Effect`).

A KMS key policy is `{"Version": "1", "Statement": [...]}`; each statement has an `Effect` (Allow or Deny), a
`Principal` (`{"RAM": ["acs:ram::<account>:*"]}`), an `Action` and a `Resource` (a string or a list of
strings), and optionally a `Sid` (a string) and a `Condition` (an object). Other members are left to KMS to
judge: refusing what KMS might accept would be worse than letting KMS say no.
"""

from __future__ import annotations

import json
import math
from typing import Any

EFFECTS = ("Allow", "Deny")
_MISSING = object()
EXAMPLE_STATEMENT = (
    '{"Effect": "Allow", "Principal": {"RAM": ["acs:ram::<account>:*"]}, "Action": ["kms:*"], '
    '"Resource": ["*"]}'
)


class NotJson(ValueError):
    pass


def parse(text: str) -> Any:
    """The JSON value of `text`; NaN, Infinity and numbers too large for a double are not JSON (RFC 8259)."""

    def constant(name: str) -> Any:
        raise NotJson(f"{name} is not a JSON value")

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise NotJson(f"{literal} is too large for a JSON number")
        return value

    try:
        return json.loads(text, parse_constant=constant, parse_float=number)
    except NotJson:
        raise
    except ValueError as error:
        raise NotJson(str(error)) from None


def problems(document: Any) -> list[str]:
    """What is wrong with a parsed policy, each fault starting with its JSON path; empty when well-formed."""
    if not isinstance(document, dict):
        return [
            f'$ is {_kind(document)}; a policy is a JSON object such as {{"Version": "1", "Statement": []}}'
        ]
    found: list[str] = []
    if document.get("Version", _MISSING) != "1":
        found.append(
            f'$.Version is {_show(document.get("Version", _MISSING))}; a KMS policy needs "Version": "1"'
        )
    if "Statement" not in document:
        found.append(
            f"$.Statement is missing; list the policy's statements, for example [{EXAMPLE_STATEMENT}]"
        )
        return found
    statements = document["Statement"]
    if not isinstance(statements, list):
        found.append(
            f"$.Statement is {_show(statements)}; it must be a list of statements, "
            f"for example [{EXAMPLE_STATEMENT}]"
        )
        return found
    for index, statement in enumerate(statements):
        found += _statement_problems(f"$.Statement[{index}]", statement)
    return found


def _statement_problems(path: str, statement: Any) -> list[str]:
    if not isinstance(statement, dict):
        return [f"{path} is {_kind(statement)}; a statement is an object such as {EXAMPLE_STATEMENT}"]
    found: list[str] = []
    effect = statement.get("Effect", _MISSING)
    if effect not in EFFECTS:
        found.append(f'{path}.Effect is {_show(effect)}; use "Allow" or "Deny"')
    for member, example in (("Action", '["kms:*"]'), ("Resource", '["*"]')):
        value = statement.get(member, _MISSING)
        if not _strings(value):
            found.append(
                f"{path}.{member} is {_show(value)}; it must be a string or a list of strings, "
                f"for example {example}"
            )
    principal = statement.get("Principal", _MISSING)
    if not (
        principal == "*"
        or (isinstance(principal, dict) and principal and all(_strings(v) for v in principal.values()))
    ):
        found.append(
            f"{path}.Principal is {_show(principal)}; name who the statement applies to, for example "
            '{"RAM": ["acs:ram::<account>:*"]}'
        )
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        found.append(f"{path}.Sid is {_show(statement['Sid'])}; it must be a string")
    if "Condition" in statement and not isinstance(statement["Condition"], dict):
        found.append(f"{path}.Condition is {_show(statement['Condition'])}; it must be an object")
    return found


def _strings(value: Any) -> bool:
    """A non-empty string, or a non-empty list of non-empty strings."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"{_show(value)}, not an object"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
