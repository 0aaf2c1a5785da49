"""Fixtures of the node tier: a real node (tests/harness/node.py) running the image built from the Dockerfile.

The node needs KUBE_BIN with the node binaries, the operator image and the pause image as OCI archives
(`make test` builds all three and sets KUBE_BIN, KMSKEY_IMAGE_ARCHIVE, KMSKEY_PAUSE_ARCHIVE). Run alone, the
fixture builds the two images itself with the hack/ scripts. A missing piece FAILS the tier, never skips it,
with a message naming the piece and the script that provides it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi.utils_models import Config

from kms_emulator.testing import EmulatorHandle
from tests.chart.helm import REPO_ROOT
from tests.harness.node import NodeCluster, NodeError, NodeImages, missing_pieces

PAUSE_IMAGE_DEFAULT = "registry.k8s.io/pause:3.10.1"


def _from_script(script: str, variable: str) -> str:
    """Run hack/<script> (it caches) and return the value it prints as VARIABLE=..."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / script)], capture_output=True, text=True, check=False, timeout=1800
    )
    for line in result.stdout.splitlines():
        if line.startswith(f"{variable}="):
            return line.split("=", 1)[1]
    pytest.fail(
        f"the node tier needs {variable}, and hack/{script} did not provide it (exit {result.returncode}):\n"
        f"{result.stderr[-3000:]}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    kube_bin = os.environ.get("KUBE_BIN")
    image = os.environ.get("KMSKEY_IMAGE_ARCHIVE") or _from_script("build-image.sh", "IMAGE_ARCHIVE")
    pause = os.environ.get("KMSKEY_PAUSE_ARCHIVE") or _from_script("build-pause-image.sh", "PAUSE_ARCHIVE")
    problems = missing_pieces(kube_bin, image, pause)
    if problems:
        pytest.fail(
            "the node tier cannot start its node: "
            + "; ".join(problems)
            + ". `make test` installs and builds "
            "all of it (hack/install-node-deps.sh, hack/build-control-plane.sh --node, hack/build-image.sh, "
            "hack/build-pause-image.sh).",
            pytrace=False,
        )
    assert kube_bin is not None
    images = NodeImages(Path(image), Path(pause), os.environ.get("KMSKEY_PAUSE_IMAGE", PAUSE_IMAGE_DEFAULT))
    cluster = NodeCluster(kube_bin, images)
    failure = ""
    try:
        cluster.start()
    except NodeError as error:
        failure = str(error)
    if failure:
        pytest.fail(f"the test node did not start: {failure}", pytrace=False)
    print(f"\nnode up in {cluster.timings['total']:.1f}s: {cluster.timings}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def node_emulator(node_cluster: NodeCluster) -> Iterator[EmulatorHandle]:
    """The KMS emulator over HTTPS (its own CA) on the node address, where pods dial it (`endpoint`)."""
    with node_cluster.emulator(quotas=False, tls=True) as handle:
        yield handle


@pytest.fixture(scope="session")
def node_kms(node_cluster: NodeCluster, node_emulator: EmulatorHandle) -> KmsClient:
    """The official SDK in the test process, reaching the emulator through a 127.0.0.1 forward."""
    return KmsClient(
        Config(
            access_key_id=node_emulator.access_key_id,
            access_key_secret=node_emulator.access_key_secret,
            endpoint=node_cluster.forwarded_endpoint(node_emulator),  # 127.0.0.1 is in its certificate
            protocol="https",
            ca=str(node_emulator.ca_file),
            region_id=node_emulator.region_id,
        )
    )


def wait_until(predicate: object, timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll `predicate()` until it is truthy; fail naming `what` (deadlines are generous: shared machine)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")
