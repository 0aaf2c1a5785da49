"""The emulator's notion of "now" for key state: wall-clock time plus an offset that tests can advance.

Emulator choice: only key state (creation dates, deletion windows, rotation) reads this clock. Signature
checks use the real wall clock, because clients sign with theirs; advancing the emulator clock must not make
requests expire.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """Thread-safe wall clock with an adjustable offset (seconds)."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = offset_seconds
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the emulated KMS sees them."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset += seconds

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset


def iso(ts: float) -> str:
    """KMS date format: UTC `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Inverse of iso(); raises ValueError on anything else."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
