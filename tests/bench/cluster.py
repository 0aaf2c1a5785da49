"""The benchmark's side of the Kubernetes API: bulk creates, dry-run admission timing, and a Ready watcher.

Everything goes through the official Python client (one connection pool, no kubectl processes), so the
harness costs little CPU next to the kube-apiserver, etcd, the operator and the emulator it measures.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kmskey_operator import names

API_VERSION = f"{names.GROUP}/{names.VERSION}"


def api_client(kubeconfig: Path, pool_size: int = 16) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.proxy = None  # 127.0.0.1 only
    return client.ApiClient(configuration)


def kmskey(
    name: str, spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": API_VERSION, "kind": names.KIND, "metadata": metadata, "spec": dict(spec)}


class Kubectl(Protocol):
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


def apply_crds(plane: Kubectl, paths: Iterable[Path], timeout: float = 60.0) -> None:
    """Server-side apply CRD manifests, then wait until each is Established.

    `kubectl wait` fails at once ("<nil> is of the type <nil>") when it reads a CRD before the API server
    wrote its first status, so the wait is repeated until it succeeds or `timeout` passes.
    """
    files = [str(p) for p in paths]
    for path in files:
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    deadline = time.monotonic() + timeout
    for path in files:
        while True:
            left = max(1, int(deadline - time.monotonic()))
            waited = plane.kubectl(
                "wait", "--for=condition=Established", "-f", path, f"--timeout={left}s", check=False
            )
            if waited.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {path} not Established in {timeout:.0f}s: {waited.stderr.strip()}")
            time.sleep(0.5)


def create_namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})


def _condition(body: Mapping[str, Any], type_: str) -> str | None:
    for entry in (body.get("status") or {}).get("conditions") or []:
        if isinstance(entry, dict) and entry.get("type") == type_:
            return str(entry.get("status"))
    return None


def is_ready(body: Mapping[str, Any]) -> bool:
    """Ready=True and Synced=True for the current generation (what `wait_ready` in tests/e2e checks)."""
    status = body.get("status") or {}
    return (
        _condition(body, names.READY) == "True"
        and _condition(body, names.SYNCED) == "True"
        and status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")
    )


@dataclasses.dataclass(frozen=True)
class Resource:
    """A namespaced custom resource the bench creates and watches, and what Ready means for it."""

    group: str
    version: str
    plural: str
    is_ready: Callable[[Mapping[str, Any]], bool]


KMSKEYS = Resource(names.GROUP, names.VERSION, names.PLURAL, is_ready)


@dataclasses.dataclass
class KeyTimes:
    """Monotonic timestamps of one KmsKey as the watcher saw it."""

    sent: float | None = None  # the create request left the harness
    first_status: float | None = None  # the operator wrote any status
    ready: dict[int, float] = dataclasses.field(default_factory=dict)  # generation -> first Ready


class ReadyWatcher:
    """Watches the KmsKeys (or `resource`) of one namespace from a thread; timestamps status and Ready."""

    def __init__(self, api: client.ApiClient, namespace: str, resource: Resource = KMSKEYS) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.resource = resource
        self.keys: dict[str, KeyTimes] = {}
        self.events = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._listed = threading.Event()

    def __enter__(self) -> ReadyWatcher:
        self._thread.start()
        if not self._listed.wait(30):
            raise RuntimeError(f"could not list KmsKeys in {self.namespace}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def sent(self, name: str, when: float) -> None:
        with self._cond:
            self.keys.setdefault(name, KeyTimes()).sent = when

    def _list(self) -> str:
        r = self.resource
        listing = self._custom.list_namespaced_custom_object(r.group, r.version, self.namespace, r.plural)
        for item in listing.get("items") or []:
            self._see(item)
        self._listed.set()
        return str(listing["metadata"]["resourceVersion"])

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                stream = watch.Watch().stream(
                    self._custom.list_namespaced_custom_object,
                    self.resource.group,
                    self.resource.version,
                    self.namespace,
                    self.resource.plural,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,  # so that a stop is noticed within seconds
                )
                for event in stream:
                    body = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = None  # 410 Gone: list again
                        break
                    version = str((body.get("metadata") or {}).get("resourceVersion") or version)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._see(body)
            except ApiException as error:
                if error.status == 410:
                    version = None
                self._stop.wait(0.5)
            except (urllib3.exceptions.HTTPError, OSError):
                self._stop.wait(0.5)

    def _see(self, body: Mapping[str, Any]) -> None:
        now = time.monotonic()
        meta = body.get("metadata") or {}
        name = str(meta.get("name"))
        with self._cond:
            self.events += 1
            times = self.keys.setdefault(name, KeyTimes())
            if times.first_status is None and body.get("status"):
                times.first_status = now
            generation = int(meta.get("generation") or 0)
            if self.resource.is_ready(body) and generation not in times.ready:
                times.ready[generation] = now
            self._cond.notify_all()

    def wait(self, predicate: Callable[[dict[str, KeyTimes]], bool], timeout: float) -> bool:
        """Block until `predicate(keys)` holds (evaluated under the lock) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 1.0))
            return True

    def wait_ready(self, wanted: Iterable[str], generation: int = 1, timeout: float = 60.0) -> bool:
        names_ = list(wanted)
        return self.wait(
            lambda keys: all(generation in keys.get(n, KeyTimes()).ready for n in names_), timeout
        )

    def count_ready(self, wanted: Iterable[str], generation: int = 1) -> int:
        with self._cond:
            return sum(1 for n in wanted if generation in self.keys.get(n, KeyTimes()).ready)


def create_many(
    api: client.ApiClient,
    namespace: str,
    bodies: list[dict[str, Any]],
    watcher: ReadyWatcher | None = None,
    workers: int = 8,
    resource: Resource = KMSKEYS,
) -> float:
    """Create every body with `workers` requests in flight; returns the seconds it took."""
    custom = client.CustomObjectsApi(api)
    r = resource

    def one(body: dict[str, Any]) -> None:
        if watcher is not None:
            watcher.sent(body["metadata"]["name"], time.monotonic())
        custom.create_namespaced_custom_object(r.group, r.version, namespace, r.plural, body)

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, bodies):
            pass
    return time.monotonic() - began


def patch_spec(api: client.ApiClient, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, name, {"spec": dict(spec)}
    )


def dry_run_latencies(
    api: client.ApiClient, namespace: str, count: int, *, kmskeys: bool = True
) -> list[float]:
    """Seconds per sequential dry-run create: of KmsKeys (through the webhook), or of ConfigMaps (no webhook).

    The ConfigMaps are the baseline: the same client, API server and dry-run path, minus admission.
    """
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    latencies: list[float] = []
    for i in range(count):
        name = f"dry-run-{i}"
        began = time.perf_counter()
        if kmskeys:
            body = kmskey(name, {"description": f"admission probe {i}", "keySpec": "Aliyun_AES_256"})
            custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, body, dry_run="All"
            )
        else:
            core.create_namespaced_config_map(
                namespace, {"metadata": {"name": name}, "data": {"i": str(i)}}, dry_run="All"
            )
        latencies.append(time.perf_counter() - began)
    return latencies
