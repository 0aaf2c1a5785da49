"""Kubernetes timestamps (RFC 3339, UTC, whole seconds): read from objects, written into status."""

from __future__ import annotations

import datetime
from typing import Any


def parse(text: Any) -> datetime.datetime | None:
    """A timezone-aware datetime for an RFC 3339 stamp ("...Z" included); None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def epoch(text: Any) -> float | None:
    """Seconds since the epoch for an RFC 3339 stamp; None when `text` is not one."""
    parsed = parse(text)
    return None if parsed is None else parsed.timestamp()


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
