"""Fault injection: make chosen KMS actions fail, slow down or drop the connection, on purpose.

A rule applies to one action (or `*` for all) with a probability `rate`, optionally only `times` times. An
error rule answers with its code and status instead of running the action, so state does not change; latency
is added before the answer (also on success); a dropped connection is closed without an answer.

Latency and a dropped connection happen before the action runs, unless the rule says `after_action`: then the
action runs (its state change is kept) and only the answer is late or lost, as when a network fails after
KMS did the work. That is the case an idempotent client must survive: "done, but I was never told".
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_FAULT_CODE = "ServiceUnavailableTemporary"
DEFAULT_FAULT_STATUS = 503


@dataclass
class FaultRule:
    action: str = "*"
    rate: float = 1.0
    code: str | None = DEFAULT_FAULT_CODE  # None: no error, only latency and/or a dropped connection
    status: int = DEFAULT_FAULT_STATUS
    message: str = "The request has failed due to a temporary failure of the server."
    latency_ms: int = 0
    drop_connection: bool = False
    retry_after_ms: int | None = None  # adds x-acs-retry-after, making the SDK raise ThrottlingException
    times: int | None = None  # apply at most this many times, then the rule is spent
    after_action: bool = False  # latency/drop after running the action (done, answer late or lost)
    applied: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FaultDecision:
    latency_ms: int = 0
    drop_connection: bool = False
    error: FaultRule | None = None
    # The part of latency_ms / drop_connection that comes after the action ran.
    latency_after_ms: int = 0
    drop_after: bool = False


class Faults:
    """The active rules, consulted once per authenticated KMS call."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if rule.code is not None and not 400 <= rule.status <= 599:
            raise ValueError("an injected error needs a 4xx or 5xx status")
        if rule.after_action and rule.code is not None:
            raise ValueError("after_action applies to latency and dropped connections only (code=None)")
        with self._lock:
            self._rules.append(rule)

    def clear(self, action: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if action is not None and r.action != action]

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def decide(self, action: str) -> FaultDecision | None:
        """What to do to this call; None when no rule fires. Latency adds up; the first error rule wins."""
        with self._lock:
            if not self._rules:
                return None
            latency, drop, error = 0, False, None
            latency_after, drop_after = 0, False
            for rule in self._rules:
                if rule.action not in ("*", action):
                    continue
                if rule.times is not None and rule.applied >= rule.times:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.applied += 1
                if rule.after_action:
                    latency_after += rule.latency_ms
                    drop_after = drop_after or rule.drop_connection
                    continue
                latency += rule.latency_ms
                drop = drop or rule.drop_connection
                if error is None and rule.code is not None:
                    error = rule
            if not (latency or drop or error or latency_after or drop_after):
                return None
            return FaultDecision(
                latency_ms=latency,
                drop_connection=drop,
                error=error,
                latency_after_ms=latency_after,
                drop_after=drop_after,
            )
