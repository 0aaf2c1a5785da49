"""A small, fast Kubernetes client for chaos tests: one HTTPS request per call, no kubectl subprocess.

Chaos scenarios poll dozens of KmsKeys many times; a kubectl process per poll would cost more CPU than the
operator under test on a 2-core machine. Everything goes to the local API server on 127.0.0.1 as admin.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from tests.harness.controlplane import LOOPBACK, ControlPlane

GROUP_PATH = "/apis/kms.alicloud.dev/v1alpha1"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {body[:800]!r}")


class Kube:
    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self._context = control_plane.ssl_context()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            LOOPBACK, self.control_plane.apiserver_port, context=self._context, timeout=timeout
        )
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        status, data = self.request(method, path, body, content_type=content_type)
        if status >= 300:
            raise ApiError(method, path, status, data)
        return json.loads(data) if data else None

    # --- KmsKeys

    @staticmethod
    def path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
        base = f"{GROUP_PATH}/namespaces/{namespace}/kmskeys"
        if name is not None:
            base += f"/{name}"
        if sub is not None:
            base += f"/{sub}"
        return base

    @staticmethod
    def manifest(namespace: str, name: str, spec: Any, **metadata: Any) -> dict[str, Any]:
        return {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": name, "namespace": namespace, **metadata},
            "spec": spec,
        }

    def create(self, namespace: str, name: str, spec: Any, **metadata: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", self.path(namespace), self.manifest(namespace, name, spec, **metadata)
        )
        return result

    def try_create(self, namespace: str, name: str, spec: Any) -> tuple[int, bytes]:
        """POST without raising: (HTTP status, body), for admission tests."""
        return self.request("POST", self.path(namespace), self.manifest(namespace, name, spec))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", self.path(namespace, name))
        return result

    def list(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.call("GET", self.path(namespace))["items"])

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "PATCH", self.path(namespace, name), {"spec": spec}, content_type=MERGE_PATCH
        )
        return result

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "PATCH", self.path(namespace, name, "status"), {"status": status}, content_type=MERGE_PATCH
        )
        return result

    def delete(self, namespace: str, name: str) -> None:
        self.call("DELETE", self.path(namespace, name))

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/v1/namespaces/{namespace}/events")["items"])


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for entry in body.get("status", {}).get("conditions", []) or []:
        if entry.get("type") == type_:
            return dict(entry)
    return {}


def is_ready(body: dict[str, Any]) -> bool:
    """Ready=True and Synced=True for the current generation."""
    return (
        condition(body, "Ready").get("status") == "True"
        and condition(body, "Synced").get("status") == "True"
        and body.get("status", {}).get("observedGeneration") == body["metadata"].get("generation")
    )


def poll(
    probe: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Call `probe` until it returns something truthy; AssertionError naming `what` after `timeout`.

    Connection errors count as "not yet" (the API server may be restarting).
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, http.client.HTTPException, ApiError) as error:
            last_error = repr(error)[:300]
        if time.monotonic() >= deadline:
            detail = describe() if describe is not None else ""
            raise AssertionError(f"{what}: not reached in {timeout:.0f}s {last_error}\n{detail}")
        time.sleep(interval)


def wait_all_ready(
    kube: Kube, namespace: str, names: Iterable[str], *, timeout: float
) -> dict[str, dict[str, Any]]:
    """Wait until every named KmsKey is Ready for its generation; returns the bodies by name."""
    wanted = set(names)
    latest: dict[str, dict[str, Any]] = {}

    def probe() -> dict[str, dict[str, Any]] | None:
        latest.clear()
        latest.update({b["metadata"]["name"]: b for b in kube.list(namespace)})
        if all(name in latest and is_ready(latest[name]) for name in wanted):
            return {name: latest[name] for name in wanted}
        return None

    def describe() -> str:
        lines = []
        for name in sorted(wanted):
            body = latest.get(name)
            if body is None:
                lines.append(f"  {name}: missing")
            elif not is_ready(body):
                ready, synced = condition(body, "Ready"), condition(body, "Synced")
                lines.append(
                    f"  {name}: Ready={ready.get('status')}/{ready.get('reason')} "
                    f"Synced={synced.get('status')}/{synced.get('reason')}: {synced.get('message', '')[:200]}"
                )
        return "not ready:\n" + "\n".join(lines[:20])

    result: dict[str, dict[str, Any]] = poll(
        probe, timeout=timeout, what=f"{len(wanted)} KmsKeys Ready in {namespace}", describe=describe
    )
    return result
