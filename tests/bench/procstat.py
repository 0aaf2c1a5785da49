"""Resident memory and CPU time of a process, read from /proc (Linux), and a sampler that tracks them."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclasses.dataclass
class Window:
    """What a process did between two moments: CPU as a share of one core, and its RSS."""

    seconds: float
    cpu_percent: float
    rss_mb_max: float
    rss_mb_end: float


class Sampler:
    """Samples a process's RSS every `interval` seconds in a thread; `window()` summarises a span."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self._samples: list[tuple[float, float]] = []  # (monotonic time, RSS MiB)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{pid}", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = (time.monotonic(), rss_mb(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            with self._lock:
                self._samples.append(sample)

    def mark(self) -> tuple[float, float]:
        """(monotonic time, CPU seconds) now, to start a window."""
        return time.monotonic(), cpu_seconds(self.pid)

    def window(self, start: tuple[float, float]) -> Window:
        """From `start` (a `mark()`) until now."""
        began, cpu_began = start
        now, cpu_now = time.monotonic(), cpu_seconds(self.pid)
        end_rss = rss_mb(self.pid)
        with self._lock:
            inside = [rss for stamp, rss in self._samples if stamp >= began]
        elapsed = max(now - began, 1e-6)
        return Window(
            seconds=elapsed,
            cpu_percent=100.0 * (cpu_now - cpu_began) / elapsed,
            rss_mb_max=max([*inside, end_rss]),
            rss_mb_end=end_rss,
        )
