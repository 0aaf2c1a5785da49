"""Scenario 2: 30% of KMS calls fail (5xx, throttling with retry-after, dropped connections) and all are slow.

Every KmsKey must still converge (Ready and Synced True, KMS state equal to the spec) while the faults are on:
a transient error never ends as a permanent failure. The KMS call count per key stays bounded (backoff, not a
hot loop), and KMS holds exactly one key per resource even when answers to writes were lost.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.chaos.audit import audit, backend_keys
from tests.chaos.conftest import FULL, OperatorFactory, crashes, record, scale
from tests.chaos.kube import Kube, poll, wait_all_ready

pytestmark = pytest.mark.chaos

FAULT_RATE = 0.30
# Three independent rules each firing with probability p fail 1 - (1 - p)^3 of calls: 30% for p = 0.1121.
PER_RULE = 1 - (1 - FAULT_RATE) ** (1 / 3)
# A converged key costs about 10 calls without faults (create path, one update); 30% faults and the retries
# they cause may triple that. A hot loop (retry without backoff) makes hundreds in the same time.
CALLS_PER_KEY_BOUND = 60


def errors_5xx(emu: EmulatorHandle) -> None:
    emu.set_fault("*", rate=FAULT_RATE / 2, code="ServiceUnavailableTemporary", status=503)
    emu.set_fault("*", rate=FAULT_RATE / 2 / (1 - FAULT_RATE / 2), code="InternalFailure", status=500)


def throttling(emu: EmulatorHandle) -> None:
    emu.set_fault("*", rate=FAULT_RATE, code="Rejected.Throttling", status=429, retry_after_ms=800)


def dropped_connections(emu: EmulatorHandle) -> None:
    # Half before the action (nothing happened), half after it (done, but the answer is lost).
    emu.set_fault("*", rate=FAULT_RATE / 2, code=None, drop_connection=True)
    emu.set_fault(
        "*", rate=FAULT_RATE / 2 / (1 - FAULT_RATE / 2), code=None, drop_connection=True, after_action=True
    )


def mixed_with_latency(emu: EmulatorHandle) -> None:
    emu.set_fault("*", rate=PER_RULE, code="ServiceUnavailableTemporary", status=503)
    emu.set_fault("*", rate=PER_RULE, code="Rejected.Throttling", status=429, retry_after_ms=500)
    emu.set_fault("*", rate=PER_RULE, code=None, drop_connection=True, after_action=True)
    emu.set_fault("*", rate=1.0, code=None, latency_ms=40)
    emu.set_fault("*", rate=0.2, code=None, latency_ms=400, after_action=True)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    inject: Callable[[EmulatorHandle], None]
    quick: bool = False


VARIANTS = (
    Variant("mixed-with-latency", mixed_with_latency, quick=True),
    Variant("5xx", errors_5xx),
    Variant("throttling-retry-after", throttling),
    Variant("dropped-connections", dropped_connections),
)

SPECS: tuple[dict[str, Any], ...] = (
    {"description": "plain"},
    {"description": "disabled", "status": "Disabled"},
    {"description": "rotating", "enableAutomaticRotation": True, "rotationInterval": "30d"},
    {"description": "tagged", "tags": {"team": "payments", "env": "prod"}},
    {"description": "protected", "enableDeletionProtection": True},
    {
        "description": "policy",
        "policy": json.dumps(
            {
                "Version": "1",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"RAM": ["acs:ram::1234567890123456:*"]},
                        "Action": ["kms:*"],
                        "Resource": ["*"],
                    }
                ],
            }
        ),
    },
    {"description": "rsa", "keySpec": "RSA_2048", "keyUsage": "SIGN/VERIFY"},
    {"description": "disabled-tagged", "status": "Disabled", "tags": {"team": "risk"}},
)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            v,
            id=v.name,
            marks=() if v.quick else pytest.mark.skipif(not FULL, reason="full chaos run: make chaos"),
        )
        for v in VARIANTS
    ],
)
def test_thirty_percent_kms_faults_converge_with_bounded_calls_and_no_permanent_failure(
    variant: Variant, kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    count = scale(4, len(SPECS))
    names = [f"k{i}" for i in range(count)]
    with run_emulator(quotas=False) as emulator:
        variant.inject(emulator)
        operator = start_operator(emulator, namespace)
        # Counted as not converged until it has: a scenario that fails midway stays visible.
        record(fault_rate=FAULT_RATE, fault_scenarios_total=1, fault_scenarios_converged=0)
        started = time.monotonic()
        for name, spec in zip(names, SPECS, strict=False):
            kube.create(namespace, name, spec)
        wait_all_ready(kube, namespace, names, timeout=600)
        # Updates under the same faults: each must reach KMS, not only the status.
        for name in names:
            kube.patch_spec(namespace, name, {"description": f"{name} updated"})
        bodies = wait_all_ready(kube, namespace, names, timeout=600)
        converged = time.monotonic() - started
        calls = sum(emulator.call_counts().values())
        failed = sum(1 for c in emulator.calls() if c.status != 200)

        def described_in_kms() -> bool:
            keys = {k["key_id"]: k for k in backend_keys(emulator)}
            return all(keys[b["status"]["keyId"]]["description"] == f"{n} updated" for n, b in bodies.items())

        poll(described_in_kms, timeout=5, what="updated descriptions in KMS")
        emulator.clear_faults()
        result = audit(backend_keys(emulator), kube.list(namespace))
        evidence = crashes(operator)

    record(
        fault_scenarios_converged=1,
        operator_crashes=len(evidence),
        keys_duplicated=result.duplicated,
        keys_orphaned=result.orphaned,
        keys_lost=result.lost,
        **{
            f"fault_{variant.name.replace('-', '_')}_seconds": converged,
            f"fault_{variant.name.replace('-', '_')}_calls_per_key": round(calls / count, 1),
            f"fault_{variant.name.replace('-', '_')}_failed_calls": failed,
        },
    )
    print(f"{variant.name}: {count} keys converged in {converged:.0f}s, {calls} calls ({failed} failed)")
    assert not evidence, evidence
    assert result.clean, str(result)
    assert calls / count < CALLS_PER_KEY_BOUND, f"{calls} KMS calls for {count} keys: a retry loop?"
