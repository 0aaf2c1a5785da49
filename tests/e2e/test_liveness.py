"""Liveness as a kubelet sees it: the real operator process, its main event loop stalled on purpose.

/healthz and /readyz are served from a thread of their own and report the main loop's heartbeat. A loop
that is busy must not fail the probe (the kubelet would restart a pod for working hard), and a loop that is
stuck past KMSKEY_LIVENESS_STALL_SECONDS must fail it (or nothing restarts a wedged pod). The stall comes
from tests/e2e/loopstall/sitecustomize.py, loaded into the operator through PYTHONPATH: it makes the main
loop spin in Python (holding the GIL, like a runaway handler) for as long as the test asks.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kms_emulator.testing import EmulatorHandle
from tests.harness.operator import OperatorProcess

STALL_THRESHOLD = 3.0
STALL = 8.0
PROBE_TIMEOUT = 2.0  # well under the chart's livenessProbe timeoutSeconds (5)
HOOK_DIR = Path(__file__).parent / "loopstall"


@pytest.fixture(scope="module")
def stall_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stall") / "stall-seconds"


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    crd_installed: list[str],
    stall_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    inherited = os.environ.get("PYTHONPATH")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret,
        log_dir=tmp_path_factory.mktemp("operator-liveness"),
        kms_ca_file=emulator.ca_file,
        extra_env={
            "KMSKEY_WEBHOOK_ENABLED": "false",
            "KMSKEY_LIVENESS_STALL_SECONDS": f"{STALL_THRESHOLD:g}",
            "KMSKEY_TEST_STALL_FILE": str(stall_file),
            "PYTHONPATH": os.pathsep.join(p for p in (str(HOOK_DIR), inherited) if p),
        },
    )
    process.start(timeout=90)
    yield process
    process.stop()


def probe(port: int, path: str) -> tuple[int, dict[str, Any], float]:
    """(status, JSON body, seconds); raises on a time-out, as the kubelet counts one as a failure."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROBE_TIMEOUT) as response:
            return int(response.status), json.loads(response.read()), time.monotonic() - began
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read()), time.monotonic() - began


def lag_over(metrics: str, seconds: float) -> float:
    """How many heartbeat ticks came more than `seconds` late (kmskey_event_loop_lag_seconds)."""
    buckets: dict[float, float] = {}
    count = 0.0
    for family in text_string_to_metric_families(metrics):
        if family.name != "kmskey_event_loop_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return count - buckets.get(seconds, count)  # 0 when the operator exports no such histogram


def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout:.0f}s: {what}")


def test_probes_answer_while_the_loop_is_stalled_and_fail_once_it_is_stuck(
    operator: OperatorProcess, stall_file: Path
) -> None:
    wait_until(lambda: operator.readiness()[0] == 200, "/readyz 200")
    assert probe(operator.health_port, "/healthz")[0] == 200
    late_before = lag_over(operator.metrics(), 5.0)

    stall_file.write_text(f"{STALL}")
    wait_until(lambda: not stall_file.exists(), "the stall hook to take the request", timeout=10)
    began = time.monotonic()
    samples: list[tuple[float, int, dict[str, Any], float]] = []
    readiness: list[tuple[int, dict[str, Any], float]] = []
    while time.monotonic() - began < STALL - 1.0:
        at = time.monotonic() - began
        code, body, seconds = probe(operator.health_port, "/healthz")  # a time-out fails the test
        samples.append((at, code, body, seconds))
        if at > STALL_THRESHOLD + 1.0 and not readiness:
            readiness.append(probe(operator.ready_port, "/readyz"))
        time.sleep(0.25)

    # Every probe was answered, quickly, while the main loop did nothing but spin.
    assert max(seconds for *_, seconds in samples) < 1.0, samples
    # Busy but within the threshold: still alive. Stuck past it: not alive, and the body says why.
    assert [code for at, code, *_ in samples if at < STALL_THRESHOLD - 1.0] == [200] * len(
        [1 for at, *_ in samples if at < STALL_THRESHOLD - 1.0]
    ), samples
    stuck = [(code, body) for at, code, body, _ in samples if at > STALL_THRESHOLD + 0.5]
    assert stuck, samples
    assert all(code == 503 for code, _ in stuck), samples
    assert all(body["event_loop_waiting_seconds"] > STALL_THRESHOLD for _, body in stuck)
    assert all(body["stall_threshold_seconds"] == STALL_THRESHOLD for _, body in stuck)
    code, body, _ = readiness[0]
    assert code == 503, body
    assert any("the event loop (stuck" in reason for reason in body["waiting_for"]), body

    # The loop comes back: alive again, and the stall shows in the lag metric.
    wait_until(lambda: probe(operator.health_port, "/healthz")[0] == 200, "/healthz 200 after the stall")
    assert lag_over(operator.metrics(), 5.0) >= late_before + 1
    wait_until(lambda: operator.readiness()[0] == 200, "/readyz 200 after the stall")
