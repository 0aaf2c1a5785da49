"""The OpenAPI wire protocol (reference §1, §6): routing, authentication, quotas, faults, JSON bodies.

A request goes through, in order: path and method -> action and version -> signature -> quota -> injected
faults -> the action. Each step can end it with the standard error body
`{RequestId, HostId, Code, Message, Recommend}`; every answer is a JSON object with
`Content-Type: application/json;charset=utf-8`, so the SDK can always parse it.

Two products share the listener, told apart by their API version as the POP gateway tells them apart by
host: KMS (2016-01-20) and STS (2015-04-01). A KMS call acts on the keys, quotas and call log of the account
its credential belongs to; STS calls have no quota and go to their own call log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from . import errors, sts
from .actions import ACTIONS
from .calllog import CallRecord
from .errors import KmsError
from .params import Params
from .signing import V1_COMMON_PARAMETERS, IncomingRequest
from .sts_actions import STS_ACTIONS

if TYPE_CHECKING:
    from .server import Emulator

API_VERSION = "2016-01-20"
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
log = logging.getLogger(__name__)


class KmsApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4()).upper()
        try:
            return await self._handle(request, request_id)
        except KmsError as error:
            return self.error_response(error, request_id)
        except Exception:  # a bug of ours still answers in a shape the SDK can parse
            log.exception("internal error serving %s", request.path_qs[:200])
            return self.error_response(errors.internal_failure(), request_id)

    async def _handle(self, request: web.Request, request_id: str) -> web.StreamResponse:
        if request.path != "/" or request.method not in ("GET", "POST"):
            raise errors.invalid_action()
        body = await request.read()
        query = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        form: list[tuple[str, str]] = []
        if request.content_type == "application/x-www-form-urlencoded" and body:
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        merged = dict(query)
        merged.update(form)

        headers = request.headers
        action_name = headers.get("x-acs-action") or merged.get("Action")
        version = headers.get("x-acs-version") or merged.get("Version")
        if not action_name:
            raise errors.missing_parameter("Action")
        if not version:
            raise errors.missing_parameter("Version")
        incoming = IncomingRequest(
            method=request.method,
            path=request.path,
            query=query,
            form=form,
            headers=lambda name: headers.getall(name, []),
            body=body,
        )
        if version == sts.API_VERSION:
            return await self._sts(request, request_id, action_name, incoming, merged)
        if version != API_VERSION:
            raise errors.invalid_version()
        action = ACTIONS.get(action_name)
        if action is None:
            raise errors.invalid_action()

        credential = self.emulator.verifier.verify(incoming)
        account_id = credential.account_id or self.emulator.directory.default_account_id
        api_params = {k: v for k, v in merged.items() if k not in V1_COMMON_PARAMETERS or k == "RegionId"}
        if "RegionId" in api_params and action.name not in _REGION_ID_ACTIONS:
            del api_params["RegionId"]  # a v1 common parameter for every other action

        # Emulator choice: quota and faults come after authentication, so throttled and injected failures are
        # logged KMS calls, and an injected error never runs the action (state is left unchanged).
        status, code = 200, None
        try:
            wait_ms = self.emulator.quotas.acquire(
                account_id, self.emulator.config.region_id, action.quota_class
            )
            if wait_ms:
                raise errors.throttling(self.emulator.quotas.settings.style, wait_ms)
            backend = self.emulator.backend_for(account_id)
            result = await _with_faults(
                self.emulator, request, action.name, lambda: action.handler(backend, Params(api_params))
            )
            if result is None:
                status, code = 0, "ConnectionDropped"
                return _dropped_response()
        except KmsError as error:
            status, code = error.http_status, error.code
            raise
        except Exception:
            status, code = 500, "InternalFailure"
            raise
        finally:
            self.emulator.calls.record(
                CallRecord(
                    action.name, credential.access_key_id, api_params, status, code, time.time(), account_id
                )
            )
        result["RequestId"] = request_id
        return _json(200, result, request_id)

    async def _sts(
        self,
        request: web.Request,
        request_id: str,
        action_name: str,
        incoming: IncomingRequest,
        merged: dict[str, str],
    ) -> web.StreamResponse:
        try:
            return await self._sts_call(request, request_id, action_name, incoming, merged)
        except KmsError as error:
            return self.error_response(error, request_id, sts_error=True)

    async def _sts_call(
        self,
        request: web.Request,
        request_id: str,
        action_name: str,
        incoming: IncomingRequest,
        merged: dict[str, str],
    ) -> web.StreamResponse:
        action = STS_ACTIONS.get(action_name)
        if action is None:
            raise errors.invalid_action()
        caller = None
        access_key_id = ""
        if action.signed:
            try:
                credential = self.emulator.verifier.verify(incoming)
            except KmsError as error:
                # Refused credentials are logged STS calls too (with their code), so tests can count
                # how often a client retries with them.
                self.emulator.sts_calls.record(
                    CallRecord(
                        action.name,
                        merged.get("AccessKeyId", ""),
                        {},
                        error.http_status,
                        error.code,
                        time.time(),
                        "",
                    )
                )
                raise
            caller = credential.principal or self.emulator.credentials.default_principal
            access_key_id = credential.access_key_id
        api_params = {k: v for k, v in merged.items() if k not in V1_COMMON_PARAMETERS}
        status, code, account_id = 200, None, caller.account_id if caller else ""
        try:
            result = await _with_faults(
                self.emulator,
                request,
                action.name,
                lambda: action.handler(self.emulator.sts, caller, Params(api_params)),
            )
            if result is None:
                status, code = 0, "ConnectionDropped"
                return _dropped_response()
            arn = str(result.get("AssumedRoleUser", {}).get("Arn", ""))
            account_id = arn.split(":")[3] if arn.count(":") >= 4 else account_id
        except KmsError as error:
            status, code = error.http_status, error.code
            raise
        except Exception:
            status, code = 500, "InternalFailure"
            raise
        finally:
            # Never the token or the returned secrets: only what identifies the call.
            logged = {k: v for k, v in api_params.items() if k not in ("OIDCToken", "Policy")}
            self.emulator.sts_calls.record(
                CallRecord(action.name, access_key_id, logged, status, code, time.time(), account_id)
            )
        result["RequestId"] = request_id
        return _json(200, result, request_id)

    def error_response(self, error: KmsError, request_id: str, *, sts_error: bool = False) -> web.Response:
        product = "Sts" if sts_error else "Kms"
        body = {
            "RequestId": request_id,
            "HostId": sts.HOST_ID if sts_error else self.emulator.host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": (
                f"https://api.aliyun.com/troubleshoot?q={quote(error.code)}&product={product}"
                f"&requestId={request_id}"
            ),
        }
        return _json(error.http_status, body, request_id, error.headers)


async def _with_faults(
    emulator: Emulator, request: web.Request, action: str, run: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    """Run the action under the injected faults; None when the connection was dropped (and aborted)."""
    decision = emulator.faults.decide(action)
    if decision is not None:
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop_connection:
            _abort(request)
            return None
        if decision.error is not None:
            rule = decision.error
            extra = {"x-acs-retry-after": str(rule.retry_after_ms)} if rule.retry_after_ms else None
            raise KmsError(rule.code or "InternalFailure", rule.message, rule.status, extra)
    result = run()
    if decision is not None and decision.latency_after_ms:
        await asyncio.sleep(decision.latency_after_ms / 1000)
    if decision is not None and decision.drop_after:
        _abort(request)
        return None
    return result


# Actions whose API parameters include RegionId (the batch tag family); for the others it is a v1 common one.
_REGION_ID_ACTIONS = frozenset({"TagResources", "UntagResources", "ListTagResources"})


def _json(
    status: int, body: dict[str, Any], request_id: str, extra: dict[str, str] | None = None
) -> web.Response:
    headers = {"Content-Type": JSON_CONTENT_TYPE, "x-acs-request-id": request_id}
    if extra:
        headers.update(extra)
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


def _abort(request: web.Request) -> None:
    """Close the connection without answering: the client sees a reset, as on a network failure."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _dropped_response() -> web.StreamResponse:
    response = web.Response(status=500)  # never reaches the client: its connection is gone
    response.force_close()
    return response
