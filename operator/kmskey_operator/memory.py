"""Memory: give it back to the OS after each wave of reconciles, and keep full collections off the hot path.

**Waves.** When many KmsKeys are applied at once, or the operator starts (or takes over) with many, thousands
of reconciles run within minutes. What they held is freed when they finish, but much of it sits in reference
cycles that only a full collection frees, and glibc keeps the freed heap pages mapped: measured after
creating 1,000 keys, RSS 154 MiB, then 129 MiB after `gc.collect()` + `malloc_trim(0)`; either alone changed
nothing (docs/performance.md). So once a wave has ended (at least `wave` reconciles by kopf handlers, then
checks with none started and none still running), memory is collected and trimmed, at a few points after
it. Most of what a burst holds at its end is kopf's idle connections to the API server: its aiohttp session
has no connection limit, a 1,000-key burst opened up to 156 at once, and each TLS connection keeps asyncio's
256 KiB read buffer; aiohttp closes an idle connection 15-30 s after its last use. So the releases come 25
and 35 s after the wave's last reconcile ended, the second one always after those connections are gone (a
third at 60 s never freed more than 3 MiB, and at 10,000 keys each release costs about 0.5 s of CPU).
Measured at 1,000 keys at once, quotas off (releases then at 15, 25, 60 s): 172 -> 170, 170 -> 107,
108 -> 107 MiB in one run; 144 -> 143, 143 -> 143, 143 -> 110 MiB in another; a single release 10 s after the
last key was Ready had freed 1 MiB and left the process at 136 MiB until the next wave. The signal is the
reconciles themselves, not the KMS rate limiter's queue: with quotas off (or raised) nothing ever queues.
Drift checks do not count: they are the steady state, spread out by the scheduler.

**Full collections.** CPython's full collection walks every tracked object: the modules the operator imports
(about 70,000 objects) and each key's state (about 10 objects a key since the kopf timer per key is gone;
about a hundred with it), each time it runs. Objects that live on are frozen (`gc.freeze()`: moved where
no collection walks them): everything the start-up built, at once; during a wave, what exists at every
check (a constant-time move), so automatic collections only walk what is newer than the last check; when
the wave ends, everything is unfrozen, collected once (cycles among frozen objects are freed then),
trimmed, and frozen again. Measured at 2,000 keys (load 5): that one collection takes about 40 ms.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
WAVE_RECONCILES = 50
# Quiet checks after which a wave's memory is released: 25 and 35 s after its last reconcile ended
# (aiohttp closes the wave's idle API connections 15-30 s after their last use; see above).
SETTLE_CHECKS = (5, 7)


def rss_mib() -> float:
    """This process's resident memory (VmRSS) in MiB; 0.0 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _find_malloc_trim() -> Any:
    """glibc's malloc_trim, or None on a libc without it (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release() -> None:
    """Collect all cyclic garbage (frozen objects too), hand free heap pages to the OS, freeze survivors."""
    before = rss_mib()
    began = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    gc.freeze()
    logger.info(
        "a wave of reconciles ended: released memory, RSS %.0f MiB -> %.0f MiB (%.0f ms)",
        before,
        rss_mib(),
        (time.perf_counter() - began) * 1000,
    )


async def release_after_waves(
    reconciles: Callable[[], int],
    check_seconds: float = CHECK_SECONDS,
    wave: int = WAVE_RECONCILES,
    settle_checks: tuple[int, ...] = SETTLE_CHECKS,
    free: Callable[[], None] = release,
    freeze: Callable[[], None] = gc.freeze,
    running: Callable[[], int] = lambda: 0,
) -> None:
    """Until cancelled: `free()` after a wave of at least `wave` reconciles, once at each count of quiet
    checks in `settle_checks` (ascending): checks with no reconcile started or running.

    `reconciles()` counts the reconciles started so far (it only grows); `running()` those not finished:
    a check counts as quiet only when none started since the last one and none is still running (in a
    burst, all of them start within seconds and then wait for KMS for much longer). Once a wave has `wave`
    reconciles, each check while it lasts also calls `freeze()`, so that automatic collections during
    the wave walk only recent objects (`free()` unfreezes everything again).
    """
    freeze()  # what the start-up imported and built lives as long as the process
    last = reconciles()
    in_wave = 0
    quiet_checks = 0
    while True:
        await asyncio.sleep(check_seconds)
        count = reconciles()
        started, last = count - last, count
        if started or running():
            in_wave += started
            quiet_checks = 0
            if in_wave >= wave:
                freeze()
            continue
        quiet_checks += 1
        if quiet_checks in settle_checks and in_wave >= wave:
            free()
        if quiet_checks >= settle_checks[-1]:
            in_wave = 0  # a few reconciles now and then are no wave
