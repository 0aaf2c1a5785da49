"""Credentials learned at run time (a provider config's Secret, a ServiceAccount token), for the log redactor.

A module of its own, without kopf or logging set-up, so that code resolving credentials (accounts/) can
report a value before any redactor exists; logs.RedactSecrets blanks every value reported here.
"""

from __future__ import annotations

from collections.abc import Callable

_REGISTERED: set[str] = set()
_LISTENERS: list[Callable[[str], None]] = []

MIN_LENGTH = 8  # shorter values would blank ordinary words


def register_secret(value: str) -> None:
    """No log line will show `value`, in any redactor made before or after."""
    if len(value) >= MIN_LENGTH and value not in _REGISTERED:
        _REGISTERED.add(value)
        for listener in _LISTENERS:
            listener(value)


def follow(listener: Callable[[str], None]) -> list[str]:
    """Call `listener` with each value registered from now on; returns those registered so far."""
    _LISTENERS.append(listener)
    return sorted(_REGISTERED)
