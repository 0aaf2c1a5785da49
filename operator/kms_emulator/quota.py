"""QPS quotas: one token bucket per account, region and action class (reference §5, KMS Limits page).

Defaults follow the Limits page: CreateKey 10 QPS, reads 20 QPS, writes 10 QPS. Each bucket holds one
second's worth of tokens, so a burst of N calls passes and call N+1 in the same second is throttled.

Over quota, the answer takes one of two documented shapes (ThrottleStyle):
Emulator choice: the default is
- `rejected-429`: `Rejected.Throttling`, HTTP 429, with `x-acs-retry-after` (ms), as on the Limits
  page; the SDK then raises ThrottlingException with `retry_after`.
- `throttling-400`: `Throttling`, HTTP 400, no header, as on the per-API pages; the SDK raises
  ClientException.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

ThrottleStyle = Literal["rejected-429", "throttling-400"]
THROTTLE_STYLES: tuple[ThrottleStyle, ...] = ("rejected-429", "throttling-400")


@dataclass(frozen=True)
class QuotaSettings:
    enabled: bool = True
    create_qps: float = 10.0
    read_qps: float = 20.0
    write_qps: float = 10.0
    style: ThrottleStyle = "rejected-429"

    def qps(self, quota_class: str) -> float:
        return {"create": self.create_qps, "read": self.read_qps, "write": self.write_qps}[quota_class]


class TokenBucket:
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Quotas:
    """Thread-safe; settings can change at runtime (admin endpoint), which refills every bucket."""

    def __init__(self, settings: QuotaSettings | None = None) -> None:
        self._settings = settings or QuotaSettings()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> QuotaSettings:
        return self._settings

    def configure(self, settings: QuotaSettings) -> None:
        with self._lock:
            self._settings = settings
            self._buckets.clear()

    def acquire(self, account_id: str, region_id: str, quota_class: str) -> int:
        """0 if the call may proceed, else the suggested wait in milliseconds (at least 1)."""
        settings = self._settings
        if not settings.enabled:
            return 0
        now = time.monotonic()
        with self._lock:
            key = (account_id, region_id, quota_class)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(settings.qps(quota_class), now)
            wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait * 1000))
