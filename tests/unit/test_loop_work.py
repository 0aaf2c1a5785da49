"""Per-event work the kopf layer gives the main event loop: no handler kopf would hop to a thread for."""

from __future__ import annotations

import asyncio

import kopf

from kmskey_operator import directory, handlers, webhook
from kmskey_operator.settings import Settings


def test_every_handler_that_runs_per_watch_event_is_a_coroutine() -> None:
    """kopf runs a plain function in its thread pool: one executor round trip (future, context copy, GIL
    hand-offs with the worker thread) per handler per event, which at 50 creates/s stretched the loop's
    iterations and the probe's wait. Indices, event, change and admission handlers must be coroutines."""
    registry = kopf.OperatorRegistry()  # not made the default one: other tests read that
    handlers.register(Settings(), registry)
    directory.register(registry)
    per_event = [
        *registry._indexing.get_all_handlers(),
        *registry._watching.get_all_handlers(),
        *registry._changing.get_all_handlers(),
    ]
    assert {h.id for h in registry._indexing.get_all_handlers()} == {directory.BY_UID, directory.BY_KEY_ID}
    assert any(h.id == "reconcile-create" for h in per_event)
    plain = [h.id for h in per_event if not asyncio.iscoroutinefunction(h.fn)]
    assert plain == []
    assert asyncio.iscoroutinefunction(webhook.validate_kmskey)  # the admission handler, per review
