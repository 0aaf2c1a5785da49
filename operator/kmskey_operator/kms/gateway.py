"""The one module that imports the Alibaba Cloud KMS SDK.

Everything else speaks `KmsCall` (an action name and wire parameters) and gets back plain dicts or
`KeyMetadata`. The SDK's blocking methods are used, each run by the transport (kms/transport.py: worker
threads over the SDK's pooled HTTPS path, never on the event loop); its exceptions become `KmsError` here and
nowhere else. Every call first takes a token from the shared rate limiter and is reported to an observer
(metrics and logs), so every KMS call the operator makes is counted in one place.

One SDK client per (credentials, endpoint): clients of one endpoint share its TLS context and connections,
whatever their credentials, because the SDK pools by endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as SdkClient
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.exceptions import ResponseException

from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.ratelimit import RateLimiter
from kmskey_operator.kms.transport import CallPool, first_call_alone
from kmskey_operator.kms.types import KeyMetadata, KmsCall
from kmskey_operator.settings import Settings

logger = logging.getLogger(__name__)

READ_ONLY_ACTIONS = frozenset(
    {"DescribeKey", "ListKeys", "GetKeyPolicy", "ListTagResources", "ListResourceTags", "DescribeRegions"}
)


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """What an observer learns about each KMS call (never parameters: they may hold a policy)."""

    action: str
    region_id: str
    result: str  # "Success" or the KMS error code
    seconds: float
    throttle_wait_seconds: float


CallObserver = Callable[[CallRecord], None]


def _snake(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


class KmsGateway:
    """Async access to KMS in every region served; one SDK client per (credentials, endpoint)."""

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
        observer: CallObserver | None = None,
        credential: Any = None,
        calls: CallPool | None = None,
    ) -> None:
        self._settings = settings
        self._limiter = limiter or RateLimiter(settings.create_qps, settings.read_qps, settings.write_qps)
        self._observer = observer
        self._credential = credential
        self._calls = calls or CallPool.shared(settings.kms_max_connections)
        self._clients: dict[tuple[int, str], SdkClient] = {}

    @property
    def queued_calls(self) -> int:
        """KMS calls waiting on the client-side rate limiter now."""
        return self._limiter.waiting

    @property
    def limiter(self) -> RateLimiter:
        """The client-side rate limiter every call of this gateway waits on (one per account)."""
        return self._limiter

    @property
    def credential(self) -> Any:
        """The credentials client this gateway signs with (the standard chain unless one was given)."""
        if self._credential is None:
            # The standard chain: env access keys, STS token, RRSA OIDC, credentials file, ECS role. Its
            # refreshes run inside SDK calls, so in the transport's threads, under the chain's own lock.
            self._credential = CredentialClient()
        return self._credential

    def _client(self, region_id: str) -> SdkClient:
        credential = self.credential
        endpoint = self._settings.endpoint_for(region_id)
        key = (id(credential), endpoint)
        client = self._clients.get(key)
        if client is None:
            config = Config(
                credential=credential,
                endpoint=endpoint,
                protocol=self._settings.kms_protocol,
                # Added to the trust of the SDK's TLS context for this endpoint (system roots + certifi).
                ca=self._settings.kms_ca_bundle,
                region_id=region_id,
                connect_timeout=self._settings.kms_connect_timeout_ms,
                read_timeout=self._settings.kms_read_timeout_ms,
                # The endpoint's connection pool holds as many connections as calls can run at once.
                max_idle_conns=self._calls.size,
                user_agent="kmskey-operator",
            )
            client = self._clients[key] = SdkClient(config)
        return client

    async def call(self, region_id: str, call: KmsCall) -> dict[str, Any]:
        """Run one KMS action; returns the response body as wire-named dict, or raises KmsError.

        A transient failure (throttling, 5xx, network) is retried here a few times with a short pause
        (at least KMS's retry-after), so one lost call does not cost a whole reconcile and its backoff.
        CreateKey is repeated only after throttling, which KMS refuses before doing anything: after a
        5xx or a lost answer the key may exist, and only the ownership-tag lookup may decide that.
        """
        retries = self._settings.kms_call_retries
        for attempt in range(retries + 1):
            try:
                return await self._call_once(region_id, call)
            except KmsError as error:
                pause = _retry_pause(attempt, error.retry_after_seconds)
                if attempt == retries or pause is None or not _safe_to_repeat(call.action, error):
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _call_once(self, region_id: str, call: KmsCall) -> dict[str, Any]:
        waited = await self._limiter.acquire(region_id, call.action)
        started = time.monotonic()
        result = "Success"
        try:
            request = getattr(kms_models, f"{call.action}Request")().from_map(dict(call.params))
            method = getattr(self._client(region_id), _snake(call.action))  # the SDK's blocking method
            # The SDK's session key: one session (TLS context, connection pool) per endpoint and pool size.
            session = (
                f"{self._settings.kms_protocol}://{self._settings.endpoint_for(region_id)}/{self._calls.size}"
            )
            response = await self._calls.run(lambda: first_call_alone(session, lambda: method(request)))
            body: dict[str, Any] = response.body.to_map() if response.body is not None else {}
            return body
        except Exception as exc:
            failure = exc if isinstance(exc, KmsError) else _to_kms_error(call.action, exc)
            result = failure.code
            if failure is exc:
                raise
            raise failure from None
        finally:
            if self._observer is not None:
                self._observer(CallRecord(call.action, region_id, result, time.monotonic() - started, waited))

    # --- the reads the reconciler needs, typed ---

    async def describe_key(self, region_id: str, key_id: str) -> KeyMetadata:
        body = await self.call(region_id, KmsCall("DescribeKey", {"KeyId": key_id}))
        return KeyMetadata.from_wire(body.get("KeyMetadata") or {})

    async def get_key_policy(self, region_id: str, key_id: str) -> str | None:
        try:
            body = await self.call(
                region_id, KmsCall("GetKeyPolicy", {"KeyId": key_id, "PolicyName": "default"})
            )
        except KmsError as error:
            if error.code == "Forbidden.ResourceNotFound":  # Terraform's reading: no policy
                return None
            raise
        policy = body.get("Policy")
        return policy if isinstance(policy, str) else None

    async def list_key_tags(self, region_id: str, key_id: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"RegionId": region_id, "ResourceType": "key", "ResourceId": [key_id]}
            if token:
                params["NextToken"] = token
            body = await self.call(region_id, KmsCall("ListTagResources", params))
            for row in (body.get("TagResources") or {}).get("TagResource") or []:
                if row.get("ResourceId") in (None, key_id) and row.get("TagKey") is not None:
                    tags[str(row["TagKey"])] = str(row.get("TagValue") or "")
            token = body.get("NextToken") or None
            if not token:
                return tags

    async def find_keys_by_tag(self, region_id: str, tag_key: str, tag_value: str) -> list[str]:
        """Key IDs carrying tag_key=tag_value (ListKeys with TagKey/TagValue filters), all pages."""
        return await self.list_keys(region_id, {"TagKey": [tag_key], "TagValue": [tag_value]})

    async def list_keys(self, region_id: str, filters: Mapping[str, Sequence[str]]) -> list[str]:
        """Key IDs matching ListKeys `Filters` (name -> values, OR-ed per name, AND-ed across), all pages."""
        params: dict[str, Any] = {"PageSize": 100}
        if filters:
            params["Filters"] = json.dumps([{"Key": k, "Values": list(v)} for k, v in filters.items()])
        found: list[str] = []
        page = 1
        while True:
            body = await self.call(region_id, KmsCall("ListKeys", {**params, "PageNumber": page}))
            rows = (body.get("Keys") or {}).get("Key") or []
            found.extend(str(row["KeyId"]) for row in rows if row.get("KeyId"))
            total = int(body.get("TotalCount") or 0)
            if not rows or page * 100 >= total:
                return found
            page += 1

    async def create_key(self, region_id: str, params: Mapping[str, Any]) -> KeyMetadata:
        body = await self.call(region_id, KmsCall("CreateKey", params))
        return KeyMetadata.from_wire(body.get("KeyMetadata") or {})


IN_CALL_PAUSE_CAP_SECONDS = 5.0


def _safe_to_repeat(action: str, error: KmsError) -> bool:
    if error.kind is not ErrorKind.RETRY:
        return False
    return action != "CreateKey" or error.is_throttling


def _retry_pause(attempt: int, retry_after: float | None) -> float | None:
    """Seconds to wait before repeating a call, or None when KMS asks for longer than we wait in-call."""
    pause = max(retry_after or 0.0, 0.2 * (2**attempt) * random.uniform(0.5, 1.0))
    return pause if pause <= IN_CALL_PAUSE_CAP_SECONDS else None


def _to_kms_error(action: str, exc: Exception) -> KmsError:
    """Turn any SDK or transport failure into a KmsError; the one place that knows SDK exceptions."""
    if isinstance(exc, ResponseException):
        data: Mapping[str, Any] = getattr(exc, "data", None) or {}
        status = getattr(exc, "status_code", None) or data.get("statusCode")
        retry_after_ms = getattr(exc, "retry_after", None)
        return KmsError(
            action,
            str(getattr(exc, "code", None) or data.get("Code") or "UnknownError"),
            str(data.get("Message") or getattr(exc, "message", "") or ""),
            http_status=int(status) if status is not None else None,
            request_id=getattr(exc, "request_id", None) or data.get("RequestId"),
            retry_after_seconds=retry_after_ms / 1000.0 if retry_after_ms else None,
        )
    # The SDK wraps failures that happen before any HTTP answer (credentials, network) in
    # UnretryableException; what happened is its inner exception.
    inner = getattr(exc, "inner_exception", None) or exc
    if isinstance(inner, CredentialException) or isinstance(exc, CredentialException):
        return KmsError(action, "InvalidCredentials", f"no usable Alibaba Cloud credentials: {inner}")
    code = getattr(exc, "code", None)
    if code:  # TeaException without an HTTP response, e.g. no credentials configured at all
        return KmsError(action, str(code), str(getattr(exc, "message", "") or exc))
    # Connection refused, timeouts, dropped connections: worth a retry.
    return KmsError(action, "NetworkError", f"{type(inner).__name__}: {inner}")
