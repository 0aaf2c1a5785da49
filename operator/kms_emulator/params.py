"""Decoding KMS request parameters from their wire strings (reference §1.4).

The SDK sends every value as a string: booleans as `True`/`False` (Python) or `true`/`false` (Go, Java),
lists flattened as `Name.1, Name.2`, lists of objects as `Name.1.Field`, and some values as JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from . import errors

_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


class Params:
    """Typed read access to one request's merged parameters; bad values raise KmsError."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def get(self, name: str, *, required: bool = False) -> str | None:
        value = self.values.get(name)
        if required and not value:
            raise errors.missing_parameter(name)
        return value

    def required(self, name: str) -> str:
        value = self.values.get(name)
        if not value:
            raise errors.missing_parameter(name)
        return value

    def flag(self, name: str, *, required: bool = False, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise errors.missing_parameter(name)
            return default
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise errors.invalid_parameter(name, "Expected true or false.")

    def integer(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise errors.missing_parameter(name)
            return default
        if not _INTEGER.match(value.strip()):
            raise errors.invalid_parameter(name, "Expected an integer.")
        return int(value)

    def indexed(self, name: str) -> list[str]:
        """`Name.1`, `Name.2`, ... in index order (gaps allowed, as the flattening never makes them)."""
        found: dict[int, str] = {}
        prefix = name + "."
        for key, value in self.values.items():
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                found[int(key[len(prefix) :])] = value
        return [found[i] for i in sorted(found)]

    def indexed_pairs(self, name: str, first: str, second: str) -> list[tuple[str, str]]:
        """`Name.N.<first>` / `Name.N.<second>` in index order; a missing second field reads as ""."""
        found: dict[int, dict[str, str]] = {}
        prefix = name + "."
        for key, value in self.values.items():
            if not key.startswith(prefix):
                continue
            index, _, field = key[len(prefix) :].partition(".")
            if index.isdigit() and field in (first, second):
                found.setdefault(int(index), {})[field] = value
        pairs: list[tuple[str, str]] = []
        for position in sorted(found):
            entry = found[position]
            if first not in entry:
                raise errors.missing_parameter(f"{name}.{position}.{first}")
            pairs.append((entry[first], entry.get(second, "")))
        return pairs
