"""Which addresses a process talks to: the remote ends of its TCP/UDP sockets, read from /proc (Linux).

The bench's rule is that nothing dials any address but 127.0.0.1. `SocketAudit` samples the sockets of the
processes it is given (their /proc/PID/fd links to socket inodes, looked up in /proc/PID/net/{tcp,udp}[6])
from a thread while they run, so a run can show, and fail on, any connection that left 127.0.0.0/8.
A sample sees connected and connecting sockets; a connection shorter than the interval can slip through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TCP_LISTEN = "0A"


def decode_address(hex_address: str) -> tuple[str, int]:
    """`0100007F:1F90` (as in /proc/net/tcp: host byte order per 32-bit word) → ("127.0.0.1", 8080)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # Each 32-bit word is in the kernel's (little-endian here) byte order.
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    return str(address), int(port, 16)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(FileNotFoundError, OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def parse_proc_net(text: str, inodes: set[str]) -> set[tuple[str, int]]:
    """Remote (address, port) of the sockets in a /proc/net/{tcp,tcp6,udp,udp6} table whose inode is given.

    Listening sockets and unconnected ones (remote 0.0.0.0:0 / [::]:0) have no remote end and are skipped.
    """
    remotes = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[9] not in inodes or fields[3] == TCP_LISTEN:
            continue
        address, port = decode_address(fields[2])
        if port == 0 and ipaddress.ip_address(address).is_unspecified:
            continue
        remotes.add((address, port))
    return remotes


def remote_addresses(pid: int) -> set[tuple[str, int]]:
    """Every remote (address, port) `pid`'s TCP and UDP sockets are connected to right now."""
    inodes = socket_inodes(pid)
    if not inodes:
        return set()
    remotes: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            remotes |= parse_proc_net(Path(f"/proc/{pid}/net/{table}").read_text(), inodes)
    return remotes


class SocketAudit:
    """Samples the remote ends of some processes' sockets from a thread; `foreign()` lists non-loopback."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.seen: dict[str, set[tuple[str, int]]] = {name: set() for name in pids}
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="socket-audit", daemon=True)

    def __enter__(self) -> SocketAudit:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def add(self, name: str, pid: int) -> None:
        """Audit one more process from now on (call it right after starting the process)."""
        with self._lock:
            self.pids[name] = pid
            self.seen.setdefault(name, set())
        self.sample()

    def remove(self, name: str) -> None:
        """Stop auditing a process that has ended (what it was seen to dial is kept)."""
        with self._lock:
            self.pids.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            for name, pid in self.pids.items():
                self.seen[name] |= remote_addresses(pid)
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def foreign(self) -> dict[str, list[str]]:
        """Per process, every non-loopback remote address:port seen (empty: nothing left 127.0.0.0/8)."""
        with self._lock:
            return {
                name: sorted(f"{a}:{p}" for a, p in seen if not is_loopback(a))
                for name, seen in self.seen.items()
                if any(not is_loopback(a) for a, _ in seen)
            }

    def summary(self) -> dict[str, Any]:
        foreign = self.foreign()
        with self._lock:
            remotes = {n: sorted({a for a, _ in s}) for n, s in self.seen.items()}
        return {
            "samples": self.samples,
            "interval_seconds": self.interval,
            "remote_addresses": remotes,
            "foreign": foreign,
        }
