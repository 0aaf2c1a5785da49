"""The call log: every authenticated KMS API call, with counts per action, per access key and per account.

Tests and benchmarks read it to assert how many KMS calls the operator made. Calls refused before
authentication (bad signature, unknown action) are not KMS calls and are not logged.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_RECORDS = 100_000  # the counts stay exact; only the oldest detailed records are dropped


@dataclass(frozen=True)
class CallRecord:
    action: str
    access_key_id: str
    params: dict[str, str] = field(default_factory=dict)
    status: int = 200
    code: str | None = None  # the error code, None on success
    time: float = 0.0  # wall-clock epoch seconds
    account_id: str = ""  # the account the call acted in (the credential's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        return cls(
            action=str(data["action"]),
            access_key_id=str(data["access_key_id"]),
            params={str(k): str(v) for k, v in dict(data.get("params") or {}).items()},
            status=int(data.get("status", 200)),
            code=data.get("code"),
            time=float(data.get("time", 0.0)),
            account_id=str(data.get("account_id") or ""),
        )


class CallLog:
    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: deque[CallRecord] = deque(maxlen=max_records)
        self._by_action: Counter[str] = Counter()
        self._by_access_key: Counter[str] = Counter()
        self._by_account: Counter[str] = Counter()
        self._by_account_action: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._by_action[record.action] += 1
            self._by_access_key[record.access_key_id] += 1
            self._by_account[record.account_id] += 1
            self._by_account_action[(record.account_id, record.action)] += 1

    def counts(self, account_id: str | None = None) -> dict[str, int]:
        """Calls per action: all of them, or only those made in `account_id`."""
        with self._lock:
            if account_id is None:
                return dict(self._by_action)
            return {a: n for (acct, a), n in self._by_account_action.items() if acct == account_id}

    def counts_by_access_key(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_access_key)

    def counts_by_account(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_account)

    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_action.clear()
            self._by_access_key.clear()
            self._by_account.clear()
            self._by_account_action.clear()
