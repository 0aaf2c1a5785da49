"""What a burst of KmsKeys leaves behind in the operator process: no thread per concurrent watch event.

kopf runs a plain (non-async) handler in its own thread pool, which grows up to 64 threads while events
queue. Its index handlers run on every watch event of every KmsKey, so a burst used to leave 22-27 idle
threads in that pool for the life of the process, each with its stack and malloc arena resident (#18). The
operator's threads are its KMS call pool (KMSKEY_KMS_MAX_CONNECTIONS), the metrics server and a few one-off
workers (kopf's login, start-up), however many keys arrive at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import operator_on, wait_ready
from tests.harness.operator import OperatorProcess

KMS_THREADS = 4
KEYS = 60
# The main thread, the metrics server, kopf's workers for its sync login and start-up handlers, asyncio's
# default executor (re-login, token files): generous, and still far below one thread per concurrent event.
OTHER_THREADS = 8


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    crd_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = operator_on(
        emulator,
        kubeconfig,
        tmp_path_factory,
        {
            "KMSKEY_WEBHOOK_ENABLED": "false",
            "KMSKEY_KMS_MAX_CONNECTIONS": str(KMS_THREADS),
        },
    )
    process.start()
    yield process
    process.stop()


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line in /proc/{pid}/status")


def test_a_burst_of_keys_leaves_no_thread_per_event(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    items = [
        {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": f"burst-{i}", "namespace": namespace},
            "spec": {"description": f"burst {i}"},
        }
        for i in range(KEYS)
    ]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    for i in range(KEYS):
        wait_ready(kubectl, namespace, f"burst-{i}", timeout=120)
    assert operator.process is not None
    found = threads(operator.process.pid)
    assert found <= KMS_THREADS + OTHER_THREADS, (
        f"{found} threads after {KEYS} keys at once (KMS call pool {KMS_THREADS})"
    )
