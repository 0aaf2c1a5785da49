"""The operator under a tight KMS read quota, and without the `kubernetes` package, as one process.

The operator here may make 2 reads/s (KMSKEY_READ_QPS), of which drift checks may use half; a dozen keys
asking to be checked every 2 s would need 12 reads/s. The drift checks must stretch to fit (and say so),
while a new key still becomes Ready at once. The process runs with a `kubernetes` package that refuses to
be imported first on its path: kopf's login, the drift checks' status writes and the webhook configuration
all go through the operator's own API module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator import names
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, operator_on, wait_ready
from tests.harness.operator import OperatorProcess
from tests.harness.scrape import metric_value

CONFIGURATION = "kmskey-operator-e2e-scale"
POISON = """raise ImportError("the operator process must not import the kubernetes package")\n"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(quotas=False, tls=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    crd_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    poisoned = tmp_path_factory.mktemp("no-kubernetes")
    (poisoned / "kubernetes").mkdir()
    (poisoned / "kubernetes" / "__init__.py").write_text(POISON)
    process = operator_on(
        emulator,
        kubeconfig,
        tmp_path_factory,
        {
            "PYTHONPATH": str(poisoned),
            "KMSKEY_READ_QPS": "2",
            "KMSKEY_RESYNC_READ_SHARE": "0.5",
            "KMSKEY_RESYNC_SECONDS": "600",
            "KMSKEY_WEBHOOK_MANAGED": CONFIGURATION,
            "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
        },
    )
    process.start()
    yield process
    process.stop()


def test_the_operator_works_without_the_kubernetes_package(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("get", "validatingwebhookconfiguration", CONFIGURATION)  # written through kube.py
    refused = kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=f'{{"apiVersion": "{names.GROUP}/{names.VERSION}", "kind": "KmsKey", '
        f'"metadata": {{"name": "bad", "namespace": "{namespace}"}}, "spec": {{"keySpec": "RSA_1"}}}}',
    )
    assert refused.returncode != 0  # the webhook serves and refuses
    apply(kubectl, namespace, "ok", {"description": "ok"})
    wait_ready(kubectl, namespace, "ok", timeout=60)
    assert "must not import the kubernetes package" not in operator.log()


def test_drift_checks_stretch_to_fit_the_read_budget_and_creates_still_go_first(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    for i in range(12):
        apply(
            kubectl,
            namespace,
            f"busy-{i}",
            {"description": "busy"},
            annotations={names.RESYNC_ANNOTATION: "2s"},
        )
    for i in range(12):
        wait_ready(kubectl, namespace, f"busy-{i}", timeout=90)
    # 12 keys × 2 reads every 2 s = 12 reads/s over a budget of 1: stretched about 12 times.
    deadline = time.monotonic() + 30
    while (metric_value(operator.metrics(), "kmskey_resync_interval_stretch") or 0) < 8:
        assert time.monotonic() < deadline, "the stretch was not reported"
        time.sleep(0.5)
    assert "stretched" in operator.log()
    # Drift checks in flight (up to 16) each wait for a read token; served in arrival order, a create's
    # first read would wait behind all of them (16 reads at 2/s: 8 s). It goes first instead.
    time.sleep(10)
    began = time.monotonic()
    apply(kubectl, namespace, "new", {"description": "new"})
    wait_ready(kubectl, namespace, "new", timeout=60)
    assert time.monotonic() - began < 5
