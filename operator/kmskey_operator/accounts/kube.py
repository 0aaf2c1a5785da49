"""What provider configs read from Kubernetes: Secrets by name, namespace labels, ServiceAccount tokens.

The I/O seam of the accounts package (tests run it against the real API server). Every read is by name
(`get`, never `list` or `watch`), which is what lets the chart grant Secret access only in the namespaces
where provider configs live. The blocking client runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol


class ReadError(Exception):
    """A read failed; `status` is the API server's HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterReader(Protocol):
    async def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes]: ...

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...

    async def service_account_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        """A token of the ServiceAccount (TokenRequest) and when it expires (epoch seconds)."""
        ...


class KubeReader:
    """ClusterReader over the official Kubernetes client (kubeconfig, else in-cluster configuration)."""

    def __init__(self, api_client: Any = None) -> None:
        self._api_client = api_client

    def _core(self) -> Any:
        from kubernetes import client, config

        if self._api_client is None:
            loader: Any = config
            configuration = client.Configuration()
            try:
                loader.load_incluster_config(client_configuration=configuration)
            except loader.ConfigException:
                # KUBECONFIG is read here: the library reads it only when it is first imported.
                path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
                loader.load_kube_config(config_file=path, client_configuration=configuration)
            self._api_client = client.ApiClient(configuration)
        return client.CoreV1Api(self._api_client)

    async def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes]:
        secret = await self._call(
            f"Secret {namespace}/{name}", lambda core: core.read_namespaced_secret(name, namespace)
        )
        data = secret.data or {}
        return {str(k): base64.b64decode(v) for k, v in data.items()}

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        found = await self._call(f"Namespace {namespace}", lambda core: core.read_namespace(namespace))
        return dict(found.metadata.labels or {})

    async def service_account_token(
        self, namespace: str, name: str, *, audience: str, seconds: int
    ) -> tuple[str, float]:
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        }
        answer = await self._call(
            f"a token of ServiceAccount {namespace}/{name}",
            lambda core: core.create_namespaced_service_account_token(name, namespace, request),
        )
        expires = answer.status.expiration_timestamp
        return str(answer.status.token), expires.timestamp() if expires else time.time() + seconds

    async def _call(self, what: str, action: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        def run() -> Any:
            return action(self._core())

        try:
            return await asyncio.to_thread(run)
        except ApiException as error:
            raise ReadError(_explain(what, error.status, str(error.reason)), error.status) from None
        except Exception as error:  # connection refused, timeouts, configuration
            raise ReadError(f"reading {what}: {type(error).__name__}: {error}") from None


def _explain(what: str, status: int | None, reason: str) -> str:
    if status == 404:
        return f"{what} does not exist"
    if status == 403:
        return (
            f"the operator may not read {what} (RBAC: the chart grants Secrets and ServiceAccount tokens "
            "only in the namespaces of providerConfigs.namespaces)"
        )
    return f"reading {what}: HTTP {status} {reason}"
