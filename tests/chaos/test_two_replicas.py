"""Scenario 4: two replicas with kopf peering: one reconciles, the other stands by and takes over on kill -9.

Each replica signs its KMS calls with its own access key, so the emulator's call log says which replica made
every call: the standby must make none, and after each kill only the new active one may. KMS must hold one
key per resource throughout. Failover time is measured as a user sees it: from the kill of the active replica
until a KmsKey applied after the kill is Ready.
"""

from __future__ import annotations

import itertools
import secrets
import statistics
import time

import pytest

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.chaos.audit import audit, backend_keys
from tests.chaos.conftest import FULL, OperatorFactory, crashes, peering_crds, record, scale
from tests.chaos.kube import Kube, wait_all_ready
from tests.conftest import Kubectl
from tests.harness.operator import OperatorProcess

pytestmark = pytest.mark.chaos

PEERING = "kmskey-chaos"
# Short keep-alives so a crashed replica is presumed dead in seconds (the default lifetime is 60 s).
LIFETIME_SECONDS = 10
GRACE_SECONDS = 2.0  # a killed replica's last calls may still be answered (and logged) just after the kill


@pytest.fixture
def peering(kubectl: Kubectl, kube: Kube, namespace: str) -> str:
    """kopf's peering CRDs (as the chart ships them) and a KopfPeering object in the test namespace."""
    path = peering_crds()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s", timeout=70)
    kube.call(
        "POST",
        f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}},
    )
    return PEERING


def start_replica(
    start_operator: OperatorFactory, emulator: EmulatorHandle, namespace: str, name: str, secret: str
) -> OperatorProcess:
    return start_operator(
        emulator,
        namespace,
        name=name,
        access_key=(name, secret),
        env={
            "KMSKEY_PEERING": PEERING,
            "POD_ID": name,
            "KMSKEY_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS),
        },
    )


def test_two_replicas_never_both_write_and_fail_over_after_kill_9(
    kube: Kube, start_operator: OperatorFactory, namespace: str, peering: str
) -> None:
    rounds = scale(1, 5)
    secrets_by_replica = {name: secrets.token_urlsafe(24) for name in ("replica-a", "replica-b")}
    failovers: list[float] = []
    names: list[str] = []
    with run_emulator(quotas=False, access_keys=secrets_by_replica) as emulator:
        replicas = {
            name: start_replica(start_operator, emulator, namespace, name, secret)
            for name, secret in secrets_by_replica.items()
        }
        # Active periods: (replica, since); the standby's calls outside them are double processing.
        timeline: list[tuple[str, float]] = []
        kube.create(namespace, "first", {"description": "who is active?"})
        names.append("first")
        wait_all_ready(kube, namespace, names, timeout=120)
        callers = {c.access_key_id for c in emulator.calls()}
        assert len(callers) == 1, f"both replicas called KMS: {callers}"
        active = callers.pop()
        timeline.append((active, 0.0))

        for round_ in range(rounds):
            # Work for the active replica while the standby watches: creates and updates.
            batch = [f"r{round_}-{i}" for i in range(4)]
            for name in batch:
                kube.create(namespace, name, {"description": name, "tags": {"round": str(round_)}})
            for name in names:
                kube.patch_spec(namespace, name, {"description": f"{name} in round {round_}"})
            names += batch
            wait_all_ready(kube, namespace, names, timeout=180)

            killed_at = time.time()
            replicas[active].kill()
            kube.create(namespace, f"after-kill-{round_}", {"description": "applied right after the kill"})
            names.append(f"after-kill-{round_}")
            wait_all_ready(kube, namespace, [f"after-kill-{round_}"], timeout=LIFETIME_SECONDS * 6 + 60)
            failovers.append(time.time() - killed_at)
            standby = next(n for n in replicas if n != active)
            timeline.append((standby, killed_at))
            # The killed replica comes back (a restarted pod) and must stay on standby.
            replicas[active].start(timeout=120)
            active = standby

        wait_all_ready(kube, namespace, names, timeout=180)
        calls = emulator.calls()
        result = audit(backend_keys(emulator), kube.list(namespace))
        evidence = [line for r in replicas.values() for line in crashes(r, killed_on_purpose=True)]

    def active_at(moment: float) -> str:
        current = timeline[0][0]
        for replica, since in timeline:
            if moment >= since:
                current = replica
        return current

    def previous_active(moment: float) -> str | None:
        for (before, _), (_, since) in itertools.pairwise(timeline):
            if since <= moment <= since + GRACE_SECONDS:
                return before
        return None

    double = [c for c in calls if c.access_key_id not in (active_at(c.time), previous_active(c.time))]
    record(
        failover_seconds=max(failovers),
        failover_rounds=len(failovers),
        failover_median_seconds=round(statistics.median(failovers), 2),
        peering_lifetime_seconds=float(LIFETIME_SECONDS),
        standby_kms_calls=len(double),
        keys_duplicated=result.duplicated,
        keys_orphaned=result.orphaned,
        keys_lost=result.lost,
        operator_crashes=len(evidence),
    )
    print(f"failover after kill -9: {[round(f, 1) for f in failovers]} s (lifetime {LIFETIME_SECONDS} s)")
    assert not evidence, evidence
    assert not double, f"{len(double)} KMS calls by the standby replica, e.g. {double[:3]}"
    assert result.clean, str(result)
    assert max(failovers) < LIFETIME_SECONDS * 6 + 60


@pytest.mark.skipif(not FULL, reason="full chaos run: make chaos")
def test_a_gracefully_stopped_active_replica_hands_over_at_once(
    kube: Kube, start_operator: OperatorFactory, namespace: str, peering: str
) -> None:
    """SIGTERM (a rolling update): kopf writes lifetime 0 on exit, so the standby resumes without waiting."""
    secrets_by_replica = {name: secrets.token_urlsafe(24) for name in ("replica-a", "replica-b")}
    with run_emulator(quotas=False, access_keys=secrets_by_replica) as emulator:
        replicas = {
            name: start_replica(start_operator, emulator, namespace, name, secret)
            for name, secret in secrets_by_replica.items()
        }
        kube.create(namespace, "first", {"description": "who is active?"})
        wait_all_ready(kube, namespace, ["first"], timeout=120)
        active = {c.access_key_id for c in emulator.calls()}.pop()
        stopped_at = time.time()
        replicas[active].stop()
        kube.create(namespace, "after-stop", {"description": "applied right after the stop"})
        wait_all_ready(kube, namespace, ["after-stop"], timeout=120)
        handover = time.time() - stopped_at
        result = audit(backend_keys(emulator), kube.list(namespace))
    record(graceful_handover_seconds=handover)
    print(f"graceful handover: {handover:.1f} s")
    assert result.clean, str(result)
    assert handover < LIFETIME_SECONDS, "a graceful stop should not wait for the keep-alive to expire"
