"""accounts/waiting.py: which KmsKeys wait on which provider config, and who is told when."""

from __future__ import annotations

from collections.abc import Iterable

from kmskey_operator.accounts.refs import ConfigKind, ConfigRef
from kmskey_operator.accounts.waiting import Waiting

A = ConfigRef(ConfigKind.NAMESPACED, "default", "team-a")
SHARED = ConfigRef(ConfigKind.CLUSTER, "shared")


def test_usable_hands_over_the_keys_waiting_on_that_config_only_once() -> None:
    waiting = Waiting()
    woken: list[list[str]] = []
    told: list[ConfigRef] = []
    waiting.on_usable = lambda uids: woken.append(list(uids))
    waiting.on_wait = told.append
    waiting.wait("k2", A)
    waiting.wait("k1", A)
    waiting.wait("k3", SHARED)
    waiting.wait("k1", A)  # again: already known, not told twice
    assert told == [A, A, SHARED]

    assert waiting.usable(A) == ["k1", "k2"]
    assert woken == [["k1", "k2"]]
    assert not waiting.waits_on(A)
    assert waiting.waits_on(SHARED)
    assert waiting.usable(A) == []  # nobody waits any more: nobody is told
    assert woken == [["k1", "k2"]]
    assert len(waiting) == 1


def test_a_key_waits_on_the_last_config_that_failed_it_and_done_forgets_it() -> None:
    waiting = Waiting()
    woken: list[str] = []

    def wake(uids: Iterable[str]) -> None:
        woken.extend(uids)

    waiting.on_usable = wake
    waiting.wait("k1", A)
    waiting.wait("k1", SHARED)
    assert not waiting.waits_on(A)
    waiting.wait("k2", SHARED)
    waiting.done("k2")
    waiting.done("k2")  # twice is fine
    assert waiting.usable(SHARED) == ["k1"]
    assert woken == ["k1"]
    assert len(waiting) == 0
