"""Scenario 5: KMS (the emulator process, with its state file) goes away and comes back; nothing is lost.

The emulator runs as its own process on a fixed port, as `python -m kms_emulator --state-file F`. It is killed
(SIGKILL, then SIGTERM in the full run) while the operator has work pending: spec changes and a new KmsKey
applied during the outage. After the restart every key is still there with the same ID, tags and settings,
the pending changes reach KMS, and no key was created twice.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kms_emulator.admin_client import AdminClient
from tests.chaos.audit import audit
from tests.chaos.conftest import OperatorFactory, crashes, record, scale
from tests.chaos.kube import Kube, condition, poll, wait_all_ready
from tests.harness.ports import free_ports
from tests.harness.processes import ManagedProcess, ProcessSpec

pytestmark = pytest.mark.chaos

SPECS: dict[str, dict[str, Any]] = {
    "plain": {"description": "plain"},
    "disabled": {"description": "disabled", "status": "Disabled"},
    "rotating": {"description": "rotating", "enableAutomaticRotation": True, "rotationInterval": "30d"},
    "tagged": {"description": "tagged", "tags": {"team": "payments", "cost-center": "42"}},
    "protected": {"description": "protected", "enableDeletionProtection": True},
}
# What must survive a restart unchanged, field by field, in the emulator's stored key.
KEPT = ("key_id", "arn", "creation_date", "key_spec", "key_usage", "origin", "tags", "rotation_interval")


class EmulatorProcess:
    def __init__(self, state_file: Path, log_dir: Path) -> None:
        (self.port,) = free_ports(1)
        self.state_file = state_file
        self.log_path = log_dir / "kms-emulator.log"
        self.admin = AdminClient(f"http://127.0.0.1:{self.port}")
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "kms_emulator", "--port", str(self.port), "--quotas", "off"]
        argv += ["--state-file", str(self.state_file)]
        self.process = ManagedProcess(ProcessSpec("kms-emulator", argv), self.log_path)
        poll(self._healthy, timeout=60, interval=0.2, what="the KMS emulator to listen")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.exited() is not None:
            raise AssertionError(f"the emulator exited:\n{self.process.log_tail()}")
        return self.admin.health()

    def halt(self, how: signal.Signals) -> None:
        assert self.process is not None
        self.process.popen.send_signal(how)
        self.process.popen.wait(30)
        self.process.stop()

    def stored_keys(self) -> dict[str, dict[str, Any]]:
        stored = self.admin.keys()  # the emulator's state, as the admin API reads it
        return {k["key_id"]: k for k in stored}


def test_an_emulator_restart_with_its_state_file_loses_nothing_and_the_operator_reconnects(
    kube: Kube, start_operator: OperatorFactory, namespace: str, tmp_path: Path
) -> None:
    signals = [signal.SIGKILL, signal.SIGTERM][: scale(1, 2)]
    kms = EmulatorProcess(tmp_path / "kms-state.json", tmp_path)
    kms.start()
    try:
        operator = start_operator(
            None,
            namespace,
            endpoint=kms.endpoint,
            access_key=("emulator-access-key-id", "emulator-access-key-secret"),
            env={"KMSKEY_KMS_CONNECT_TIMEOUT_MS": "1000", "KMSKEY_KMS_READ_TIMEOUT_MS": "3000"},
        )
        expected = {name: spec["description"] for name, spec in SPECS.items()}
        for name, spec in SPECS.items():
            kube.create(namespace, name, spec)
        wait_all_ready(kube, namespace, list(SPECS), timeout=120)
        for cycle, how in enumerate(signals):
            before = kms.stored_keys()
            kms.halt(how)
            # Work that can only be done once KMS is back: changes to existing keys, and a new one.
            for name in ("plain", "tagged"):
                expected[name] = f"changed during outage {cycle}"
                kube.patch_spec(namespace, name, {"description": expected[name]})
            new = f"new-during-outage-{cycle}"
            kube.create(namespace, new, {"description": new})
            expected[new] = new
            poll(
                lambda: condition(kube.get(namespace, "plain"), "Synced").get("reason") == "KmsUnavailable",
                timeout=60,
                what="the operator to report KMS unavailable",
            )
            time.sleep(1.0)  # a little more outage; nothing is asserted on the clock
            kms.start()
            bodies = wait_all_ready(kube, namespace, list(expected), timeout=240)
            after = kms.stored_keys()

            lost = [key_id for key_id in before if key_id not in after]
            changed = [
                f"{key_id}.{field}: {before[key_id][field]!r} -> {after[key_id][field]!r}"
                for key_id in before
                if key_id in after
                for field in KEPT
                if before[key_id][field] != after[key_id][field]
            ]
            assert not lost, f"keys lost in the restart: {lost}"
            assert not changed, f"keys changed by the restart: {changed}"
            for name, body in bodies.items():
                assert after[body["status"]["keyId"]]["description"] == expected[name], name
            assert after[bodies["disabled"]["status"]["keyId"]]["key_state"] == "Disabled"
            assert after[bodies["protected"]["status"]["keyId"]]["deletion_protection"] is True
        result = audit(kms.stored_keys().values(), kube.list(namespace))
        evidence = crashes(operator)
    finally:
        if kms.process is not None:
            kms.process.stop()

    record(
        emulator_restarts=len(signals),
        keys_lost=result.lost,
        keys_duplicated=result.duplicated,
        keys_orphaned=result.orphaned,
        operator_crashes=len(evidence),
    )
    assert not evidence, evidence
    assert result.clean, str(result)
