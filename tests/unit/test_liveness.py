"""The main loop's heartbeat and the probe server that reports it from a thread of its own."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from kmskey_operator import health, names
from kmskey_operator.heartbeat import LoopHeartbeat
from kmskey_operator.settings import Settings, SettingsError
from tests.harness.ports import free_ports


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLoop:
    """Collects what call_soon_threadsafe is handed; `run()` runs it, as the loop would."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.closed = False

    def call_soon_threadsafe(self, callback: Any) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.callbacks.append(callback)

    def run(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def attached(**kwargs: Any) -> tuple[FakeClock, FakeLoop, LoopHeartbeat]:
    clock, loop = FakeClock(), FakeLoop()
    beat = LoopHeartbeat(stall_seconds=10, clock=clock, **kwargs)
    beat.attach(loop)  # type: ignore[arg-type]
    return clock, loop, beat


def test_heartbeat_is_stuck_only_once_a_posted_tick_waited_past_the_threshold() -> None:
    lags: list[float] = []
    clock, loop, beat = attached(on_lag=lags.append)
    clock.now += 60  # idle: nothing was posted, nothing waits
    assert beat.alive()
    beat.poke()
    beat.poke()  # one tick waits at a time
    assert len(loop.callbacks) == 1
    clock.now += 9.5
    assert beat.alive()
    assert beat.waiting() == pytest.approx(9.5)
    clock.now += 1.0
    assert not beat.alive()
    assert beat.report() == {
        "alive": False,
        "event_loop_waiting_seconds": 10.5,
        "event_loop_last_tick_seconds_ago": 70.5,
        "stall_threshold_seconds": 10,
    }
    loop.run()  # the loop runs again
    assert beat.alive()
    assert (beat.waiting(), beat.age(), lags) == (0.0, 0.0, [10.5])


def test_heartbeat_before_the_loop_started_and_after_it_closed() -> None:
    beat = LoopHeartbeat(stall_seconds=10, clock=FakeClock())
    beat.poke()  # nowhere to post it
    assert (beat.alive(), beat.age()) == (False, None)
    clock, loop, beat = attached()
    loop.closed = True
    beat.poke()
    clock.now += 11
    assert not beat.alive()  # a closed loop runs nothing: stuck


def test_heartbeat_refuses_a_threshold_of_zero() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        LoopHeartbeat(stall_seconds=0)


def test_heartbeat_ticks_measure_how_long_the_loop_was_blocked() -> None:
    lags: list[float] = []
    beat = LoopHeartbeat(stall_seconds=5, on_lag=lags.append)

    async def scenario() -> None:
        beat.attach()
        beat.poke()
        await asyncio.sleep(0.05)
        beat.poke()
        time.sleep(0.3)  # noqa: ASYNC251  (the point: the loop is blocked, the posted tick waits)
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert len(lags) == 2
    assert lags[0] < 0.05
    assert lags[1] >= 0.25


def test_the_stall_threshold_setting_is_validated() -> None:
    assert Settings.from_env({"KMSKEY_LIVENESS_STALL_SECONDS": "30"}).liveness_stall_seconds == 30
    with pytest.raises(SettingsError, match="KMSKEY_LIVENESS_STALL_SECONDS"):
        Settings.from_env({"KMSKEY_LIVENESS_STALL_SECONDS": "0.5"})


def ready_readiness(beat: LoopHeartbeat) -> health.Readiness:
    readiness = health.Readiness(webhook_enabled=False, heartbeat=beat)
    readiness.started.set()
    readiness.insights.ready_resources.set()
    readiness.insights.ready_namespaces.set()
    readiness.insights.watched_resources.add(kopf.Resource(names.GROUP, names.VERSION, names.PLURAL))
    return readiness


def test_readiness_fails_while_the_loop_is_stuck() -> None:
    beat = LoopHeartbeat(stall_seconds=10, clock=FakeClock())
    readiness = ready_readiness(beat)
    assert readiness.waiting_for() == ["the event loop's start"]
    clock, loop, beat = attached()
    readiness = ready_readiness(beat)
    assert readiness.waiting_for() == []  # and it posted a tick
    clock.now += 12
    assert readiness.waiting_for() == ["the event loop (stuck: a tick has waited 12.0s, threshold 10s)"]
    loop.run()
    assert readiness.waiting_for() == []


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


@pytest.fixture
def served() -> Iterator[tuple[FakeClock, FakeLoop, LoopHeartbeat, int, int]]:
    clock, loop = FakeClock(), FakeLoop()
    beat = LoopHeartbeat(stall_seconds=10, clock=clock)
    health_port, ready_port = free_ports(2)
    server = health.ProbeServer(
        beat, ready_readiness(beat), host="127.0.0.1", health_port=health_port, ready_port=ready_port
    )
    server.start()
    try:
        yield clock, loop, beat, health_port, ready_port
    finally:
        server.stop()


def test_probe_server_reports_the_heartbeat_from_its_own_thread(
    served: tuple[FakeClock, FakeLoop, LoopHeartbeat, int, int],
) -> None:
    clock, loop, beat, health_port, ready_port = served
    code, body = get(health_port, "/healthz")
    assert (code, body["alive"], body["event_loop_last_tick_seconds_ago"]) == (503, False, None)
    beat.attach(loop)  # type: ignore[arg-type]
    assert get(health_port, "/healthz")[0] == 200
    assert len(loop.callbacks) == 1  # the probe posted a tick
    assert get(ready_port, "/readyz") == (200, {"ready": True, "waiting_for": []})
    clock.now += 11  # the loop never ran it
    code, body = get(health_port, "/healthz")
    assert (code, body["event_loop_waiting_seconds"], body["stall_threshold_seconds"]) == (503, 11, 10)
    assert get(ready_port, "/readyz")[0] == 503
    loop.run()
    assert get(health_port, "/healthz")[0] == 200


def test_probe_server_answers_while_the_main_thread_is_busy() -> None:
    """The probe thread needs only the GIL's switch interval, not the caller's loop: a loop spinning in
    Python (as kopf's long iterations do) still lets it answer within milliseconds."""
    beat = LoopHeartbeat(stall_seconds=10)
    (health_port,) = free_ports(1)
    server = health.ProbeServer(
        beat, ready_readiness(beat), host="127.0.0.1", health_port=health_port, ready_port=0
    )
    server.start()
    latencies: list[float] = []

    async def spin_while_probing() -> None:
        loop = asyncio.get_running_loop()
        beat.attach()

        def probe() -> None:
            began = time.monotonic()
            get(health_port, "/healthz")
            latencies.append(time.monotonic() - began)

        future = loop.run_in_executor(None, lambda: [probe() for _ in range(5)])
        end = time.monotonic() + 1.5
        while time.monotonic() < end and not future.done():
            pass  # this loop never yields
        await future

    try:
        asyncio.run(spin_while_probing())
    finally:
        server.stop()
    assert len(latencies) == 5
    assert max(latencies) < 0.5, latencies
