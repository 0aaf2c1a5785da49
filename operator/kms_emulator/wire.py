"""The KMS OpenAPI wire protocol (reference §1, §6): routing, authentication, quotas, faults, JSON bodies.

A request goes through, in order: path and method -> action and version -> signature -> quota -> injected
faults -> the action. Each step can end it with the standard error body
`{RequestId, HostId, Code, Message, Recommend}`; every answer is a JSON object with
`Content-Type: application/json;charset=utf-8`, so the SDK can always parse it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from . import errors
from .actions import ACTIONS
from .calllog import CallRecord
from .errors import KmsError
from .params import Params
from .signing import V1_COMMON_PARAMETERS, IncomingRequest

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
        if version != API_VERSION:
            raise errors.invalid_version()
        action = ACTIONS.get(action_name)
        if action is None:
            raise errors.invalid_action()

        credential = self.emulator.verifier.verify(
            IncomingRequest(
                method=request.method,
                path=request.path,
                query=query,
                form=form,
                headers=lambda name: headers.getall(name, []),
                body=body,
            )
        )
        api_params = {k: v for k, v in merged.items() if k not in V1_COMMON_PARAMETERS or k == "RegionId"}
        if "RegionId" in api_params and action.name not in _REGION_ID_ACTIONS:
            del api_params["RegionId"]  # a v1 common parameter for every other action

        # Emulator choice: quota and faults come after authentication, so throttled and injected failures are
        # logged KMS calls, and an injected error never runs the action (state is left unchanged).
        status, code = 200, None
        try:
            wait_ms = self.emulator.quotas.acquire(
                self.emulator.config.account_id, self.emulator.config.region_id, action.quota_class
            )
            if wait_ms:
                raise errors.throttling(self.emulator.quotas.settings.style, wait_ms)
            decision = self.emulator.faults.decide(action.name)
            if decision is not None:
                if decision.latency_ms:
                    await asyncio.sleep(decision.latency_ms / 1000)
                if decision.drop_connection:
                    status, code = 0, "ConnectionDropped"
                    return _drop(request)
                if decision.error is not None:
                    rule = decision.error
                    extra = {"x-acs-retry-after": str(rule.retry_after_ms)} if rule.retry_after_ms else None
                    raise KmsError(rule.code or "InternalFailure", rule.message, rule.status, extra)
            result = action.handler(self.emulator.backend, Params(api_params))
            if decision is not None and decision.latency_after_ms:
                await asyncio.sleep(decision.latency_after_ms / 1000)
            if decision is not None and decision.drop_after:
                status, code = 0, "ConnectionDropped"
                return _drop(request)
        except KmsError as error:
            status, code = error.http_status, error.code
            raise
        except Exception:
            status, code = 500, "InternalFailure"
            raise
        finally:
            self.emulator.calls.record(
                CallRecord(action.name, credential.access_key_id, api_params, status, code, time.time())
            )
        result["RequestId"] = request_id
        return _json(200, result, request_id)

    def error_response(self, error: KmsError, request_id: str) -> web.Response:
        body = {
            "RequestId": request_id,
            "HostId": self.emulator.host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": (
                f"https://api.aliyun.com/troubleshoot?q={quote(error.code)}&product=Kms&requestId={request_id}"
            ),
        }
        return _json(error.http_status, body, request_id, error.headers)


# Actions whose API parameters include RegionId (the batch tag family); for the others it is a v1 common one.
_REGION_ID_ACTIONS = frozenset({"TagResources", "UntagResources", "ListTagResources"})


def _json(
    status: int, body: dict[str, Any], request_id: str, extra: dict[str, str] | None = None
) -> web.Response:
    headers = {"Content-Type": JSON_CONTENT_TYPE, "x-acs-request-id": request_id}
    if extra:
        headers.update(extra)
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering: the client sees a reset, as on a network failure."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    response = web.Response(status=500)
    response.force_close()
    return response
