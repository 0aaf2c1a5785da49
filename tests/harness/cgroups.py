"""One cgroup subtree per test node, so everything the node starts (daemons, shims, containers) is found and
stopped, and its cgroups removed, even after a run that was killed.

The subtree is `/kmskey-node-<run id>` in every cgroup v1 hierarchy (the machines run hybrid cgroups:
v1 controllers, v2 without them); kubelet's `cgroupRoot` points there, so pods land under it too. The
run's owner (PID + start time of the test process) is written beside its state, so a later run removes
only the subtrees of owners that are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness.processes import process_start_ticks

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "kmskey-node-"
# The hierarchies a process is moved into (and kubelet's cgroupfs driver manages).
HIERARCHIES = ("pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd")


class CgroupError(RuntimeError):
    """The machine's cgroups are not what the node needs."""


def v1_hierarchies() -> list[Path]:
    found = [CGROUP_ROOT / name for name in HIERARCHIES if (CGROUP_ROOT / name / "cgroup.procs").exists()]
    if not any(p.name == "pids" for p in found):
        raise CgroupError(
            f"no cgroup v1 pids hierarchy at {CGROUP_ROOT}/pids: the test node needs writable cgroup v1 "
            "controllers (kubelet's cgroupfs driver)"
        )
    return found


class NodeCgroups:
    """`/kmskey-node-<id>` with a `daemons` child in each hierarchy; removed by `remove()`."""

    def __init__(self, run_id: str) -> None:
        self.name = f"{PREFIX}{run_id}"
        self.hierarchies = v1_hierarchies()
        for hierarchy in self.hierarchies:
            for path in (hierarchy / self.name, hierarchy / self.name / "daemons"):
                path.mkdir(exist_ok=True)
                if hierarchy.name == "cpuset":  # a cpuset without cpus and mems takes no task
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((path.parent / knob).read_text())

    @property
    def kubelet_root(self) -> str:
        """kubelet's cgroupRoot."""
        return f"/{self.name}"

    @property
    def daemon_procs(self) -> list[Path]:
        """The cgroup.procs files a node daemon writes its PID into before it execs."""
        return [h / self.name / "daemons" / "cgroup.procs" for h in self.hierarchies]

    def pids(self) -> set[int]:
        return subtree_pids(CGROUP_ROOT / "pids" / self.name)

    def kill_all(self, except_pids: frozenset[int] = frozenset(), timeout: float = 15.0) -> None:
        kill_subtree(CGROUP_ROOT / "pids" / self.name, except_pids, timeout)

    def remove(self) -> None:
        kill_subtree(CGROUP_ROOT / "pids" / self.name, frozenset(), 15.0)
        for hierarchy in self.hierarchies:
            remove_subtree(hierarchy / self.name)


def subtree_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    if not top.exists():
        return pids
    for directory, _, _ in os.walk(top):
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (Path(directory) / "cgroup.procs").read_text().split()}
    return pids


def kill_subtree(top: Path, except_pids: frozenset[int], timeout: float) -> None:
    """SIGKILL every process in the subtree (but except_pids) until none is left or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = subtree_pids(top) - except_pids
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_subtree(top: Path) -> None:
    """rmdir the cgroups of the subtree, deepest first (a cgroup directory is removed with rmdir, not rm)."""
    if not top.exists():
        return
    directories = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    for directory in directories:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # still busy for a moment after its last task died
                time.sleep(0.1)


def write_owner(path: Path) -> None:
    pid = os.getpid()
    path.write_text(json.dumps({"pid": pid, "start_ticks": process_start_ticks(pid)}))


def owner_alive(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(process_start_ticks(int(owner["pid"])) == owner["start_ticks"])


def stale_runs(state_parent: Path) -> Iterator[str]:
    """Run ids whose cgroups exist but whose owner (<state_parent>/<prefix><id>/owner.json) is gone."""
    pids_root = CGROUP_ROOT / "pids"
    if not pids_root.exists():
        return
    for cgroup in pids_root.glob(f"{PREFIX}*"):
        if not owner_alive(state_parent / cgroup.name / "owner.json"):
            yield cgroup.name.removeprefix(PREFIX)
