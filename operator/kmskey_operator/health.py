"""The probes: `/healthz` (liveness) and `/readyz` (readiness), served from a thread of their own.

Both are a tiny aiohttp server in a daemon thread with an event loop of its own (`ProbeServer`), not in the
loop where kopf, the reconciles and the webhook run: a probe answered by that loop measures how busy it is
(250-400 ms at p99 during a quotas-off burst of creates), and a kubelet would restart a pod for working
hard. What the probes report is still about the main loop:

- `/healthz` (KMSKEY_HEALTH_PORT) posts a tick to the main loop (heartbeat.py) and answers at once: 200
  unless a tick has waited for the loop longer than KMSKEY_LIVENESS_STALL_SECONDS (a stuck loop: the pod
  gets restarted), and 503 before the loop started (start-up: the startup probe waits). The body says how
  long the waiting tick has waited and when the loop last ran one.
- `/readyz` (KMSKEY_READY_PORT) answers 200 when ready; ready means all of:

- kopf's startup handlers finished (kopf's `ready_flag`);
- kopf listed the cluster's resources and namespaces and the KmsKey resource is among those it watches
  (its `Insights`, passed to `kopf.run`; the watch streams start from exactly this state);
- the admission webhook server is listening, when the webhook is enabled;
- the main loop ticked within the stall threshold (a stuck loop answers no admission review either).

A replica paused by kopf peering (HA standby) stays ready: it serves admission and is one failover away.
The body is JSON: `{"ready": bool, "waiting_for": [...]}`, so `curl` shows what is missing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp.web
from kopf._cogs.structs.references import Insights  # kopf.run(insights=...) takes it; kopf exports no alias

from kmskey_operator import names
from kmskey_operator.heartbeat import LoopHeartbeat


class Readiness:
    """What /readyz reports; flags are set by kopf (started, insights) and by the webhook wrapper."""

    def __init__(self, *, webhook_enabled: bool, heartbeat: LoopHeartbeat | None = None) -> None:
        self.started = threading.Event()  # kopf's ready_flag: raised once the startup handlers finished
        self.insights = Insights()
        self.webhook_enabled = webhook_enabled
        self.webhook_serving = False
        self.heartbeat = heartbeat

    def waiting_for(self) -> list[str]:
        """What readiness still waits for; empty when ready."""
        missing: list[str] = []
        if not self.started.is_set():
            missing.append("the operator's startup handlers")
        insights = self.insights
        if not (insights.ready_resources.is_set() and insights.ready_namespaces.is_set()):
            missing.append("kopf's first listing of resources and namespaces")
        elif not any(r.group == names.GROUP and r.plural == names.PLURAL for r in _watched(insights)):
            missing.append(f"a watch on {names.CRD_NAME} (is the CRD installed?)")
        if self.webhook_enabled and not self.webhook_serving:
            missing.append("the admission webhook server")
        if self.heartbeat is not None:
            self.heartbeat.poke()
            if not self.heartbeat.alive():
                waited, threshold = self.heartbeat.waiting(), self.heartbeat.stall_seconds
                missing.append(
                    "the event loop's start"
                    if self.heartbeat.age() is None
                    else f"the event loop (stuck: a tick has waited {waited:.1f}s, threshold {threshold:g}s)"
                )
        return missing

    def track_webhook(self, server: Any) -> Callable[[Any], AsyncIterator[Any]]:
        """Wrap a kopf webhook server (settings.admission.server): serving once it yields a client config.

        kopf's servers yield their first client config right after their socket listens.
        """

        async def serve(fn: Any) -> AsyncIterator[Any]:
            try:
                if isinstance(server, AbstractAsyncContextManager):
                    async with server as entered:
                        async for client_config in entered(fn):
                            self.webhook_serving = True
                            yield client_config
                else:
                    async for client_config in server(fn):
                        self.webhook_serving = True
                        yield client_config
            finally:
                self.webhook_serving = False

        return serve

    async def handle(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        missing = self.waiting_for()
        return aiohttp.web.json_response(
            {"ready": not missing, "waiting_for": missing}, status=503 if missing else 200
        )


def _watched(insights: Insights) -> tuple[Any, ...]:
    """kopf's watched resources, read from the probe thread while kopf's loop may change the set."""
    for _ in range(3):
        try:
            return tuple(insights.watched_resources)
        except RuntimeError:  # "Set changed size during iteration"
            continue
    return ()


async def healthz(heartbeat: LoopHeartbeat) -> aiohttp.web.Response:
    """Liveness: post a tick to the main loop; 200 unless a tick has waited past the threshold (JSON)."""
    heartbeat.poke()
    report = heartbeat.report()
    return aiohttp.web.json_response(report, status=200 if report["alive"] else 503)


class ProbeServer:
    """`/healthz` and `/readyz` in a daemon thread with an event loop of its own (ports 0 = off).

    `start()` returns once both listen (or raises what stopped them); `stop()` closes them. The thread
    holds no state of its own: every answer is read from `heartbeat` and `readiness` at request time.
    """

    def __init__(
        self, heartbeat: LoopHeartbeat, readiness: Readiness, *, host: str, health_port: int, ready_port: int
    ) -> None:
        self.heartbeat = heartbeat
        self.readiness = readiness
        self.host = host
        self.health_port = health_port
        self.ready_port = ready_port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._listening = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        if self._thread is not None or not (self.health_port or self.ready_port):
            return
        self._thread = threading.Thread(target=self._main, name="probes", daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout):
            raise RuntimeError(f"the probe server did not listen within {timeout:.0f}s")
        if self._error is not None:
            raise RuntimeError(f"the probe server could not listen: {self._error}") from self._error

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and loop.is_running():
            loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to start(); a daemon thread must not die silently
            self._error = error
        finally:
            self._listening.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        heartbeat = self.heartbeat

        async def health(_request: aiohttp.web.Request) -> aiohttp.web.Response:
            return await healthz(heartbeat)

        runners: list[aiohttp.web.AppRunner] = []
        try:
            for port, path, handler in (
                (self.health_port, "/healthz", health),
                (self.ready_port, "/readyz", self.readiness.handle),
            ):
                if not port:
                    continue
                app = aiohttp.web.Application()
                app.add_routes([aiohttp.web.get(path, handler)])
                runner = aiohttp.web.AppRunner(
                    app, handle_signals=False, access_log=None, shutdown_timeout=1.0
                )
                await runner.setup()
                runners.append(runner)
                await aiohttp.web.TCPSite(runner, self.host, port, reuse_address=True).start()
            self._listening.set()
            await self._stopping.wait()
        finally:
            for runner in runners:
                await runner.cleanup()
