"""Drift checks for every KmsKey from one heap of due times, kept inside a share of the KMS read quota.

kopf's timers are one asyncio task per object that wakes every few seconds to ask whether its key is due:
idle CPU grew with the number of keys (about 20 µs per key per second), and an interval was rounded up to
the tick (`30s` ran every 45 s). Here one task sleeps until the earliest due time, so a key is checked at
its interval to the millisecond and an idle operator costs nothing per key.

Each key's interval (the `resync-interval` annotation, else KMSKEY_RESYNC_SECONDS) is multiplied by a stable
per-key factor in 1 ± KMSKEY_RESYNC_JITTER (from the UID), so keys created together drift apart.

**The read budget.** Drift checks may use `share` of a quota's reads (KMSKEY_RESYNC_READ_SHARE of
KMSKEY_READ_QPS; a quota is an account's region, as KMS counts them); the rest is kept for creates and edits,
whose calls the rate limiter also serves first.
When the keys' intervals ask for more (10,000 keys × 2 reads every 10 minutes is 33 reads/s, over a budget
of 10/s), every interval of that quota is stretched by the same factor until they fit, and the operator
says so: the `kmskey_resync_interval_stretch` metric and one log line each time the factor changes. Reads
per check are measured (a running average of what checks really read: 2, or 3 with a policy). On top of
that, checks start no faster than the budget allows, so a crowd of overdue keys (after a restart, or a
pause) is spread out instead of spent at once.

The scheduler only decides *when*: `run(uid)` is given by the kopf layer's runtime, which reconciles and
then says when the key is next due (`schedule`). While this replica is paused (a kopf peer is active) the
scheduler holds nothing and starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from kmskey_operator import metrics

logger = logging.getLogger(__name__)

DEFAULT_READS_PER_CHECK = 2.0
READS_AVERAGE_WEIGHT = 0.05  # of each new check in the running average of reads per check
STRETCH_REPORT_CHANGE = 0.05  # a stretch factor that moved by 5% is reported again
MAX_CONCURRENT_CHECKS = 16
REPORT_SECONDS = 10.0  # the stretch is re-evaluated (metric, log line) at least this often


def jitter_factor(uid: str, jitter: float) -> float:
    """A stable factor in [1 - jitter, 1 + jitter] for this UID (the same in every replica and restart)."""
    spread = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return 1.0 + (spread * 2.0 - 1.0) * jitter


class _Quota:
    """What the budget of one quota (an account's region) needs: Σ 1/interval of its keys, reads per check."""

    __slots__ = ("checks_per_second", "keys", "next_start", "reads_per_check", "reported_stretch")

    def __init__(self) -> None:
        self.checks_per_second = 0.0
        self.keys = 0
        self.reads_per_check = DEFAULT_READS_PER_CHECK
        self.next_start = 0.0  # monotonic time the next check of this quota may start
        self.reported_stretch = 1.0


class ResyncScheduler:
    """The due time of every key's next drift check, and the one task that starts them."""

    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        *,
        jitter: float,
        read_budget: Callable[[str], float],
        concurrency: int = MAX_CONCURRENT_CHECKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`read_budget(quota)`: reads per second drift checks of that quota may use (0 = unlimited)."""
        self._run = run
        self._jitter = jitter
        self._read_budget = read_budget
        self._clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, tuple[float, int]] = {}  # uid -> its live heap entry
        self._keys: dict[str, tuple[float, str]] = {}  # uid -> (interval, quota)
        self._quotas: dict[str, _Quota] = {}
        self._sequence = itertools.count()
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self.active = True

    # --- what the runtime tells it

    def track(self, uid: str, interval: float, quota: str) -> None:
        """`uid`'s nominal interval (seconds) and the quota (account/region) its checks' reads come from."""
        previous = self._keys.get(uid)
        if previous == (interval, quota):
            return
        if previous is not None:
            self._untrack(uid, *previous)
        self._keys[uid] = (interval, quota)
        state = self._quotas.setdefault(quota, _Quota())
        state.keys += 1
        state.checks_per_second += 1.0 / interval
        metrics.set_resync_keys(len(self._keys))

    def schedule(self, uid: str, delay: float | None = None) -> None:
        """Check `uid` after `delay` seconds, or after its (stretched, jittered) interval by default."""
        if not self.active or uid not in self._keys:
            return
        seconds = self.interval(uid) if delay is None else max(0.0, delay)
        due = self._clock() + seconds
        entry = (due, next(self._sequence), uid)
        self._due[uid] = (due, entry[1])
        if not self._heap or due < self._heap[0][0]:
            self._changed.set()  # earlier than what the task sleeps for
        heapq.heappush(self._heap, entry)
        if len(self._heap) > 2 * len(self._due) + 64:  # entries replaced before they came due
            self._heap = [(d, s, u) for u, (d, s) in self._due.items()]
            heapq.heapify(self._heap)

    def is_scheduled(self, uid: str) -> bool:
        return uid in self._due

    def forget(self, uid: str) -> None:
        self._due.pop(uid, None)
        previous = self._keys.pop(uid, None)
        if previous is not None:
            self._untrack(uid, *previous)
            metrics.set_resync_keys(len(self._keys))

    def pause(self) -> None:
        """This replica stopped being the active one: hold nothing, start nothing."""
        self.active = False
        self._heap.clear()
        self._due.clear()
        self._keys.clear()
        self._quotas.clear()
        metrics.set_resync_keys(0)
        self._changed.set()

    def resume(self) -> None:
        self.active = True
        self._changed.set()

    def observe_reads(self, quota: str, reads: int) -> None:
        """A drift check of `quota` made `reads` KMS reads: the running average the budget plans with."""
        state = self._quotas.get(quota)
        if state is not None:
            state.reads_per_check += READS_AVERAGE_WEIGHT * (reads - state.reads_per_check)

    # --- what it decides

    def stretch(self, quota: str) -> float:
        """How much every interval of `quota` is stretched so its checks fit the read budget (≥ 1)."""
        state = self._quotas.get(quota)
        budget = self._read_budget(quota)
        if state is None or budget <= 0:
            return 1.0
        return max(1.0, state.checks_per_second * state.reads_per_check / budget)

    def interval(self, uid: str) -> float:
        """Seconds from one check of `uid` to the next: nominal × stretch × the key's jitter factor."""
        nominal, quota = self._keys[uid]
        return nominal * self.stretch(quota) * jitter_factor(uid, self._jitter)

    # --- the task

    async def run_forever(self) -> None:
        """Start every check when it is due (and the budget allows), until cancelled."""
        try:
            while True:
                await self._sleep(self._next_wakeup())
                self._report_stretch()
                if self.active:
                    await self._start_due()
        finally:
            for task in list(self._running):
                task.cancel()

    def _next_wakeup(self) -> float | None:
        if not self.active:
            return None
        if not self._heap:
            return REPORT_SECONDS
        return min(REPORT_SECONDS, self._heap[0][0] - self._clock())

    async def _sleep(self, seconds: float | None) -> None:
        """Until `seconds` pass or something changed (a schedule() earlier than the head, a resume)."""
        if seconds is not None and seconds <= 0:
            return
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=seconds)
        finally:
            self._changed.clear()

    async def _start_due(self) -> None:
        while self.active and self._heap:
            now = self._clock()
            due, sequence, uid = self._heap[0]
            if due > now:
                return
            if self._due.get(uid) != (due, sequence):
                heapq.heappop(self._heap)  # replaced by a later schedule() or forgotten
                continue
            quota = self._keys[uid][1]
            state = self._quotas[quota]
            if state.next_start > now:
                # Over the budget's pace: everything waits until this quota may start its next check.
                await self._sleep(state.next_start - now)
                continue
            heapq.heappop(self._heap)
            del self._due[uid]
            budget = self._read_budget(quota)
            if budget > 0:
                state.next_start = max(now, state.next_start) + state.reads_per_check / budget
            metrics.observe_resync_start(now - due)
            await self._slots.acquire()
            task = asyncio.create_task(self._check(uid), name=f"resync {uid}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _check(self, uid: str) -> None:
        try:
            await self._run(uid)
        except Exception:
            logger.exception("drift check of %s failed", uid)
        finally:
            self._slots.release()
            if uid in self._keys and uid not in self._due:
                self.schedule(uid)  # the runtime did not say when: the usual interval

    def _report_stretch(self) -> None:
        highest = 1.0
        for quota, state in self._quotas.items():
            factor = self.stretch(quota)
            highest = max(highest, factor)
            if abs(factor - state.reported_stretch) <= STRETCH_REPORT_CHANGE * state.reported_stretch:
                continue
            budget = self._read_budget(quota)
            needed = state.checks_per_second * state.reads_per_check
            if factor > 1.0:
                logger.warning(
                    "drift checks of %d keys (quota %s, account/region) need %.1f KMS reads/s at their "
                    "intervals, over the %.1f reads/s they may use (KMSKEY_RESYNC_READ_SHARE of "
                    "KMSKEY_READ_QPS): every interval of that quota is stretched %.2fx (600 s becomes "
                    "%.0f s), so creates and edits keep the rest of the quota",
                    state.keys,
                    quota,
                    needed,
                    budget,
                    factor,
                    600 * factor,
                )
            else:
                logger.info(
                    "drift checks of quota %s fit the read budget again: intervals as configured", quota
                )
            state.reported_stretch = factor
        metrics.set_resync_stretch(highest)

    def _untrack(self, uid: str, interval: float, quota: str) -> None:
        state = self._quotas.get(quota)
        if state is None:
            return
        state.keys -= 1
        state.checks_per_second = max(0.0, state.checks_per_second - 1.0 / interval)
        if state.keys <= 0:
            del self._quotas[quota]
