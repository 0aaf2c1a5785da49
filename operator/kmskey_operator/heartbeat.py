"""The main event loop's heartbeat: what `/healthz` answers from a thread of its own (see health.py).

kopf, the reconciles, the watch streams and the admission webhook all run in one asyncio loop. A probe
served by that loop measures how busy it is, not whether it works: during a burst of creates its long
iterations (kopf hands every event of a watch chunk to a worker in one go) made `/healthz` take 250-400 ms,
and a kubelet whose probe times out restarts a pod that is working hard, not one that is stuck. So the probes
are served elsewhere, and the loop proves it is alive by ticking: a task in it wakes every `interval` and
records the time (every 0.25 s). `/healthz` fails once the last tick is older than the stall threshold
(KMSKEY_LIVENESS_STALL_SECONDS): a loop that is stuck (a blocking call, a deadlock, a runaway handler) gets
the pod restarted, a loop that is merely busy does not.

Each tick also measures how late it woke (its lag: how long the loop was busy with something else), the
number the old probe used to show; it stays visible as `kmskey_event_loop_lag_seconds` (metrics.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_INTERVAL = 0.25  # 4 wake-ups a second: about 0.1 % of a core idle (0.1 s cost 0.2-0.25 %)


class LoopHeartbeat:
    """Ticks in the main loop (`run`); any thread may read `age()` and `alive()`.

    A float attribute written by one thread and read by another is safe under the GIL, so no lock.
    """

    def __init__(
        self,
        *,
        stall_seconds: float,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        if stall_seconds <= interval:
            raise ValueError(f"stall threshold {stall_seconds}s must exceed the tick interval {interval}s")
        self.stall_seconds = stall_seconds
        self.interval = interval
        self._clock = clock
        self._on_lag = on_lag
        self.last_tick: float | None = None
        """When the loop last ticked (the clock's time); None before its first tick."""

    def tick(self, lag: float = 0.0) -> None:
        """The loop ran: record now, and how late this tick came (seconds)."""
        self.last_tick = self._clock()
        if self._on_lag is not None:
            self._on_lag(lag)

    def age(self) -> float | None:
        """Seconds since the last tick; None before the first one."""
        last = self.last_tick
        return None if last is None else max(0.0, self._clock() - last)

    def alive(self) -> bool:
        """Whether the loop ticked within the stall threshold (False before its first tick)."""
        age = self.age()
        return age is not None and age <= self.stall_seconds

    def report(self) -> dict[str, object]:
        """What /healthz says, as JSON: alive, the last tick's age and the threshold."""
        age = self.age()
        return {
            "alive": self.alive(),
            "event_loop_last_tick_seconds_ago": None if age is None else round(age, 3),
            "stall_threshold_seconds": self.stall_seconds,
        }

    async def run(self) -> None:
        """Tick forever in the current loop (cancel to stop)."""
        clock = self._clock
        self.tick()
        while True:
            due = clock() + self.interval
            await asyncio.sleep(self.interval)
            self.tick(max(0.0, clock() - due))
