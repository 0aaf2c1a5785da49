"""tests/harness/ports.py: ports handed to child processes are never handed out twice, nor by the kernel.

The bug these guard against: `make dev-up` reserved the operator's ports by binding port 0 and closing,
then the control plane did the same, the kernel gave it the same number, and the operator died on start
with `OSError: [Errno 98] ... address already in use` (the API server had it).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ports

REPO_ROOT = Path(__file__).resolve().parents[2]
WINDOW = 12


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ports.REGISTRY_ENV, str(tmp_path / "ports"))
    return tmp_path / "ports"


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> range:
    """A small pool of WINDOW ports of the real pool that nothing listens on now."""
    real = ports.pool()
    for start in range(real.start + 5000, real.stop - WINDOW, WINDOW):
        candidate = range(start, start + WINDOW)
        if all(bindable(p) for p in candidate):
            monkeypatch.setattr(ports, "pool", lambda chosen=candidate: chosen)
            return candidate
    pytest.fail("no window of free ports found")


class Holder:
    """Another process that reserves `count` ports of `window` and holds them until told to exit."""

    def __init__(self, registry: Path, window: range, count: int) -> None:
        script = textwrap.dedent(
            f"""
            import sys
            from tests.harness import ports
            ports.pool = lambda: range({window.start}, {window.stop})
            print(" ".join(map(str, ports.free_ports({count}))), flush=True)
            sys.stdin.read()
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={"PATH": "/usr/bin:/bin", ports.REGISTRY_ENV: str(registry)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ports = [int(p) for p in self.process.stdout.readline().split()]

    def exit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture
def holder(registry: Path, window: range) -> Iterator[Holder]:
    held = Holder(registry, window, WINDOW // 2)
    yield held
    if held.process.poll() is None:
        held.exit()


def test_ports_come_from_outside_the_kernels_ephemeral_range(registry: Path) -> None:
    # bind(0) and connect() only ever pick ports inside it, so no other process is given these by the kernel.
    low, high = ports.ephemeral_range()
    chosen = ports.free_ports(50)
    assert len(set(chosen)) == 50
    assert [p for p in chosen if low <= p <= high] == []


def test_a_port_is_never_handed_out_twice_while_its_owner_lives(registry: Path, window: range) -> None:
    first = ports.free_ports(WINDOW // 2)
    second = ports.free_ports(WINDOW - WINDOW // 2)
    assert sorted(first + second) == list(window)  # the whole window, no port twice
    with pytest.raises(ports.PortsExhausted, match=f"0 of 1 ports free in {window.start}"):
        ports.free_ports(1)


def test_another_live_processs_ports_are_not_handed_out_and_are_once_it_exits(
    registry: Path, window: range, holder: Holder
) -> None:
    assert len(holder.ports) == WINDOW // 2
    assert set(ports.reserved_by_live_processes()) == set(holder.ports)
    mine = ports.free_ports(WINDOW - WINDOW // 2)
    assert set(mine).isdisjoint(holder.ports)
    with pytest.raises(ports.PortsExhausted):
        ports.free_ports(1)
    holder.exit()
    assert sorted(ports.free_ports(len(holder.ports))) == sorted(holder.ports)


def test_a_port_something_listens_on_is_not_handed_out(registry: Path, window: range) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", window.start))
        listener.listen()
        chosen = ports.free_ports(WINDOW - 1)
    assert window.start not in chosen
    assert sorted(chosen) == list(window)[1:]


def test_without_room_below_the_ephemeral_range_the_pool_is_every_unprivileged_port() -> None:
    assert ports.pool((32768, 60999)) == range(ports.LOWEST_PORT, 32768)
    assert ports.pool((1024, 65535)) == range(1024, 65536)
