"""Start, record and stop the local helper processes (etcd, kube-apiserver, the KMS emulator, ...).

Every process is started in its own session with the proxy variables removed, its output goes to a log file,
and it is identified by PID *and* kernel start time, so a later `stop` can never hit a recycled PID. Only the
processes recorded here are ever signalled: never a process group, never a name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)

_PR_SET_PDEATHSIG = 1


def child_environment(
    extra: Mapping[str, str] | None = None, drop_prefixes: Sequence[str] = ()
) -> dict[str, str]:
    """The current environment without proxy variables (children talk to 127.0.0.1 only), plus `extra`.

    Variables whose names start with one of `drop_prefixes` (e.g. `AWS_`) are not inherited either.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PROXY_VARIABLES and not any(k.startswith(p) for p in drop_prefixes)
    }
    env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
    if extra:
        env.update(extra)
    return env


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies, even by SIGKILL (Linux only)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 2 (comm) may contain spaces and parentheses; everything after the last ")" is well-formed.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is left
        return None
    return int(fields[19])


def process_rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a running process, in bytes."""
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a started process across Python processes (written to `.dev/pids`)."""

    name: str
    pid: int
    start_ticks: int
    log: str

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_ticks": self.start_ticks, "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(str(data["name"]), int(data["pid"]), int(data["start_ticks"]), str(data["log"]))


def stop_record(record: ProcessRecord, grace_seconds: float = 10.0) -> None:
    """SIGTERM exactly this process, then SIGKILL it after `grace_seconds`; a no-op when it is gone."""
    if not record.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not record.alive():
            return
        time.sleep(0.05)
    if record.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one helper process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    drop_env_prefixes: Sequence[str] = ()  # inherited variables not passed on (`env` still is)


class ManagedProcess:
    """One started process: its log file, its record, and a stop that signals only its own PID."""

    def __init__(self, spec: ProcessSpec, log_path: Path, *, detach: bool = False) -> None:
        self.spec = spec
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_environment(spec.env, spec.drop_env_prefixes),
            cwd=spec.cwd,
            # Own session: a Ctrl-C in the terminal reaches only us, and we stop children in order.
            start_new_session=True,
            # Attached (tests): die with the test process even if it is SIGKILLed.
            # Detached (make dev-up): outlive the short-lived `up` command.
            preexec_fn=None if detach else _die_with_parent,
        )
        ticks = process_start_ticks(self.popen.pid)
        self.record = ProcessRecord(spec.name, self.popen.pid, ticks or 0, str(log_path))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self.popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace_seconds: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
