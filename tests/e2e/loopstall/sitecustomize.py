"""Test-only (tests/e2e/test_liveness.py): lets a test stall the operator's main event loop on purpose.

Put on the operator's PYTHONPATH, Python imports it at start-up as `sitecustomize`; the operator itself
has no such hook. It notes the event loop that runs in the main thread (kopf's), and a thread of its own
watches the file named by KMSKEY_TEST_STALL_FILE: when the file appears, holding a number of seconds, it is
removed and the main loop is made to spin in pure Python for that long. A spin, not a sleep: like a runaway
handler it keeps taking the GIL, so the probe thread gets only what the interpreter's switch interval gives.
"""

from __future__ import annotations

import asyncio.base_events
import os
import threading
import time
from typing import Any

TRIGGER = os.environ.get("KMSKEY_TEST_STALL_FILE")
main_loop: asyncio.AbstractEventLoop | None = None


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _watch(trigger: str) -> None:
    while True:
        time.sleep(0.05)
        try:
            with open(trigger) as file:
                text = file.read().strip()
        except FileNotFoundError:
            continue
        if not text or main_loop is None:
            continue
        os.unlink(trigger)
        main_loop.call_soon_threadsafe(_spin, float(text))


if TRIGGER:
    _run_forever = asyncio.base_events.BaseEventLoop.run_forever

    def _noting_run_forever(self: asyncio.base_events.BaseEventLoop, *args: Any, **kwargs: Any) -> Any:
        global main_loop
        if threading.current_thread() is threading.main_thread():
            main_loop = self
        return _run_forever(self, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.run_forever = _noting_run_forever  # type: ignore[method-assign]
    threading.Thread(target=_watch, args=(TRIGGER,), name="test-loop-staller", daemon=True).start()
