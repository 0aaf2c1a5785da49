"""A client for the `/_emulator/` admin endpoints of an emulator in another process (stdlib only).

It has the same methods as testing.EmulatorHandle, so a demo, `make dev-up` or a benchmark drives a separate
`kms-emulator` process the way in-process tests drive theirs.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .accounts import Principal
from .calllog import CallRecord
from .credentials import Credential
from .faults import DEFAULT_FAULT_CODE, DEFAULT_FAULT_STATUS


class AdminError(RuntimeError):
    """The admin endpoint refused a request (HTTP 4xx/5xx)."""


class AdminClient:
    def __init__(self, url: str, timeout: float = 10.0, *, ca_file: str | None = None) -> None:
        """`url` is http(s)://HOST:PORT; an https emulator is verified with `ca_file` (its `ca.crt`)."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        context = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https:") else None
        # An emulator on 127.0.0.1 must not be reached through an HTTP(S)_PROXY from the environment.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def health(self) -> bool:
        try:
            return bool(self._request("GET", "/health").get("status") == "ok")
        except (OSError, AdminError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.health():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kms-emulator answering at {self.url}")
            time.sleep(0.05)

    def call_counts(self, account_id: str | None = None) -> dict[str, int]:
        """KMS calls per action: all, or only those made in `account_id`."""
        path = "/calls" if account_id is None else f"/calls?account={urllib.parse.quote(account_id)}"
        return {str(k): int(v) for k, v in self._request("GET", path)["counts"].items()}

    def call_counts_by_account(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._request("GET", "/calls")["counts_by_account"].items()}

    def sts_call_counts(self, account_id: str | None = None) -> dict[str, int]:
        path = "/sts-calls" if account_id is None else f"/sts-calls?account={urllib.parse.quote(account_id)}"
        return {str(k): int(v) for k, v in self._request("GET", path)["counts"].items()}

    def call_counts_by_access_key(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._request("GET", "/calls")["counts_by_access_key"].items()}

    def calls(self) -> list[CallRecord]:
        return [CallRecord.from_dict(item) for item in self._request("GET", "/calls")["calls"]]

    def reset_calls(self) -> None:
        self._request("POST", "/reset-calls")

    def set_fault(
        self,
        action: str = "*",
        rate: float = 1.0,
        code: str | None = DEFAULT_FAULT_CODE,
        status: int = DEFAULT_FAULT_STATUS,
        latency_ms: int = 0,
        drop_connection: bool = False,
        *,
        message: str | None = None,
        retry_after_ms: int | None = None,
        times: int | None = None,
        after_action: bool = False,
    ) -> None:
        rule: dict[str, Any] = {
            "action": action,
            "rate": rate,
            "code": code,
            "status": status,
            "latency_ms": latency_ms,
            "drop_connection": drop_connection,
            "retry_after_ms": retry_after_ms,
            "times": times,
            "after_action": after_action,
        }
        if message is not None:
            rule["message"] = message
        self._request("POST", "/faults", rule)

    def clear_faults(self, action: str | None = None) -> None:
        self._request("POST", "/faults", {"clear": True, "action": action})

    def advance_clock(self, seconds: float) -> None:
        self._request("POST", "/clock/advance", {"seconds": seconds})

    def set_quotas(
        self,
        enabled: bool,
        create_qps: float = 10,
        read_qps: float = 20,
        write_qps: float = 10,
        style: str | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "enabled": enabled,
            "create_qps": create_qps,
            "read_qps": read_qps,
            "write_qps": write_qps,
        }
        if style is not None:
            body["style"] = style
        self._request("POST", "/quotas", body)

    def keys(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Raw key state of the default account, or of `account_id`."""
        path = "/keys" if account_id is None else f"/keys?account={urllib.parse.quote(account_id)}"
        return list(self._request("GET", path)["keys"])

    def accounts(self) -> list[str]:
        return [str(a) for a in self._request("GET", "/accounts")["accounts"]]

    def issue_sts_token(self, duration_seconds: float = 3600) -> Credential:
        data = self._request("POST", "/sts", {"duration_seconds": duration_seconds})
        return Credential(
            access_key_id=data["access_key_id"],
            access_key_secret=data["access_key_secret"],
            security_token=data["security_token"],
            expires_at=data["expires_at"],
            principal=Principal.from_dict(data["principal"]) if data.get("principal") else None,
        )

    def tls_handshakes(self) -> int:
        """TLS handshakes the emulator has seen so far: one per connection a client opened."""
        return int(self._request("GET", "/tls")["handshakes"])

    def set_tls_handshake_delay(self, milliseconds: int) -> None:
        self._request("POST", "/tls", {"handshake_delay_ms": milliseconds})

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/_emulator{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                result: dict[str, Any] = json.loads(response.read() or b"{}")
                return result
        except urllib.error.HTTPError as error:
            raise AdminError(
                f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}"
            ) from None
