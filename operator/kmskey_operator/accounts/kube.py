"""What provider configs read from Kubernetes: Secrets by name, configs, namespace labels, tokens.

The I/O seam of the accounts package (tests run it against the real API server). Every read is by name
(`get`, never `list` or `watch`), which is what lets the chart grant Secret access only in the namespaces
where provider configs live. It goes through kube.py's KubeApi, the operator's one door to the API with
kopf's own connection; the tools (and the webhook-only process) give it one that logs in by itself.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from kmskey_operator import timestamps
from kmskey_operator.accounts.refs import ConfigKind, ConfigRef
from kmskey_operator.names import GROUP, VERSION

PLURALS = {ConfigKind.NAMESPACED: "kmsproviderconfigs", ConfigKind.CLUSTER: "clusterkmsproviderconfigs"}


class ReadError(Exception):
    """A read failed; `status` is the API server's HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterReader(Protocol):
    async def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes]: ...

    async def provider_config(self, ref: ConfigRef) -> Mapping[str, Any] | None:
        """The config's body as the API server has it now, or None if it does not exist."""
        ...

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...

    async def service_account_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        """A token of the ServiceAccount (TokenRequest) and when it expires (epoch seconds)."""
        ...


def config_path(ref: ConfigRef) -> str:
    plural = PLURALS[ref.kind]
    if ref.kind is ConfigKind.NAMESPACED:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(str(ref.namespace))}/{plural}/{quote(ref.name)}"
    return f"/apis/{GROUP}/{VERSION}/{plural}/{quote(ref.name)}"


class KubeReader:
    """ClusterReader (and config status writer) over a KubeApi."""

    def __init__(self, api: Any = None) -> None:
        self._api = api  # a kube.KubeApi; None: one that logs in by itself, on first use
        self._own = api is None
        self._loop: int | None = None

    def _kube(self) -> Any:
        loop = id(asyncio.get_running_loop())
        if self._own and self._loop != loop:
            self._api = None  # a KubeApi's session belongs to the event loop that opened it
            self._loop = loop
        if self._api is None:
            import kopf

            from kmskey_operator import login
            from kmskey_operator.kube import KubeApi

            settings = kopf.OperatorSettings()
            self._api = KubeApi(relogin=login.connection)
            self._api.use(login.connection(settings), settings)
        return self._api

    async def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes]:
        what = f"Secret {namespace}/{name}"
        body = await self._json("GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}", what)
        return {str(k): base64.b64decode(v) for k, v in (body.get("data") or {}).items()}

    async def provider_config(self, ref: ConfigRef) -> Mapping[str, Any] | None:
        try:
            return await self._json("GET", config_path(ref), ref.describe())
        except ReadError as error:
            if error.status == 404:
                return None
            raise

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        body = await self._json("GET", f"/api/v1/namespaces/{quote(namespace)}", f"Namespace {namespace}")
        return dict((body.get("metadata") or {}).get("labels") or {})

    async def service_account_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        }
        path = f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts/{quote(name)}/token"
        body = await self._json("POST", path, f"a token of ServiceAccount {namespace}/{name}", request)
        status = body.get("status") or {}
        expires = timestamps.epoch(status.get("expirationTimestamp")) or time.time() + seconds
        return str(status.get("token") or ""), expires

    async def patch_status(self, ref: ConfigRef, patch: Mapping[str, Any]) -> None:
        """Merge-patch the config's status subresource."""
        await self._json(
            "PATCH", config_path(ref) + "/status", ref.describe(), patch, "application/merge-patch+json"
        )

    async def aclose(self) -> None:
        """Close the connection to the API server (a tool's run is over)."""
        if self._api is not None:
            await self._api.close()

    async def _json(
        self,
        method: str,
        path: str,
        what: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        from kmskey_operator.kube import KubeApiError

        try:
            answer: dict[str, Any] = await self._kube().request(
                method, path, None if body is None else dict(body), content_type=content_type
            )
        except KubeApiError as error:
            raise ReadError(_explain(what, error.status, str(error)), error.status or None) from None
        except Exception as error:  # no credentials at all (kopf.LoginError), a malformed kubeconfig
            raise ReadError(f"reading {what}: {type(error).__name__}: {error}") from None
        return answer


def _explain(what: str, status: int | None, reason: str) -> str:
    if status == 404:
        return f"{what} does not exist"
    if status == 403:
        return (
            f"the operator may not read {what} (RBAC: the chart grants Secrets and ServiceAccount tokens "
            "only in the namespaces of providerConfigs.namespaces)"
        )
    return f"reading {what}: {reason}"
