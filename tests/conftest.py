"""Shared pytest fixtures: a real local control plane (etcd + kube-apiserver), started once, only if needed.

A test needs Kubernetes when it requests `control_plane` (directly or through `kubeconfig`, `kubectl`,
`namespace`, `crd_installed`), carries `@pytest.mark.k8s`, or lives in tests/k8s/. Such a test FAILS, never
skips, when the control plane is unavailable: the message names the missing piece and `make control-plane`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from kmskey_operator import names
from tests.harness.controlplane import ControlPlane, ControlPlaneError, missing_binaries, run_kubectl
from tests.harness.processes import PROXY_VARIABLES

# Before anything imports an SDK or HTTP client: no cloud metadata probing, no proxies (127.0.0.1 only).
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _variable in PROXY_VARIABLES:
    os.environ.pop(_variable, None)

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = REPO_ROOT / "crds"
K8S_TEST_DIR = Path(__file__).resolve().parent / "k8s"
K8S_FIXTURES = {"control_plane", "kubeconfig", "kubectl", "namespace", "crd_installed"}


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Kubernetes with `k8s`, so `-m "not k8s"` selects the pure tiers."""
    for item in items:
        in_k8s_dir = K8S_TEST_DIR in Path(str(item.path)).parents
        uses_fixture = bool(K8S_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if (in_k8s_dir or uses_fixture) and item.get_closest_marker("k8s") is None:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(autouse=True)
def _start_control_plane_for_k8s_marker(request: pytest.FixtureRequest) -> None:
    """A test marked `k8s` gets the control plane even if it requests no fixture (it may use KUBECONFIG)."""
    if request.node.get_closest_marker("k8s") is not None:
        request.getfixturevalue("control_plane")


_running_plane: list[ControlPlane] = []  # the session's control plane, once (and while) it runs


@pytest.fixture(scope="module", autouse=True)
def _no_kmskey_outlives_its_module() -> Iterator[None]:
    """When a test module ends, every KmsKey in the session's cluster goes, finalizers stripped if need be.

    Namespaces stay forever here (no kube-controller-manager deletes them), and so would the KmsKeys in
    them: the next module's operator, which watches every namespace as a user's does, would reconcile them
    against its own, empty, emulator (create keys, resync them) in the middle of that module's counts and
    timings. Whatever namespace they are in (the `namespace` fixture's, a module's own, a tenant's), none
    survives the module that made it. This runs after the module's own fixtures stopped its operators, so no
    KMS call is made for them; a module that wants its operator to see the deletions deletes them itself.
    """
    yield
    if _running_plane:
        try:
            _running_plane[0].remove_every(names.GROUP, names.VERSION, names.PLURAL)
        except ControlPlaneError as error:
            pytest.fail(f"KmsKeys left by this module could not be removed: {error}", pytrace=False)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver from $KUBE_BIN on 127.0.0.1, for the whole session; KUBECONFIG points at it."""
    kube_bin = os.environ.get("KUBE_BIN")
    problem = missing_binaries(kube_bin)
    if problem:
        pytest.fail(
            f"the Kubernetes test tier needs a local control plane, but {problem}. "
            "Run `make control-plane` (it builds and caches kube-apiserver and etcd, prints KUBE_BIN=...), "
            "or run the whole suite with `make test`.",
            pytrace=False,
        )
    assert kube_bin is not None
    plane = ControlPlane(kube_bin)
    failure = ""
    try:
        plane.start()
    except ControlPlaneError as error:
        failure = str(error)
    if failure:
        pytest.fail(f"the local control plane did not start: {failure}", pytrace=False)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    _running_plane.append(plane)
    try:
        yield plane
    finally:
        _running_plane.clear()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Path of the admin (system:masters) kubeconfig."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    """kubectl bound to the admin kubeconfig: `kubectl("get", "ns", "-o", "json").stdout`."""

    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(kubeconfig, *args, input=input, check=check, timeout=timeout)

    return run


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, never deleted (without kube-controller-manager it stays Terminating)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 't'}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="session")
def crd_installed(kubectl: Kubectl) -> list[str]:
    """Apply crds/*.yaml and wait until every CRD is Established; returns the CRD names."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRD manifests in {CRD_DIR}", pytrace=False)
    for path in files:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = kubectl("get", "-f", str(CRD_DIR), "-o", "name").stdout.split()
    deadline = time.monotonic() + 30
    for name in names:
        remaining = max(1, int(deadline - time.monotonic()))
        kubectl(
            "wait", "--for=condition=Established", name, f"--timeout={remaining}s", timeout=remaining + 10
        )
    return [n.split("/", 1)[1] for n in names]
