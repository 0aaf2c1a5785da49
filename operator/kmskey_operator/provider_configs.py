"""The kopf layer of provider configs: keep the accounts registry's index current, and their status true.

Configs are followed with raw watch events (`kopf.on.event`): kopf then puts no finalizer and no annotation
on them, so deleting a config, or uninstalling the operator, is never blocked by it. Their status is written
by one background task (not a kopf timer, which would force a finalizer on every config): it checks each
config's credentials against STS when the config changes, when KMS refuses its credentials, and every
KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS, and merge-patches `status` (Ready, accountId, identityArn, lastError).
Only the active replica writes.

While KmsKeys wait on a config that is not usable (accounts/waiting.py), it is re-checked every
KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS (quickly: STS is asked only when the credentials changed), and the
check that finds it usable again (or for the first time) hands its waiting KmsKeys to be reconciled now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from kmskey_operator import conditions, metrics, names, timestamps
from kmskey_operator.accounts.kube import PLURALS, KubeReader
from kmskey_operator.accounts.refs import ConfigKind, ConfigRef
from kmskey_operator.accounts.registry import ConfigCheck, Registry

logger = logging.getLogger(__name__)

StatusWriter = Callable[[ConfigRef, Mapping[str, Any]], Awaitable[None]]


def register(registry: kopf.OperatorRegistry, accounts: Registry, checker: StatusChecker) -> None:
    """Follow both kinds of provider config into `accounts`; ask `checker` to check changed ones."""
    for kind, plural in PLURALS.items():
        if kind is ConfigKind.CLUSTER and not accounts.settings.cluster_provider_configs:
            continue
        _follow(registry, accounts, checker, kind, plural)


def _follow(
    registry: kopf.OperatorRegistry, accounts: Registry, checker: StatusChecker, kind: ConfigKind, plural: str
) -> None:
    @kopf.on.event(names.GROUP, names.VERSION, plural, id=f"index-{plural}", registry=registry)
    async def on_event(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            meta = body.get("metadata", {})
            namespace = meta.get("namespace") if kind is ConfigKind.NAMESPACED else None
            ref = ConfigRef(kind, str(meta.get("name")), namespace)
            accounts.remove(ref)
            checker.forget(ref)
            return
        config = accounts.upsert(body, kind)
        status = body.get("status") or {}
        checker.seen(config.ref, status)
        if status.get("observedGeneration") != config.generation:
            checker.request(config.ref)  # new or changed: check it now
        else:
            checker.track(config.ref)


class StatusChecker:
    """Checks configs' credentials and writes what it finds into their status; one task for all configs."""

    def __init__(
        self,
        accounts: Registry,
        write: StatusWriter,
        *,
        interval: float,
        retry: float | None = None,
        active: Callable[[], bool] = metrics.is_active,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._write = write
        self._interval = interval
        self._retry = min(retry or interval, interval)
        self._active = active
        self._clock = clock
        self._due: dict[ConfigRef, float] = {}
        self._full_due: dict[ConfigRef, float] = {}  # the next check that asks STS whatever happened
        self._wake = asyncio.Event()
        self._last: dict[ConfigRef, ConfigCheck] = {}
        self._status: dict[ConfigRef, Mapping[str, Any]] = {}
        accounts.on_trouble = self.request
        accounts.waiting.on_wait = self.soon

    def seen(self, ref: ConfigRef, status: Mapping[str, Any]) -> None:
        """The config's status as the watch last showed it (its conditions keep their transition times)."""
        self._status[ref] = status

    def request(self, ref: ConfigRef) -> None:
        """Check `ref` as soon as possible."""
        self._due[ref] = float("-inf")
        self._full_due[ref] = float("-inf")
        self._wake.set()

    def soon(self, ref: ConfigRef) -> None:
        """KmsKeys wait on `ref`: check it within the retry interval (a quick check)."""
        at = self._clock() + self._retry
        if at < self._due.get(ref, float("inf")):
            self._due[ref] = at
            self._wake.set()

    def track(self, ref: ConfigRef) -> None:
        """Check `ref` at the next interval (already checked for its current generation)."""
        self._due.setdefault(ref, self._clock() + self._interval)

    def forget(self, ref: ConfigRef) -> None:
        self._due.pop(ref, None)
        self._full_due.pop(ref, None)
        self._last.pop(ref, None)
        self._status.pop(ref, None)

    async def run(self) -> None:
        while True:
            now = self._clock()
            due = [ref for ref, at in self._due.items() if at <= now]
            if due and self._active():
                for ref in due:
                    now = self._clock()
                    quick = now < self._full_due.get(ref, float("-inf"))
                    if not quick:
                        self._full_due[ref] = now + self._interval
                    self._due[ref] = now + self._interval
                    await self.check(ref, quick=quick)
                continue
            self._wake.clear()
            wait = min([at - now for at in self._due.values() if at > now], default=self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.5, min(wait, self._interval)))

    async def check(self, ref: ConfigRef, *, quick: bool = False) -> ConfigCheck | None:
        config = self._accounts.lookup(ref)
        if config is None:
            return None
        try:
            result = await self._accounts.check(ref, quick=quick)
        except Exception:  # a bug must not stop the checks of every other config
            logger.exception("checking %s failed", ref.describe())
            return None
        previous = self._last.get(ref)
        self._last[ref] = result
        waiting = self._accounts.waiting
        if result.ready and (previous is None or not previous.ready):
            woken = waiting.usable(ref)  # usable now: its waiting KmsKeys reconcile at once
            if woken:
                logger.info(
                    "%s is usable: reconciling the %d KmsKeys that waited", ref.describe(), len(woken)
                )
        elif not result.ready and waiting.waits_on(ref):
            self._due[ref] = min(self._due.get(ref, float("inf")), self._clock() + self._retry)
        if previous is None or (previous.ready, previous.message) != (result.ready, result.message):
            level = logging.INFO if result.ready else logging.WARNING
            logger.log(level, "%s: %s", ref.describe(), result.message)
        patch = status_patch(result, config.generation, self._status.get(ref))
        self._status[ref] = patch["status"]
        try:
            await self._write(ref, patch)
        except Exception as error:  # the API may be away; the next check writes again
            logger.warning("could not write the status of %s: %s", ref.describe(), error)
        return result


def status_patch(result: ConfigCheck, generation: int, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The merge patch of `status` for a check result (never a credential: only IDs, ARNs and messages)."""
    now = timestamps.now_rfc3339()
    ready = conditions.Condition(
        names.READY, conditions.TRUE if result.ready else conditions.FALSE, result.reason, result.message
    )
    existing = (current or {}).get("conditions")
    status: dict[str, Any] = {
        "conditions": conditions.merge(existing, [ready], generation=generation, now=now),
        "observedGeneration": generation,
        "lastCheckTime": now,
    }
    if result.ready:
        status.update(accountId=result.account_id, identityArn=result.identity_arn or None, lastError=None)
        status["lastErrorTime"] = None
    else:
        status.update(lastError=result.message, lastErrorTime=now)
    return {"status": status}


def status_writer(reader: KubeReader) -> StatusWriter:
    """Merge-patch a config's status subresource through the accounts' API reader."""

    async def write(ref: ConfigRef, body: Mapping[str, Any]) -> None:
        await reader.patch_status(ref, body)

    return write
