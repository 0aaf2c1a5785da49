"""A real, local Kubernetes control plane (etcd + kube-apiserver on 127.0.0.1), started the way envtest does.

There is no kube-controller-manager, scheduler or kubelet: namespaces never finish deleting, nothing is
garbage collected and no Pod ever runs. What the API server does itself (validation, CRDs, RBAC, admission
webhooks, finalizers, TokenRequest) is real. Nothing here dials an address other than 127.0.0.1.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness import pki
from tests.harness.ports import free_ports as free_ports  # re-exported: harnesses import it from here
from tests.harness.processes import (
    ManagedProcess,
    ProcessRecord,
    ProcessSpec,
    child_environment,
    process_rss_bytes,
)

LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT = 90.0
API_RETRIES_429 = 10  # as client-go: a 429 with Retry-After is retried this many times


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or a request to it failed."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; the message carries its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}"


def find_kubectl() -> str:
    """The pinned kubectl installed by `make tools` (next to this Python), else the first one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise ControlPlaneError("kubectl not found next to Python or on PATH: run `make tools`")
    return found


def missing_binaries(kube_bin: Path | str | None) -> str | None:
    """A sentence naming what is missing from KUBE_BIN, or None when etcd and kube-apiserver are there."""
    if not kube_bin:
        return "KUBE_BIN is not set (it names the directory holding etcd and kube-apiserver)"
    for name in ("etcd", "kube-apiserver"):
        path = Path(kube_bin) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing or not executable"
    return None


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    *,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
) -> Path:
    """A self-contained kubeconfig (certificates embedded) for one user."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    credentials: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        credentials = {"client-certificate-data": b64(client_cert), "client-key-data": b64(client_key)}
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML, and every kubeconfig reader accepts it.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver on random 127.0.0.1 ports, with a throw-away PKI and an admin kubeconfig.

    Use as a context manager, or call start()/stop(). stop() signals exactly the PIDs start() created; it
    also runs at interpreter exit. With detach=True (for `make dev-up`) the processes outlive this Python
    process and are stopped later from their ProcessRecords.
    """

    def __init__(
        self,
        kube_bin: Path | str,
        workdir: Path | None = None,
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        detach: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        problem = missing_binaries(kube_bin)
        if problem:
            raise ControlPlaneError(f"{problem}: run `make control-plane`")
        self.kube_bin = Path(kube_bin)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="kmskey-cp-")) if workdir is None else workdir
        self.log_dir = log_dir or self.workdir
        self.start_timeout = start_timeout
        self.detach = detach
        self.processes: list[ManagedProcess] = []
        self.etcd_url = ""
        self.apiserver_port = 0
        self.startup_seconds = 0.0
        self._pki: pki.Pki | None = None
        self._apiserver_spec: ProcessSpec | None = None
        self._keep_workdir = os.environ.get("KMSKEY_KEEP_CONTROL_PLANE_DIR") == "1"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self._require_pki().ca_cert

    @property
    def service_account_issuer(self) -> str:
        """The `iss` of the ServiceAccount tokens this API server signs (an OIDC provider's issuer URL)."""
        return self.server

    @property
    def service_account_public_key(self) -> Path:
        """The PEM public key that verifies those tokens (what an OIDC provider in RAM would publish)."""
        return self._require_pki().sa_public_key

    @property
    def records(self) -> list[ProcessRecord]:
        return [p.record for p in self.processes]

    def start(self) -> None:
        if self.processes:
            raise ControlPlaneError("already started")
        if not self.detach:
            atexit.register(self.stop)
        try:
            self._start()
        except BaseException:  # including KeyboardInterrupt while waiting
            self._keep_workdir = True  # the logs named in the error stay readable
            self.stop()
            raise

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = pki.generate(self.workdir / "pki")
        etcd_client, etcd_peer, api_port = free_ports(3)
        self.etcd_url = f"http://{LOOPBACK}:{etcd_client}"
        self.apiserver_port = api_port

        etcd = self._spawn(
            ProcessSpec(
                "etcd",
                [
                    str(self.kube_bin / "etcd"),
                    "--name=kmskey-test",
                    f"--data-dir={self.workdir / 'etcd-data'}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls=http://{LOOPBACK}:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://{LOOPBACK}:{etcd_peer}",
                    f"--initial-cluster=kmskey-test=http://{LOOPBACK}:{etcd_peer}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
            )
        )
        self._wait(etcd, self._etcd_healthy, "etcd /health")

        p = self._require_pki()
        began = time.monotonic()
        self._apiserver_spec = ProcessSpec(
            "kube-apiserver",
            [
                str(self.kube_bin / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer=https://{LOOPBACK}:{api_port}",
                f"--service-account-key-file={p.sa_public_key}",
                f"--service-account-signing-key-file={p.sa_private_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # No kube-controller-manager creates the `default` ServiceAccount; envtest does the same.
                "--disable-admission-plugins=ServiceAccount",
                # Resolve `service:` webhooks/APIServices via Endpoints (there are none: an immediate
                # error) instead of dialling a 10.0.0.x ClusterIP.
                "--enable-aggregator-routing=true",
                # Do not publish 127.0.0.1 in the `kubernetes` Endpoints (rejected as loopback, log spam).
                "--endpoint-reconciler-type=none",
            ],
        )
        apiserver = self._spawn(self._apiserver_spec)
        self._wait(apiserver, self._apiserver_ready, "kube-apiserver /readyz")
        self.startup_seconds = time.monotonic() - began
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            p.ca_cert,
            user="admin",
            client_cert=p.admin_cert,
            client_key=p.admin_key,
        )

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (exactly the PIDs started here); remove a temporary workdir."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self._own_workdir and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self, grace_seconds: float = 10.0) -> None:
        """Stop only kube-apiserver (SIGTERM, as in a control-plane upgrade); etcd and its data stay."""
        for process in list(self.processes):
            if process.spec.name == "kube-apiserver":
                process.stop(grace_seconds)
                self.processes.remove(process)

    def start_apiserver(self) -> float:
        """Start kube-apiserver again with the same port, certificates and etcd; seconds until /readyz."""
        if self._apiserver_spec is None:
            raise ControlPlaneError("the control plane has not been started")
        if any(p.spec.name == "kube-apiserver" for p in self.processes):
            raise ControlPlaneError("kube-apiserver is already running")
        began = time.monotonic()
        apiserver = self._spawn(self._apiserver_spec)
        self._wait(apiserver, self._apiserver_ready, "kube-apiserver /readyz (restart)")
        return time.monotonic() - began

    def restart_apiserver(self, grace_seconds: float = 10.0) -> float:
        """stop_apiserver() then start_apiserver(); returns the seconds the API was unavailable."""
        began = time.monotonic()
        self.stop_apiserver(grace_seconds)
        self.start_apiserver()
        return time.monotonic() - began

    def apiserver_rss_bytes(self) -> tuple[int, int]:
        """(current, peak) resident memory of kube-apiserver."""
        for process in self.processes:
            if process.spec.name == "kube-apiserver":
                return process_rss_bytes(process.pid)
        raise ControlPlaneError("kube-apiserver is not running")

    # -- talking to it -----------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        p = self._require_pki()
        context = ssl.create_default_context(cafile=str(p.ca_cert))
        context.load_cert_chain(str(p.admin_cert), str(p.admin_key))
        return context

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """One HTTPS request as the admin user, straight to 127.0.0.1 (no proxy is ever consulted).

        A 429 with Retry-After is retried after that delay, a few times, as client-go (and so kubectl) does:
        the API server answers 429 "storage is (re)initializing" while a resource's watch cache (re)starts,
        e.g. just after its CRD is established or after etcd compacted past the cache's watch.
        """
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in range(API_RETRIES_429 + 1):
            conn = http.client.HTTPSConnection(
                LOOPBACK, self.apiserver_port, context=self.ssl_context(), timeout=timeout
            )
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                status, data = response.status, response.read()
                retry_after = response.getheader("Retry-After")
            finally:
                conn.close()
            if status != 429 or retry_after is None or attempt == API_RETRIES_429:
                return status, data
            time.sleep(min(10.0, max(0.1, float(retry_after) if retry_after.isdigit() else 1.0)))
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise ControlPlaneError(f"GET {path}: HTTP {status}: {data[:500]!r}")
        return json.loads(data)

    def remove_every(self, group: str, version: str, plural: str, timeout: float = 60.0) -> list[str]:
        """Delete every object of a namespaced resource in every namespace, finalizers stripped; their names.

        Deleted first, so that no controller still running adds a finalizer back (none may be added to an
        object being deleted), then stripped of finalizers, so that an object whose controller is gone goes
        too. Returns once none is left; raises ControlPlaneError naming what the API server refused.
        """
        listing = f"/apis/{group}/{version}/{plural}"
        status, data = self.request("GET", listing)
        if status == 404:
            return []  # the resource (its CRD) is not installed
        if status != 200:
            raise ControlPlaneError(f"GET {listing}: HTTP {status}: {data[:500]!r}")
        paths = {
            f"{item['metadata']['namespace']}/{item['metadata']['name']}": (
                f"/apis/{group}/{version}/namespaces/{item['metadata']['namespace']}/{plural}/"
                f"{item['metadata']['name']}"
            )
            for item in json.loads(data)["items"]
        }
        for name, path in paths.items():
            status, data = self.request("DELETE", path)
            if status not in (200, 202, 404):
                raise ControlPlaneError(f"DELETE {plural} {name}: HTTP {status}: {data[:500]!r}")
        for name, path in paths.items():
            status, data = self.request(
                "PATCH",
                path,
                {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json",
            )
            if status not in (200, 404):
                raise ControlPlaneError(
                    f"removing the finalizers of {plural} {name}: HTTP {status}: {data[:500]!r}"
                )
        deadline = time.monotonic() + timeout
        while True:
            left = [name for name, path in paths.items() if self.request("GET", path)[0] != 404]
            if not left:
                return sorted(paths)
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{plural} still there {timeout:.0f}s after deletion: {left}")
            time.sleep(0.2)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane as the admin user."""
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def service_account_kubeconfig(
        self, namespace: str, sa_name: str, path: Path, expiration_seconds: int = 7200
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount `namespace/sa_name`, with a TokenRequest token.

        The ServiceAccount must exist. Tokens last at least 10 minutes (the API server's minimum).
        """
        status, data = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        if status != 201:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{sa_name}: HTTP {status}: {data[:500]!r}")
        token = json.loads(data)["status"]["token"]
        user = f"system:serviceaccount:{namespace}:{sa_name}"
        return write_kubeconfig(path, self.server, self.ca_cert, user=user, token=token)

    # -- internals ---------------------------------------------------------------------------------------

    def _require_pki(self) -> pki.Pki:
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

    def _spawn(self, spec: ProcessSpec) -> ManagedProcess:
        process = ManagedProcess(spec, self.log_dir / f"{spec.name}.log", detach=self.detach)
        self.processes.append(process)
        return process

    def _wait(self, process: ManagedProcess, probe: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        while time.monotonic() < deadline:
            code = process.exited()
            if code is not None:
                raise ControlPlaneError(
                    f"{process.spec.name} exited with code {code} before {what} answered.\n"
                    f"Last lines of {process.log_path}:\n{process.log_tail()}"
                )
            try:
                if probe():
                    return
            except (OSError, http.client.HTTPException) as error:
                last_error = repr(error)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{what} not ready within {self.start_timeout:.0f}s (last probe error: {last_error or 'none'}).\n"
            f"Last lines of {process.log_path}:\n{process.log_tail()}"
        )

    def _etcd_healthy(self) -> bool:
        host, port = self.etcd_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            return response.status == 200 and b'"health":"true"' in response.read()
        finally:
            conn.close()

    def _apiserver_ready(self) -> bool:
        status, _ = self.request("GET", "/readyz", timeout=5)
        return status == 200


def run_kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """kubectl bound to `kubeconfig`; raises KubectlError (with stderr) on a non-zero exit when `check`."""
    argv = [find_kubectl(), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_environment({"KUBECONFIG": str(kubeconfig)}),
        check=False,
    )
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
    return result
