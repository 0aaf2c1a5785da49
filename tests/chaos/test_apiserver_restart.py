"""Scenario 3: the API server restarts mid-run; the operator recovers its watches and misses no update.

Spec changes land on both sides of the outage: just before the API server stops (so their handling, slowed by
KMS latency, is in flight when it goes, and the status write fails), and right after it is back (before the
operator's watches have reconnected). Every change must reach KMS, checked in the emulator, not in status.
The full run adds outages of 30 s and 75 s, longer than kopf's own retries of a failed request.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kms_emulator.testing import run_emulator
from tests.chaos.audit import audit, backend_keys
from tests.chaos.conftest import OperatorFactory, crashes, record, scale
from tests.chaos.kube import Kube, poll, wait_all_ready
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.chaos


def test_spec_changes_around_an_api_server_restart_all_reach_kms(
    kube: Kube, control_plane: ControlPlane, start_operator: OperatorFactory, namespace: str
) -> None:
    # Seconds the API server stays down: the long one outlasts kopf's own request retries (about a minute).
    downtimes = [2.0, 30.0, 75.0][: scale(1, 3)]
    count = scale(4, 8)
    names = [f"k{i}" for i in range(count)]
    outages: list[float] = []
    with run_emulator(quotas=False) as emulator:
        operator = start_operator(emulator, namespace)
        for name in names:
            kube.create(namespace, name, {"description": "v0"})
        wait_all_ready(kube, namespace, names, timeout=120)
        # Writes take a while, so some are in flight when the API server goes away.
        emulator.set_fault("*", code=None, latency_ms=300)
        expected: dict[str, str] = {}
        for cycle, downtime in enumerate(downtimes):
            before, after = names[: count // 2], names[count // 2 :]
            for name in before:
                expected[name] = f"before restart {cycle}"
                kube.patch_spec(namespace, name, {"description": expected[name]})
            began = time.monotonic()
            control_plane.stop_apiserver()
            time.sleep(downtime)  # the outage itself; nothing is asserted on the clock
            control_plane.start_apiserver()
            outages.append(time.monotonic() - began)
            for name in after:
                expected[name] = f"after restart {cycle}"
                poll(
                    lambda n=name: kube.patch_spec(namespace, n, {"description": expected[n]}),
                    timeout=60,
                    what=f"patch {name} after the restart",
                )
            new = f"new-{cycle}"
            kube.create(namespace, new, {"description": "created after the restart"})
            expected[new] = "created after the restart"
            names.append(new)
            count = len(names)
            bodies = wait_all_ready(kube, namespace, names, timeout=240)

            def in_kms(bodies: dict[str, dict[str, Any]] = bodies) -> bool:
                keys = {k["key_id"]: k for k in backend_keys(emulator)}
                return all(
                    keys[b["status"]["keyId"]]["description"] == expected.get(n, "v0")
                    for n, b in bodies.items()
                )

            poll(in_kms, timeout=30, what="every description in KMS")
        emulator.clear_faults()
        result = audit(backend_keys(emulator), kube.list(namespace))
        evidence = crashes(operator)
        alive = operator.process is not None and operator.process.exited() is None

    record(
        apiserver_restarts=len(downtimes),
        apiserver_outage_seconds=max(outages),
        keys_duplicated=result.duplicated,
        keys_orphaned=result.orphaned,
        keys_lost=result.lost,
        operator_crashes=len(evidence) + (0 if alive else 1),
    )
    assert alive, "the operator exited while the API server was away"
    assert not evidence, evidence
    assert result.clean, str(result)
