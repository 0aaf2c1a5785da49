"""A killed test node leaves nothing behind: the next run removes its processes, cgroups and state."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

from tests.harness.cgroups import CGROUP_ROOT, NodeCgroups, write_owner
from tests.harness.node import STATE_PARENT, sweep_stale_runs


def test_a_run_whose_owner_died_is_swept_with_its_processes_cgroups_and_state() -> None:
    run_id = f"stale{secrets.token_hex(3)}"
    state = STATE_PARENT / f"kmskey-node-{run_id}"
    state.mkdir(parents=True)
    # An owner that no longer exists: a process that ran and was reaped.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (state / "owner.json").write_text(json.dumps({"pid": gone.pid, "start_ticks": 1}))
    cgroups = NodeCgroups(run_id)
    moves = "; ".join(f'echo $$ > "{p}"' for p in cgroups.daemon_procs)
    # A "container" left running in the run's cgroups, as a killed run leaves its shims and pods.
    orphan = subprocess.Popen(["sh", "-c", f"{moves}; exec sleep 600"])
    try:
        deadline = time.monotonic() + 10
        while orphan.pid not in cgroups.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert orphan.pid in cgroups.pids()

        assert run_id in sweep_stale_runs()

        assert orphan.wait(timeout=20) == -9
        assert not (CGROUP_ROOT / "pids" / cgroups.name).exists()
        assert not any((h / cgroups.name).exists() for h in cgroups.hierarchies)
        assert not state.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        cgroups.remove()


def test_a_run_whose_owner_lives_is_left_alone() -> None:
    run_id = f"alive{secrets.token_hex(3)}"
    state = STATE_PARENT / f"kmskey-node-{run_id}"
    state.mkdir(parents=True)

    write_owner(state / "owner.json")  # this test process: alive
    cgroups = NodeCgroups(run_id)
    try:
        assert run_id not in sweep_stale_runs()
        assert (CGROUP_ROOT / "pids" / cgroups.name).exists()
        assert state.exists()
        assert os.getpid() == json.loads((state / "owner.json").read_text())["pid"]
    finally:
        cgroups.remove()
        (state / "owner.json").unlink()
        state.rmdir()
