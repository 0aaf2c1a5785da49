"""Whether the main event loop still runs: what `/healthz` answers from a thread of its own (see health.py).

kopf, the reconciles, the watch streams and the admission webhook all run in one asyncio loop. A probe
served by that loop measures how busy it is, not whether it works: during a burst of creates its long
iterations (kopf hands every event of a watch chunk to a worker in one go) made `/healthz` take 250-400 ms,
and a kubelet whose probe times out restarts a pod that is working hard, not one that is stuck. So the probes
are served elsewhere and ask the loop to prove it runs: each probe posts a tick to the loop (`poke`, unless
one is still waiting) and answers at once from what it knows. The loop is stuck when a tick it was handed has
waited longer than the stall threshold (KMSKEY_LIVENESS_STALL_SECONDS): a loop that is stuck (a blocking call,
a deadlock, a runaway handler) gets the pod restarted, a loop that is merely busy does not. Nothing wakes the
loop between probes, so an idle operator stays idle.

Each tick also measures how long it waited (its lag: how long the loop was busy with something else), the
number the old probe used to show; it stays visible as `kmskey_event_loop_lag_seconds` (metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable


class LoopHeartbeat:
    """`attach` in the main loop; any thread may then `poke`, and read `alive()` and `report()`."""

    def __init__(
        self,
        *,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        if stall_seconds <= 0:
            raise ValueError(f"stall threshold {stall_seconds}s must be positive")
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._on_lag = on_lag
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._posted: float | None = None  # when the tick now waiting for the loop was posted
        self.last_tick: float | None = None
        """When the loop last ran a tick (the clock's time); None before `attach`."""

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """From the main loop (its first tick): the loop that later pokes post their ticks to."""
        self._loop = loop or asyncio.get_running_loop()
        self.last_tick = self._clock()

    def poke(self) -> None:
        """Post a tick to the loop, unless one is already waiting there (any thread)."""
        with self._lock:
            if self._loop is None or self._posted is not None:
                return
            self._posted = self._clock()
        # A closed loop raises: the tick stays posted, and the loop reads as stuck.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._tick)

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            posted, self._posted = self._posted, None
        self.last_tick = now
        if posted is not None and self._on_lag is not None:
            self._on_lag(max(0.0, now - posted))

    def waiting(self) -> float:
        """Seconds the posted tick has waited for the loop so far; 0 when none is waiting."""
        posted = self._posted
        return 0.0 if posted is None else max(0.0, self._clock() - posted)

    def age(self) -> float | None:
        """Seconds since the loop last ran a tick; None before `attach`."""
        last = self.last_tick
        return None if last is None else max(0.0, self._clock() - last)

    def alive(self) -> bool:
        """Attached, and no tick has waited for the loop longer than the stall threshold."""
        return self._loop is not None and self.waiting() <= self.stall_seconds

    def report(self) -> dict[str, object]:
        """What /healthz says, as JSON."""
        age = self.age()
        return {
            "alive": self.alive(),
            "event_loop_waiting_seconds": round(self.waiting(), 3),
            "event_loop_last_tick_seconds_ago": None if age is None else round(age, 3),
            "stall_threshold_seconds": self.stall_seconds,
        }
