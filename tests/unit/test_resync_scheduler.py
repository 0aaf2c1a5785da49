"""The drift-check scheduler: one task for every key, intervals to the millisecond, inside the read budget."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kmskey_operator.resync import ResyncScheduler, jitter_factor

REGION = "cn-hangzhou"


class Checks:
    """The scheduler's `run` callback: records when each key was checked, then schedules it again."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.scheduler: ResyncScheduler | None = None
        self.seen = asyncio.Event()

    async def __call__(self, uid: str) -> None:
        self.times.setdefault(uid, []).append(time.monotonic())
        self.seen.set()
        assert self.scheduler is not None
        self.scheduler.schedule(uid)

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.seen.clear()
                await self.seen.wait()


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., tuple[ResyncScheduler, Checks]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(budget: float = 0.0, jitter: float = 0.0) -> tuple[ResyncScheduler, Checks]:
        checks = Checks()
        scheduler = ResyncScheduler(checks, jitter=jitter, read_budget=lambda _region: budget)
        checks.scheduler = scheduler
        tasks.append(asyncio.create_task(scheduler.run_forever()))
        return scheduler, checks

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_key_is_checked_at_its_interval_not_at_a_tick(started: Callable[..., Any]) -> None:
    scheduler, checks = started()
    scheduler.track("k", 0.3, REGION)
    began = time.monotonic()
    scheduler.schedule("k")
    await checks.until(lambda: len(checks.times.get("k", [])) >= 3)
    stamps = [began, *checks.times["k"]]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # kopf's timer ticked every 15 s (every interval rounded up to it); here each gap is the interval.
    assert all(0.29 <= gap <= 0.45 for gap in gaps), gaps


async def test_idle_keys_cost_no_task_each(started: Callable[..., Any]) -> None:
    scheduler, checks = started()
    scheduler.track("k", 3600.0, REGION)
    scheduler.schedule("k")
    await asyncio.sleep(0.05)
    with_one_key = len(asyncio.all_tasks())
    for i in range(2000):
        scheduler.track(f"k{i}", 3600.0, REGION)
        scheduler.schedule(f"k{i}")
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == with_one_key  # kopf's timers were one task per key
    assert not checks.times


async def test_intervals_stretch_to_fit_the_read_budget_and_say_so(
    started: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # 1,000 keys every 100 s at 2 reads each need 20 reads/s; the budget is 10/s.
    scheduler, _ = started(budget=10.0)
    with caplog.at_level(logging.WARNING, logger="kmskey_operator.resync"):
        for i in range(1000):
            scheduler.track(f"k{i}", 100.0, REGION)
        assert scheduler.stretch(REGION) == pytest.approx(2.0)
        assert scheduler.interval("k1") == pytest.approx(200.0)
        scheduler.schedule("k1")
        await asyncio.sleep(0.05)
    assert REGISTRY.get_sample_value("kmskey_resync_interval_stretch") == pytest.approx(2.0)
    assert any("stretched 2.00x" in r.getMessage() for r in caplog.records), caplog.text
    # Checks that read more (a policy: 3 reads) stretch further; fewer keys need no stretch at all.
    for _ in range(200):
        scheduler.observe_reads(REGION, 3)
    assert scheduler.stretch(REGION) == pytest.approx(3.0, rel=0.01)
    for i in range(700):
        scheduler.forget(f"k{i}")
    assert scheduler.stretch(REGION) == 1.0


async def test_overdue_keys_start_no_faster_than_the_budget(started: Callable[..., Any]) -> None:
    # 100 reads/s at 2 reads per check: 50 checks/s, however many are due.
    scheduler, checks = started(budget=100.0)
    for i in range(20):
        scheduler.track(f"k{i}", 3600.0, REGION)
        scheduler.schedule(f"k{i}", 0.0)
    began = time.monotonic()
    await checks.until(lambda: len(checks.times) == 20)
    assert time.monotonic() - began >= 19 / 50 * 0.9


async def test_a_paused_replica_holds_and_starts_nothing(started: Callable[..., Any]) -> None:
    scheduler, checks = started()
    scheduler.track("k", 0.1, REGION)
    scheduler.schedule("k")
    scheduler.pause()
    scheduler.track("k", 0.1, REGION)
    scheduler.schedule("k")  # a reconcile that was in flight when the pause came
    await asyncio.sleep(0.3)
    assert not checks.times
    assert not scheduler.is_scheduled("k")
    scheduler.resume()
    scheduler.track("k", 0.1, REGION)
    scheduler.schedule("k")
    await asyncio.sleep(0.3)
    assert checks.times.get("k")


async def test_a_forgotten_key_is_not_checked(started: Callable[..., Any]) -> None:
    scheduler, checks = started()
    scheduler.track("k", 0.1, REGION)
    scheduler.schedule("k")
    scheduler.forget("k")
    await asyncio.sleep(0.3)
    assert not checks.times


def test_the_jitter_is_stable_per_key_and_bounded() -> None:
    factors = [jitter_factor(f"uid-{i}", 0.1) for i in range(1000)]
    assert all(0.9 <= f <= 1.1 for f in factors)
    assert max(factors) - min(factors) > 0.15  # spread over the whole range
    assert jitter_factor("uid-7", 0.1) == factors[7]
    assert jitter_factor("uid-7", 0.0) == 1.0
