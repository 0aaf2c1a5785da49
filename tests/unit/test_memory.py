"""memory: released once after each wave of reconciles (quotas or not), frozen during it, never at rest."""

from __future__ import annotations

import gc
import weakref

import pytest

from kmskey_operator import memory


class SeriesEnded(Exception):
    pass


async def actions_for(
    started_per_check: list[int], running: list[int] | None = None, settle: tuple[int, ...] = (2,)
) -> list[str]:
    """Run the loop over the reconciles started before each check; what it did at which check (1-based;
    -1: at start, before the first)."""
    remaining = list(started_per_check)
    total = 0
    check = 0
    actions: list[str] = []

    def reconciles() -> int:  # called once at start, then once per check
        nonlocal total, check
        if check:
            if not remaining:
                raise SeriesEnded
            total += remaining.pop(0)
        check += 1
        return total

    with pytest.raises(SeriesEnded):
        await memory.release_after_waves(
            reconciles,
            check_seconds=0,
            wave=50,
            settle_checks=settle,
            running=lambda: running[check - 2] if running and 0 <= check - 2 < len(running) else 0,
            free=lambda: actions.append(f"free@{check - 1}"),
            freeze=lambda: actions.append(f"freeze@{check - 1}"),
        )
    return actions


async def test_a_burst_is_frozen_while_it_runs_and_released_once_it_settles() -> None:
    # 1,000 creates with quotas off: nothing ever waits on the rate limiter, and it is still a wave.
    assert await actions_for([0, 600, 400, 0, 0, 0, 0]) == ["freeze@-1", "freeze@2", "freeze@3", "free@5"]


async def test_an_operator_keeping_up_is_never_collected() -> None:
    assert await actions_for([0, 3, 1, 0, 12, 0, 0, 20, 0, 0, 0]) == ["freeze@-1"]  # at start, once


async def test_each_wave_is_released_once() -> None:
    actions = await actions_for([200, 0, 0, 70, 10, 0, 0, 0])
    assert actions == ["freeze@-1", "freeze@1", "free@3", "freeze@4", "freeze@5", "free@7"]


async def test_a_wave_still_running_is_not_over() -> None:
    # All 1,000 reconciles start at once, then wait for KMS: no start for two checks is no end yet.
    actions = await actions_for([1000, 0, 0, 0, 0, 0], running=[900, 400, 0, 0, 0, 0])
    assert actions == ["freeze@-1", "freeze@1", "freeze@2", "free@4"]  # not free@3


async def test_a_wave_is_released_at_each_settle_point_then_counts_as_over() -> None:
    actions = await actions_for([200, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0], settle=(2, 4))
    assert actions == ["freeze@-1", "freeze@1", "free@3", "free@5"]


def test_release_frees_cyclic_garbage_and_freezes_what_survives() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    gc.disable()  # no automatic collection may free the cycle first
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gc.freeze()  # even a cycle frozen during a wave is freed when the wave ends
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # a cycle: reference counting alone never frees it
        memory.release()
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_release_hands_freed_heap_memory_back_to_the_os() -> None:
    if memory.rss_mib() == 0.0:
        pytest.fail("no /proc/self/status: the operator's memory figures need Linux")
    gc.disable()
    try:
        # About 150 MiB of 4 KiB strings held by a cycle, with every 16th kept alive in between: freed
        # only by a collection, and (with the live ones pinning the heap) returned only by malloc_trim.
        alive: list[str] = []
        garbage: list[object] = []
        garbage.append(garbage)
        for i in range(40_000):
            (alive if i % 16 == 0 else garbage).append("x" * 4000 + str(i))
        before = memory.rss_mib()
        del garbage
        memory.release()
        after = memory.rss_mib()
        assert len(alive) == 2500
    finally:
        gc.unfreeze()
        gc.enable()
    assert before - after > 80, f"RSS {before:.0f} MiB -> {after:.0f} MiB"
