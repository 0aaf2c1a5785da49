"""Scenario 1: kill -9 the operator at random moments during bursts of creates; KMS ends with one key each.

CreateKey is slowed down on both sides of the action (the emulator's latency before it, and after it with
`after_action`, when the key already exists but its answer has not arrived). Odd trials kill at the worst
moment (just after KMS created a key, before the operator heard back), even ones at a random moment of the
burst (before, during or after creates, follow-up calls and status writes). Each batch of
trials uses its own namespace and operator, so a restart re-lists a bounded number of resources.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from typing import Any

import pytest

from kms_emulator.testing import run_emulator
from tests.chaos.audit import audit, backend_keys
from tests.chaos.conftest import OperatorFactory, crashes, record, scale
from tests.chaos.kube import GROUP_PATH, Kube, poll, wait_all_ready

pytestmark = pytest.mark.chaos

TRIALS_PER_BATCH = 10


def spec_for(rng: random.Random, trial: int, index: int) -> dict[str, Any]:
    """A spread of specs, so some creates need follow-up calls (disable, rotation) that a kill can split."""
    spec: dict[str, Any] = {"description": f"trial {trial} key {index}"}
    shape = rng.randrange(4)
    if shape == 1:
        spec["status"] = "Disabled"
    elif shape == 2:
        spec.update(enableAutomaticRotation=True, rotationInterval="30d")
    elif shape == 3:
        spec["tags"] = {"team": f"t{trial}", "index": str(index)}
    return spec


def test_kill_9_during_bursts_of_creates_leaves_exactly_one_key_per_kmskey_and_no_orphans(
    kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    trials = scale(5, 50)
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    namespaces: list[str] = []
    kills: list[float] = []
    with run_emulator(quotas=False, max_keys=100_000) as emulator:
        emulator.set_fault("CreateKey", code=None, latency_ms=150)
        emulator.set_fault("CreateKey", code=None, latency_ms=350, after_action=True)
        done = 0
        batch = 0
        while done < trials:
            batch_ns = namespace if batch == 0 else kube_namespace(kube, f"{namespace}-{batch}")
            namespaces.append(batch_ns)
            operator = start_operator(
                emulator, batch_ns, name=f"crashy-{batch}", env={"KMSKEY_READ_QPS": "0"}
            )
            names: list[str] = []
            for _ in range(min(TRIALS_PER_BATCH, trials - done)):
                keys_before = len(emulator.backend.keys)
                for index in range(rng.randint(2, 5)):
                    name = f"t{done}-{index}"
                    kube.create(batch_ns, name, spec_for(rng, done, index))
                    names.append(name)
                if done % 2:
                    # The worst moment: KMS has just created a key, its answer is still on the way.
                    poll(
                        lambda n=keys_before: len(emulator.backend.keys) > n,
                        timeout=60,
                        interval=0.01,
                        what="a CreateKey to reach KMS",
                    )
                    time.sleep(rng.uniform(0.0, 0.3))  # inside the 350 ms before the answer
                else:
                    time.sleep(rng.uniform(0.0, 2.5))  # a random moment of the crash, not a wait for anything
                kills.append(time.time())
                operator.kill()
                operator.start(timeout=120)
                done += 1
            wait_all_ready(kube, batch_ns, names, timeout=240)
            evidence = crashes(operator)
            record(operator_crashes=len(evidence))
            assert not evidence, evidence
            operator.stop()
            batch += 1

        resources = [
            r
            for r in kube.call("GET", f"{GROUP_PATH}/kmskeys")["items"]
            if r["metadata"]["namespace"] in namespaces
        ]
        result = audit(backend_keys(emulator), resources)
        creates = [c.time for c in emulator.calls() if c.action == "CreateKey" and c.status == 200]
        # A CreateKey answered within a second after a kill was sent by the dead process (a restart takes
        # longer than that): KMS created the key, and nobody heard back.
        answers_lost = sum(1 for t in creates if any(k <= t <= k + 1.0 for k in kills))

    record(
        crash_trials=trials,
        keys_duplicated=result.duplicated,
        keys_orphaned=result.orphaned,
        keys_lost=result.lost,
        crash_resources=len(resources),
        crash_creates_answer_lost=answers_lost,
        crash_create_calls=len(creates),
    )
    assert result.clean, f"seed {seed}: {result}"
    assert result.keys == len(resources), f"seed {seed}: {result}"


def kube_namespace(kube: Kube, name: str) -> str:
    kube.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name
