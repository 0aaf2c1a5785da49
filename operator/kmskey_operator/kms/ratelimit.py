"""Client-side token buckets shared by every resource, keeping the operator under KMS's quotas.

KMS's quotas are per account and region (CreateKey 10/s, reads 20/s, writes 10/s by default). All
KmsKey resources share them, so one limiter per (region, class) is shared by every reconcile. Waiting
here is cheaper than being throttled and retried.

Waiting calls are served by reconcile, not by arrival: each reconcile runs inside a `CallScope` (set by
the kopf layer, read here through a context variable, so nothing in between knows about it), and a bucket
hands its next token to the waiting call whose scope has the highest priority and, within a priority, began
first. So when 50 keys are edited at once the first edit's reads and writes all go before the second edit's,
and edits finish one after another instead of all together at the end; and background work (drift checks)
never takes a token while a create or an edit waits for one. A call outside any scope counts as a
foreground reconcile that began when the call was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator


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


class Priority(enum.IntEnum):
    """Lower goes first: creates, edits and deletions before drift checks."""

    FOREGROUND = 0
    BACKGROUND = 1


_sequence = itertools.count()


@dataclasses.dataclass
class CallScope:
    """The KMS calls of one reconcile: their place in every bucket's queue, and how many were made."""

    priority: Priority = Priority.FOREGROUND
    began: float = dataclasses.field(default_factory=time.monotonic)
    calls: Counter[CallClass] = dataclasses.field(default_factory=Counter)
    _order: int = dataclasses.field(default_factory=lambda: next(_sequence))

    @property
    def rank(self) -> tuple[int, float, int]:
        return (int(self.priority), self.began, self._order)


_current: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("kms_call_scope", default=None)


@contextlib.contextmanager
def scope(priority: Priority = Priority.FOREGROUND) -> Iterator[CallScope]:
    """Run the KMS calls made inside (in this task and the tasks it starts) as one reconcile's calls."""
    entered = CallScope(priority=priority)
    token = _current.set(entered)
    try:
        yield entered
    finally:
        _current.reset(token)


def current_scope() -> CallScope | None:
    return _current.get()


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `rate <= 0` means unlimited.

    Waiters are kept in a heap ordered by `rank` (lowest first); one serving task hands out tokens as
    they accrue, so a waiter that arrives later with a better rank is served before earlier ones.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._waiters: list[tuple[tuple[int, float, int], int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._server: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Calls inside acquire() now: the queue a burst of reconciles builds."""
        return sum(1 for _, _, future in self._waiters if not future.done())

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, rank: tuple[int, float, int] | None = None) -> float:
        """Take one token, waiting until it is this caller's turn. Returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        if not self._waiters and self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        began = self._clock()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank or (0, began, 0), next(self._arrivals), future))
        loop = asyncio.get_running_loop()
        if self._server is None or self._server.done() or self._server.get_loop() is not loop:
            self._server = loop.create_task(self._serve(), name="kms rate limiter")
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens += 1.0  # granted just as the caller gave up: not spent
            future.cancel()
            raise
        return self._clock() - began

    async def _serve(self) -> None:
        """Hand out tokens to the best-ranked waiters until none is left."""
        while self._waiters:
            if self._waiters[0][2].done():  # its caller was cancelled
                heapq.heappop(self._waiters)
                continue
            self._refill()
            if self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
                continue
            _, _, future = heapq.heappop(self._waiters)
            self._tokens -= 1.0
            future.set_result(None)


class RateLimiter:
    """One bucket per (region, call class)."""

    def __init__(self, create_qps: float, read_qps: float, write_qps: float) -> None:
        self._rates = {CallClass.CREATE: create_qps, CallClass.READ: read_qps, CallClass.WRITE: write_qps}
        self._buckets: dict[tuple[str, CallClass], TokenBucket] = {}

    @property
    def waiting(self) -> int:
        """KMS calls queued on any bucket now (0 when the operator keeps up with its work)."""
        return sum(bucket.waiting for bucket in self._buckets.values())

    def rate(self, kind: CallClass) -> float:
        """The configured calls per second of a class in each region (0 = unlimited)."""
        return self._rates[kind]

    async def acquire(self, region: str, action: str) -> float:
        kind = call_class(action)
        current = _current.get()
        if current is not None:
            current.calls[kind] += 1
        bucket = self._buckets.get((region, kind))
        if bucket is None:
            bucket = self._buckets[(region, kind)] = TokenBucket(self._rates[kind])
        return await bucket.acquire(current.rank if current is not None else None)
