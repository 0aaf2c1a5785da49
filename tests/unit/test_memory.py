"""memory.release_after_waves: memory is released once after each wave of queued KMS calls, never at rest."""

from __future__ import annotations

import pytest

from kmskey_operator import memory


class SeriesEnded(Exception):
    pass


async def releases_for(queue_lengths: list[int]) -> list[int]:
    """Run the loop over rate-limiter queue lengths (one per check); the checks after which it released."""
    remaining = list(queue_lengths)
    checks: list[int] = []
    released: list[int] = []

    def queued() -> int:
        if not remaining:
            raise SeriesEnded
        checks.append(remaining.pop(0))
        return checks[-1]

    def free() -> None:
        released.append(len(checks))

    with pytest.raises(SeriesEnded):
        await memory.release_after_waves(queued, check_seconds=0, wave_calls=50, settle_checks=2, free=free)
    return released


async def test_a_burst_is_released_once_when_its_queue_drains() -> None:
    assert await releases_for([0, 900, 600, 300, 4, 0, 0, 0, 0]) == [7]


async def test_an_operator_keeping_up_is_never_collected() -> None:
    assert await releases_for([0, 3, 1, 0, 12, 0, 49, 0]) == []


async def test_each_wave_is_released_once() -> None:
    assert await releases_for([200, 0, 0, 70, 10, 0, 3, 0, 0, 0]) == [3, 9]


def test_release_collects_and_trims_without_failing() -> None:
    memory.release()
