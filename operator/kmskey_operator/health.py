"""Readiness: `/readyz` answers 200 once kopf watches KmsKeys and, if enabled, the webhook serves.

Liveness stays kopf's own `/healthz` (KMSKEY_HEALTH_PORT), which only says the event loop runs. kopf has
no readiness endpoint and its liveness server takes no extra routes, so `/readyz` is a tiny aiohttp server
of its own (KMSKEY_READY_PORT), started by the first startup handler in kopf's loop: a blocked loop makes
it time out, like `/healthz`. Ready means all of:

- kopf's startup handlers finished (kopf's `ready_flag`);
- kopf listed the cluster's resources and namespaces and the KmsKey resource is among those it watches
  (its `Insights`, passed to `kopf.run`; the watch streams start from exactly this state);
- the admission webhook server is listening, when the webhook is enabled.

A replica paused by kopf peering (HA standby) stays ready: it serves admission and is one failover away.
The body is JSON: `{"ready": bool, "waiting_for": [...]}`, so `curl` shows what is missing.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp.web
from kopf._cogs.structs.references import Insights  # kopf.run(insights=...) takes it; kopf exports no alias

from kmskey_operator import names


class Readiness:
    """What /readyz reports; flags are set by kopf (started, insights) and by the webhook wrapper."""

    def __init__(self, *, webhook_enabled: bool) -> None:
        self.started = threading.Event()  # kopf's ready_flag: raised once the startup handlers finished
        self.insights = Insights()
        self.webhook_enabled = webhook_enabled
        self.webhook_serving = False
        self._runner: aiohttp.web.AppRunner | None = None

    def waiting_for(self) -> list[str]:
        """What readiness still waits for; empty when ready."""
        missing: list[str] = []
        if not self.started.is_set():
            missing.append("the operator's startup handlers")
        insights = self.insights
        if not (insights.ready_resources.is_set() and insights.ready_namespaces.is_set()):
            missing.append("kopf's first listing of resources and namespaces")
        elif not any(r.group == names.GROUP and r.plural == names.PLURAL for r in insights.watched_resources):
            missing.append(f"a watch on {names.CRD_NAME} (is the CRD installed?)")
        if self.webhook_enabled and not self.webhook_serving:
            missing.append("the admission webhook server")
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

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (returns once bound); 0 = off. Safe to call once per process."""
        if not port or self._runner is not None:
            return
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get("/readyz", self.handle)])
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, host, port, reuse_address=True).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
