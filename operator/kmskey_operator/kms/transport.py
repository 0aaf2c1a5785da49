"""How KMS calls leave the process: the SDK's own blocking, pooled HTTP path, run in a bounded thread pool.

Why not the SDK's async methods: darabonba's `async_do_action` builds a new aiohttp session, a new SSLContext
and loads certifi's bundle on every call: about 35 ms of CPU per HTTPS call, on the event loop, plus a new
TLS handshake each time. The SDK's blocking methods go through `DaraCore.do_action` instead, which keeps one
`requests.Session` per protocol://host:port for the whole process: one TLS context per endpoint (the
system's roots and certifi's, plus KMSKEY_KMS_CA_BUNDLE), kept-alive connections, and the SDK's own request
building, signing, timeouts, proxy settings (HTTPS_PROXY / HTTP_PROXY) and error mapping. Run in worker
threads, connection set-up, TLS handshakes and waits for answers never hold the event loop.

    KmsGateway (async; the only SDK user) ── CallPool.run(blocking SDK call) ──► worker thread (≤ size)
        └─ SDK sync method ─► DaraCore.do_action ─► requests.Session of that endpoint (≤ size connections)

At most `size` calls run at once in the process: every gateway of the process (one per account, say) shares
the pool of that size, as the SDK shares its sessions, and each endpoint's connection pool is given the same
size (`Config.max_idle_conns`), so every call finds a kept-alive connection once the pool is warm.

The SDK creates an endpoint's session on its first call, without a lock: calls racing there would each build
a session (a TLS context, a connection pool) and all but one would be dropped with their connections. So the
first call to each endpoint runs alone (`first_call_alone`); the others wait for it in their threads.

This module does not import the SDK: it runs whatever blocking call the gateway hands it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class CallPool:
    """A bounded pool of worker threads for blocking KMS calls, started on first use; `shared(size)` is the
    process's pool of that size.

    A call whose awaiting task is cancelled still finishes in its thread (the SDK cannot be interrupted, and
    its timeouts bound it); its answer is dropped.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a call pool needs at least one thread")
        self.size = size
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running = 0

    @classmethod
    def shared(cls, size: int) -> CallPool:
        """The process's pool of `size` threads, made on first request."""
        with _SHARED_LOCK:
            pool = _SHARED.get(size)
            if pool is None:
                pool = _SHARED[size] = cls(size)
            return pool

    @property
    def running(self) -> int:
        """Calls being made in a worker thread now."""
        return self._running

    async def run(self, call: Callable[[], T]) -> T:
        """Run `call` in a worker thread and wait for it without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool(), self._counted, call)

    def _counted(self, call: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        try:
            return call()
        finally:
            with self._lock:
                self._running -= 1

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="kms-call")
            return self._executor

    def close(self) -> None:
        """Stop the threads once their calls are done; queued calls that have not started are cancelled."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


_SHARED: dict[int, CallPool] = {}
_SHARED_LOCK = threading.Lock()
_OPENED: set[str] = set()  # endpoints (the SDK's session keys) whose first call has been made
_OPENING = threading.Lock()


def first_call_alone(endpoint: str, call: Callable[[], T]) -> T:
    """Run `call` (in a worker thread); the first call to `endpoint` in the process runs alone."""
    if endpoint in _OPENED:
        return call()
    with _OPENING:
        if endpoint in _OPENED:
            return call()
        try:
            return call()
        finally:
            _OPENED.add(endpoint)
