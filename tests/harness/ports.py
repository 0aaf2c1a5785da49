"""TCP ports on 127.0.0.1 for child processes to listen on, reserved machine-wide until their owner exits.

A harness cannot bind a port and hand the bound socket to etcd, kube-apiserver, the operator or moto: it
names a port and the child binds it later. The old way to find one (bind port 0, read the number, close)
raced twice. The kernel hands the same number to the next `bind(0)` or outgoing connection of any process
on the machine (another test session, the same session's next harness: `make dev-up` once got the API
server's port for the operator's webhook), and nothing stopped two harnesses from naming the same port.

So a port is chosen here, under one lock shared by every harness process on the machine (every worktree,
clone and test session of this user), from the ports the kernel never picks by itself: those below its
ephemeral range (`net.ipv4.ip_local_port_range`), which neither `bind(0)` nor `connect()` ever uses. A port is
handed out only when nothing listens on it now and no live process holds it in the registry; it stays held
until the process that reserved it exits (the registry keeps PID and kernel start time, so a recycled PID
holds nothing). Between the reservation and the child's bind, nothing that cooperates can take it, and
nothing else is ever given it by the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

from tests.harness.processes import process_start_ticks

LOOPBACK = "127.0.0.1"
LOWEST_PORT = 15000  # below: well-known service ports (kubelet's 10250, ...) that other tools bind
REGISTRY_ENV = "KMSKEY_PORT_REGISTRY"
DEFAULT_REGISTRY = Path.home() / ".cache" / "kmskey-operator" / "ports"
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
MIN_POOL = 1000  # fewer ports than this below the ephemeral range: use every unprivileged port instead


class PortsExhausted(RuntimeError):
    """No port in the pool is free and unreserved."""


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive), Linux's default when it cannot be read."""
    try:
        low, high = (int(n) for n in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def pool(ephemeral: tuple[int, int] | None = None) -> range:
    """The ports reservations come from: below the ephemeral range, else (no room there) all of them."""
    low, _ = ephemeral or ephemeral_range()
    if low - LOWEST_PORT >= MIN_POOL:
        return range(LOWEST_PORT, low)
    return range(1024, 65536)


def registry_dir() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on, reserved for this process until it exits."""
    owner = [os.getpid(), process_start_ticks(os.getpid()) or 0]
    candidates = pool()
    with _locked_registry() as reservations:
        live = {port: holder for port, holder in reservations.items() if _alive(holder)}
        chosen: list[int] = []
        for port in random.sample(candidates, len(candidates)):
            if str(port) in live or not _nothing_listens(port):
                continue
            chosen.append(port)
            if len(chosen) == count:
                break
        else:
            raise PortsExhausted(
                f"only {len(chosen)} of {count} ports free in {candidates.start}-{candidates.stop - 1} "
                f"({len(live)} reserved by live processes in {registry_dir()})"
            )
        live.update({str(port): owner for port in chosen})
        reservations.clear()
        reservations.update(live)
    return chosen


def reserved_by_live_processes() -> dict[int, int]:
    """Port -> PID of every reservation whose owner still runs (for tests and for debugging)."""
    with _locked_registry() as reservations:
        return {int(port): holder[0] for port, holder in reservations.items() if _alive(holder)}


@contextlib.contextmanager
def _locked_registry() -> Iterator[dict[str, list[int]]]:
    """The registry (port -> [pid, start ticks]) under an exclusive lock; written back when the block ends."""
    directory = registry_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "reserved.json"
    with (directory / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                reservations: dict[str, list[int]] = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                reservations = {}
            yield reservations
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(reservations))
            temporary.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(holder: list[int]) -> bool:
    pid, ticks = holder
    return process_start_ticks(pid) == ticks


def _nothing_listens(port: int) -> bool:
    """Binding 127.0.0.1:port works now (no SO_REUSEADDR: a port still in TIME_WAIT is not taken either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
