"""Admin endpoints under `/_emulator/`: observe and steer a running emulator over plain JSON HTTP.

They are outside the KMS API: no signature, no quota, not in the call log. They have no authentication either,
which is why the emulator binds 127.0.0.1 by default.

    GET  /_emulator/health          {"status": "ok"}
    GET  /_emulator/calls           {"counts", "counts_by_access_key", "counts_by_account",
                                    "calls": [CallRecord...]}; ?account=ID: counts of that account only
    GET  /_emulator/sts-calls       the same for STS calls (AssumeRole, AssumeRoleWithOIDC, ...)
    POST /_emulator/reset-calls
    GET  /_emulator/faults          {"faults": [FaultRule...]}
    POST /_emulator/faults          a FaultRule as JSON adds it; {"clear": true[, "action": A]} removes
    POST /_emulator/clock/advance   {"seconds": N} -> {"now": ISO date}
    GET  /_emulator/clock           {"now": ISO date, "offset_seconds": N}
    GET  /_emulator/keys            {"keys": [raw key state...]} of the default account; ?account=ID another's
    GET  /_emulator/accounts        {"default": ID, "accounts": [ID...]}
    POST /_emulator/quotas          {"enabled", "create_qps", "read_qps", "write_qps", "style"} (all optional)
    POST /_emulator/sts             {"duration_seconds": N} -> {"access_key_id", "access_key_secret",
                                    "security_token", "expires_at", "principal"} (the default account's root)
    GET  /_emulator/tls             {"protocol", "handshakes", "handshake_delay_ms", "ca_file"}
    POST /_emulator/tls             {"handshake_delay_ms": N}: hold every TLS handshake N ms (0: none)
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .calllog import CallLog
from .clock import iso
from .faults import FaultRule
from .quota import THROTTLE_STYLES, QuotaSettings

if TYPE_CHECKING:
    from .server import Emulator

PREFIX = "/_emulator"


def admin_routes(emulator: Emulator) -> list[web.RouteDef]:
    async def health(_: web.Request) -> web.Response:
        return _ok({"status": "ok"})

    def call_log(log: CallLog, request: web.Request) -> web.Response:
        account = request.query.get("account")
        return _ok(
            {
                "counts": log.counts(account),
                "counts_by_access_key": log.counts_by_access_key(),
                "counts_by_account": log.counts_by_account(),
                "calls": [r.to_dict() for r in log.records() if account is None or r.account_id == account],
            }
        )

    async def calls(request: web.Request) -> web.Response:
        return call_log(emulator.calls, request)

    async def sts_calls(request: web.Request) -> web.Response:
        return call_log(emulator.sts_calls, request)

    async def accounts(_: web.Request) -> web.Response:
        return _ok({"default": emulator.config.account_id, "accounts": sorted(emulator.backends)})

    async def reset_calls(_: web.Request) -> web.Response:
        emulator.calls.reset()
        return _ok({})

    async def get_faults(_: web.Request) -> web.Response:
        return _ok({"faults": [rule.to_dict() for rule in emulator.faults.rules()]})

    async def post_faults(request: web.Request) -> web.Response:
        document = await _body(request)
        if document.pop("clear", False):
            emulator.faults.clear(document.get("action"))
            return _ok({})
        names = {f.name for f in dataclasses.fields(FaultRule)} - {"applied"}
        unknown = set(document) - names
        if unknown:
            raise _bad(f"unknown fault fields: {sorted(unknown)}")
        try:
            emulator.faults.add(FaultRule(**document))
        except (TypeError, ValueError) as error:
            raise _bad(str(error)) from None
        return _ok({})

    async def advance_clock(request: web.Request) -> web.Response:
        document = await _body(request)
        try:
            emulator.clock.advance(float(document.get("seconds", 0)))
        except (TypeError, ValueError) as error:
            raise _bad(str(error)) from None
        return _ok({"now": iso(emulator.clock.now())})

    async def get_clock(_: web.Request) -> web.Response:
        return _ok({"now": iso(emulator.clock.now()), "offset_seconds": emulator.clock.offset})

    async def keys(request: web.Request) -> web.Response:
        account = request.query.get("account") or emulator.config.account_id
        if account not in emulator.backends:
            raise _bad(f"unknown account {account}")
        return _ok({"keys": emulator.backends[account].snapshot()})

    async def quotas(request: web.Request) -> web.Response:
        document = await _body(request)
        current = emulator.quotas.settings
        try:
            settings = QuotaSettings(
                enabled=bool(document.get("enabled", current.enabled)),
                create_qps=float(document.get("create_qps", current.create_qps)),
                read_qps=float(document.get("read_qps", current.read_qps)),
                write_qps=float(document.get("write_qps", current.write_qps)),
                style=document.get("style", current.style),
            )
        except (TypeError, ValueError) as error:
            raise _bad(str(error)) from None
        if (
            settings.style not in THROTTLE_STYLES
            or min(settings.create_qps, settings.read_qps, settings.write_qps) <= 0
        ):
            raise _bad(f"style is one of {THROTTLE_STYLES}; every QPS is positive")
        emulator.quotas.configure(settings)
        return _ok(dataclasses.asdict(settings))

    async def sts(request: web.Request) -> web.Response:
        document = await _body(request)
        credential = emulator.credentials.issue_sts(float(document.get("duration_seconds", 3600)))
        return _ok(
            {
                "access_key_id": credential.access_key_id,
                "access_key_secret": credential.access_key_secret,
                "security_token": credential.security_token,
                "expires_at": credential.expires_at,
                "principal": credential.principal.to_dict() if credential.principal else None,
            }
        )

    async def get_tls(_: web.Request) -> web.Response:
        return _ok(
            {
                "protocol": emulator.protocol,
                "handshakes": emulator.handshakes.count,
                "handshake_delay_ms": emulator.handshakes.delay_ms,
                "ca_file": str(emulator.tls.ca_file) if emulator.tls else None,
            }
        )

    async def post_tls(request: web.Request) -> web.Response:
        document = await _body(request)
        try:
            emulator.handshakes.set_delay_ms(int(document.get("handshake_delay_ms", 0)))
        except (TypeError, ValueError) as error:
            raise _bad(str(error)) from None
        return _ok({"handshake_delay_ms": emulator.handshakes.delay_ms})

    return [
        web.get(f"{PREFIX}/health", health),
        web.get(f"{PREFIX}/calls", calls),
        web.get(f"{PREFIX}/sts-calls", sts_calls),
        web.get(f"{PREFIX}/accounts", accounts),
        web.post(f"{PREFIX}/reset-calls", reset_calls),
        web.get(f"{PREFIX}/faults", get_faults),
        web.post(f"{PREFIX}/faults", post_faults),
        web.post(f"{PREFIX}/clock/advance", advance_clock),
        web.get(f"{PREFIX}/clock", get_clock),
        web.get(f"{PREFIX}/keys", keys),
        web.post(f"{PREFIX}/quotas", quotas),
        web.post(f"{PREFIX}/sts", sts),
        web.get(f"{PREFIX}/tls", get_tls),
        web.post(f"{PREFIX}/tls", post_tls),
    ]


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise _bad("the body is not JSON") from None
    if not isinstance(document, dict):
        raise _bad("the body is a JSON object")
    return document


def _ok(document: dict[str, Any]) -> web.Response:
    return web.json_response(document)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")
