"""A network + mount namespace pair that the test creates, and ways in: processes, threads, forwarded ports.

The namespaces are held by one process (`unshare --net --mount ... sleep`), never bind-mounted under
/run/netns, so they vanish with the last process inside them: nothing leaks when a test run is killed.
Processes enter with `nsenter` (which execs, so the PID is the command's own); a thread of the test
process can enter the network namespace alone (setns), which is how the in-process KMS emulator listens
inside it and how `Forwarder` connects a 127.0.0.1 port of the host to an address inside it. Nothing here
dials an address outside the namespace or other than 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.harness.processes import ManagedProcess, ProcessSpec, child_environment

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NamespaceError(RuntimeError):
    """The namespaces could not be created or entered."""


def _setns(path: str, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, nstype) != 0:
            errno = ctypes.get_errno()
            raise NamespaceError(f"setns({path}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NodeNamespace:
    """The holder process and its namespaces; `wrap()` turns an argv into one that runs inside them."""

    def __init__(self, log_dir: Path, *, cgroup_procs: Sequence[Path] = ()) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise NamespaceError(f"{tool} is not installed (util-linux, iproute2)")
        self.cgroup_procs = tuple(cgroup_procs)
        spec = ProcessSpec(
            "netns-holder",
            self.in_cgroup(["unshare", "--net", "--mount", "--propagation", "private", "sleep", "infinity"]),
        )
        self.holder = ManagedProcess(spec, log_dir / "netns-holder.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.holder.exited() is not None:
                raise NamespaceError(f"unshare exited: {self.holder.log_tail()}")
            if self._entered():
                return
            time.sleep(0.02)
        raise NamespaceError("unshare did not create the namespaces within 10 s")

    def _entered(self) -> bool:
        try:
            own = os.readlink("/proc/self/ns/net")
            return os.readlink(f"/proc/{self.holder.pid}/ns/net") != own
        except OSError:
            return False

    @property
    def net_path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def mount_path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/mnt"

    def in_cgroup(self, argv: Sequence[str]) -> list[str]:
        """argv run by a shell that first moves itself into the run's cgroups, then execs (same PID)."""
        if not self.cgroup_procs:
            return list(argv)
        moves = "; ".join(f'echo $$ > "{p}"' for p in self.cgroup_procs)
        return ["sh", "-c", f'{moves}; exec "$@"', "sh", *argv]

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """argv run inside the namespaces (and the run's cgroups)."""
        return self.in_cgroup(
            ["nsenter", f"--net={self.net_path}", f"--mount={self.mount_path}", "--", *argv]
        )

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the namespaces; raises NamespaceError (with its output) on failure."""
        result = subprocess.run(
            self.wrap(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_environment(),
            check=False,
        )
        if check and result.returncode != 0:
            raise NamespaceError(
                f"{' '.join(argv)} exited {result.returncode} inside the node namespace:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def call_in_netns(self, fn: Callable[[], T]) -> T:
        """Call fn in a thread that has entered the network namespace; threads it starts stay there."""
        results: queue.Queue[tuple[bool, object]] = queue.Queue()

        def target() -> None:
            try:
                _setns(self.net_path, CLONE_NEWNET)
                results.put((True, fn()))
            except BaseException as error:  # handed back to the caller
                results.put((False, error))

        threading.Thread(target=target, name="netns-call", daemon=True).start()
        ok, value = results.get(timeout=120)
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def stop(self) -> None:
        self.holder.stop(grace_seconds=2)


class Forwarder:
    """127.0.0.1:<port> on the host, relayed to host:port inside the namespace, for tools run on the host."""

    def __init__(self, namespace: NodeNamespace, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._namespace = namespace
        self._thread = threading.Thread(target=self._accept_loop, name=f"forward-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        _setns(self._namespace.net_path, CLONE_NEWNET)  # sockets made from here on are inside
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            done = threading.Barrier(2, action=_closer(client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink, done), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def _closer(*sockets: socket.socket) -> Callable[[], None]:
    def close() -> None:
        for sock in sockets:
            sock.close()

    return close


def _pump(source: socket.socket, sink: socket.socket, done: threading.Barrier) -> None:
    """Copy one direction until EOF, pass the EOF on; the second direction to finish closes both sockets."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait(timeout=600)
