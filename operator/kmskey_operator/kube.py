"""The operator process's own door to the Kubernetes API: kopf's connection, one aiohttp session, a few calls.

kopf talks to the API for what it does itself (watching, the patches of its handlers, Events). What the
operator writes outside a kopf handler goes through here, and only here: the status a drift check finds,
and the webhook's ValidatingWebhookConfiguration. The connection is kopf's own: login.py's login handler
hands every ConnectionInfo it finds to `KubeApi.use`, so kopf and this module use the same credentials and
neither needs the `kubernetes` package. When the API answers 401 (a rotated token) a request logs in again
once, with login.py's `connection`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30.0
WEBHOOK_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


class KubeApiError(RuntimeError):
    """The API server refused a request; `status` is its HTTP status (0: it could not be reached)."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}".strip())
        self.status = status


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """Where a namespaced custom object lives in the API."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str

    def path(self, subresource: str | None = None) -> str:
        path = f"/apis/{self.group}/{self.version}/namespaces/{self.namespace}/{self.plural}/{self.name}"
        return f"{path}/{subresource}" if subresource else path


class KubeApi:
    """One session to the API server with kopf's credentials; created lazily in the running loop."""

    def __init__(self, relogin: Callable[[kopf.OperatorSettings], kopf.ConnectionInfo] | None = None) -> None:
        self._relogin = relogin
        self._info: kopf.ConnectionInfo | None = None
        self._settings: kopf.OperatorSettings | None = None
        self._session: aiohttp.ClientSession | None = None
        self._session_info: kopf.ConnectionInfo | None = None

    def use(self, info: kopf.ConnectionInfo, settings: kopf.OperatorSettings | None = None) -> None:
        """The connection to use from now on (kopf's login handler calls this, maybe from a thread)."""
        self._info = info
        if settings is not None:
            self._settings = settings

    async def _open(self) -> aiohttp.ClientSession:
        info = self._info
        if info is None:
            raise KubeApiError("", "", 0, "not logged in to the Kubernetes API yet")
        if self._session is None or self._session.closed or self._session_info is not info:
            if self._session is not None:
                await self._session.close()
            self._session_info = info
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/") + "/",
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=16),
                headers={**info.as_http_headers(), "User-Agent": "kmskey-operator"},
                proxy=info.proxy_url,
                trust_env=info.trust_env,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- requests

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API request; the decoded JSON answer, or KubeApiError. A 401 logs in again, once."""
        for attempt in range(2):
            session = await self._open()
            try:
                async with session.request(
                    method,
                    path.lstrip("/"),
                    data=None if body is None else json.dumps(body, separators=(",", ":")),
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                ) as response:
                    text = await response.text()
                    if response.status == 401 and attempt == 0 and self._can_relogin():
                        await self._login_again()
                        continue
                    if response.status >= 400:
                        raise KubeApiError(method, path, response.status, _message(text))
                    answer = json.loads(text) if text else {}
                    return answer if isinstance(answer, dict) else {}
            except (aiohttp.ClientError, TimeoutError) as error:
                raise KubeApiError(method, path, 0, f"{type(error).__name__}: {error}") from None
        raise KubeApiError(method, path, 401, "Unauthorized (after logging in again)")

    def _can_relogin(self) -> bool:
        return self._relogin is not None and self._settings is not None

    async def _login_again(self) -> None:
        relogin, settings = self._relogin, self._settings
        if relogin is None or settings is None:
            return
        # It reads files (a token) and may start an exec plugin: off the event loop.
        self.use(await asyncio.to_thread(relogin, settings))

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        return await self.request("GET", ref.path())

    async def patch_status(
        self, ref: ObjectRef, status: Mapping[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        """Merge-patch `status`; with `resource_version`, only if the object is still at that version.

        A changed object answers 409 (KubeApiError.status).
        """
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.request(
            "PATCH", ref.path("status"), patch, content_type="application/merge-patch+json"
        )

    async def apply_webhook_configuration(self, configuration: Mapping[str, Any]) -> None:
        """Create the ValidatingWebhookConfiguration, or replace the one there (the operator owns it)."""
        name = configuration["metadata"]["name"]
        for _attempt in range(5):
            try:
                await self.request("POST", WEBHOOK_CONFIGURATIONS, configuration)
                logger.info("Created ValidatingWebhookConfiguration %s", name)
                return
            except KubeApiError as error:
                if error.status != 409:
                    raise
            try:
                current = await self.request("GET", f"{WEBHOOK_CONFIGURATIONS}/{name}")
                body = {**configuration, "metadata": {**configuration["metadata"]}}
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self.request("PUT", f"{WEBHOOK_CONFIGURATIONS}/{name}", body)
                logger.info("Updated ValidatingWebhookConfiguration %s", name)
                return
            except KubeApiError as error:
                if error.status not in (404, 409):  # deleted or changed meanwhile: try again
                    raise
        raise RuntimeError(f"could not write ValidatingWebhookConfiguration {name}: it kept changing")

    async def delete_webhook_configuration(self, name: str) -> None:
        try:
            await self.request("DELETE", f"{WEBHOOK_CONFIGURATIONS}/{name}")
            logger.info("Deleted ValidatingWebhookConfiguration %s", name)
        except KubeApiError as error:
            if error.status != 404:
                logger.warning("Could not delete ValidatingWebhookConfiguration %s: %s", name, error)


def _message(text: str) -> str:
    """The `message` of a Kubernetes Status answer, else the text itself (shortened)."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(answer, dict) and answer.get("message"):
        return str(answer["message"])
    return text[:300]
