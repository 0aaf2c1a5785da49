"""Client-side token buckets shared by every resource, keeping the operator under KMS's quotas.

KMS's quotas are per account and region (CreateKey 10/s, reads 20/s, writes 10/s by default). All
KmsKey resources share them, so one limiter per (region, class) is shared by every reconcile. Waiting
here is cheaper than being throttled and retried.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable


class CallClass(enum.StrEnum):
    CREATE = "create"
    READ = "read"
    WRITE = "write"


def call_class(action: str) -> CallClass:
    """KMS's quota classes: CreateKey; Describe*/List*/Get* reads; everything else writes."""
    if action == "CreateKey":
        return CallClass.CREATE
    if action.startswith(("Describe", "List", "Get")):
        return CallClass.READ
    return CallClass.WRITE


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `rate <= 0` means unlimited."""

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.waiting = 0  # calls inside acquire() now: the queue a burst of reconciles builds

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take one token, sleeping until there is one. Returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        waited = 0.0
        self.waiting += 1
        try:
            async with self._lock:  # FIFO: waiters are served in arrival order
                self._refill()
                while self._tokens < 1.0:
                    delay = (1.0 - self._tokens) / self.rate
                    await asyncio.sleep(delay)
                    waited += delay
                    self._refill()
                self._tokens -= 1.0
        finally:
            self.waiting -= 1
        return waited


class RateLimiter:
    """One bucket per (region, call class)."""

    def __init__(self, create_qps: float, read_qps: float, write_qps: float) -> None:
        self._rates = {CallClass.CREATE: create_qps, CallClass.READ: read_qps, CallClass.WRITE: write_qps}
        self._buckets: dict[tuple[str, CallClass], TokenBucket] = {}

    @property
    def waiting(self) -> int:
        """KMS calls queued on any bucket now (0 when the operator keeps up with its work)."""
        return sum(bucket.waiting for bucket in self._buckets.values())

    async def acquire(self, region: str, action: str) -> float:
        kind = call_class(action)
        bucket = self._buckets.get((region, kind))
        if bucket is None:
            bucket = self._buckets[(region, kind)] = TokenBucket(self._rates[kind])
        return await bucket.acquire()
