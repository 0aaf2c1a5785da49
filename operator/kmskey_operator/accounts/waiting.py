"""Which KmsKeys wait on which provider config, so that fixing the config wakes them at once.

A KmsKey whose config is missing, or whose credentials the config cannot give (a missing Secret, keys STS
or KMS refuse), fails with Synced=False and retries with a backoff that grows to minutes. When the config
becomes usable (it is created, or its status check turns Ready: see provider_configs.StatusChecker), its
waiting keys are handed to `on_usable` (the kopf layer reconciles them now) instead of waiting out their
backoff. While keys wait on a config that is not usable, the checker checks it every few seconds
(KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS) instead of every KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS, so that a
Secret created or fixed later is seen within seconds (Secrets are read by name, never watched: see
registry.py).

Pure bookkeeping: KmsKeys by UID, configs by ConfigRef; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kmskey_operator.accounts.refs import ConfigRef


class Waiting:
    """KmsKey UIDs by the config they wait on (one config per key: the last one that failed it)."""

    def __init__(self) -> None:
        self._by_key: dict[str, ConfigRef] = {}
        self._by_config: dict[ConfigRef, set[str]] = {}
        # Told about a config that keys started waiting on (the status checker re-checks it soon).
        self.on_wait: Callable[[ConfigRef], None] | None = None
        # Told which keys to reconcile now (the kopf layer's runtime).
        self.on_usable: Callable[[Iterable[str]], None] | None = None

    def wait(self, uid: str, ref: ConfigRef) -> None:
        """`uid` failed because of `ref`: wake it when `ref` becomes usable."""
        previous = self._by_key.get(uid)
        if previous == ref:
            return
        if previous is not None:
            self._drop(uid, previous)
        self._by_key[uid] = ref
        self._by_config.setdefault(ref, set()).add(uid)
        if self.on_wait is not None:
            self.on_wait(ref)

    def done(self, uid: str) -> None:
        """`uid` no longer waits (it reconciled, or is gone)."""
        ref = self._by_key.pop(uid, None)
        if ref is not None:
            self._drop(uid, ref)

    def waits_on(self, ref: ConfigRef) -> bool:
        return bool(self._by_config.get(ref))

    def usable(self, ref: ConfigRef) -> list[str]:
        """`ref` became usable: the keys that waited on it (no longer waiting), handed to `on_usable`."""
        uids = sorted(self._by_config.pop(ref, ()))
        for uid in uids:
            self._by_key.pop(uid, None)
        if uids and self.on_usable is not None:
            self.on_usable(uids)
        return uids

    def __len__(self) -> int:
        return len(self._by_key)

    def _drop(self, uid: str, ref: ConfigRef) -> None:
        waiting = self._by_config.get(ref)
        if waiting is None:
            return
        waiting.discard(uid)
        if not waiting:
            del self._by_config[ref]
