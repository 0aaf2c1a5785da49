"""Chaos tests: the real operator, API server and KMS emulator, with things going wrong on purpose.

Two sizes. The quick subset (a few trials per scenario) runs in `make test` with plain `pytest`; `make chaos`
sets CHAOS_FULL=1 for the full trial counts and the long-only tests, and CHAOS_RESULTS=<path> to write the
measured figures (only then: a quick run never overwrites the committed tests/chaos/results/latest.json).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kms_emulator.testing import EmulatorHandle
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess

from .kube import Kube

FULL = os.environ.get("CHAOS_FULL", "") == "1"
full_only = pytest.mark.skipif(not FULL, reason="full chaos run: make chaos")
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO_ROOT / "deploy" / "helm" / "kmskey-operator" / "crds"

# Every figure the README's reliability section quotes; counters add up across scenarios. A figure starts as
# None (not measured) and stays null in the results when no scenario recorded it, for instance because the
# scenario failed first: an unmeasured "keys_duplicated" must never read as 0 duplicated.
FIGURES = (
    "crash_trials",
    "keys_duplicated",
    "keys_orphaned",
    "keys_lost",
    "fault_rate",
    "fault_scenarios_converged",
    "fault_scenarios_total",
    "failover_seconds",
    "hostile_specs_tried",
    "operator_crashes",
    "secrets_leaked",
    "tenant_rounds",
    "foreign_keys_written",
    "foreign_keys_deleted",
)
RESULTS: dict[str, Any] = dict.fromkeys(FIGURES)


def scale(quick: int, full: int) -> int:
    """A trial count: `quick` in `make test`, `full` in `make chaos`."""
    return full if FULL else quick


def record(**figures: float) -> None:
    """Add counters (ints) or set measurements (floats; the worst value wins for `*_seconds`)."""
    for name, value in figures.items():
        current = RESULTS.get(name)
        if current is None:
            RESULTS[name] = round(value, 3) if isinstance(value, float) else value
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(current, int):
            RESULTS[name] = current + value
        elif name.endswith("_seconds") and isinstance(current, int | float):
            RESULTS[name] = round(max(float(current), float(value)), 2)
        else:
            RESULTS[name] = round(value, 3) if isinstance(value, float) else value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("CHAOS_RESULTS")
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **RESULTS,
        "unmeasured": sorted(name for name, value in RESULTS.items() if value is None),
        "full": FULL,
        "passed": exitstatus == 0,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "commit": _git_commit(),
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return ""


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    return Kube(control_plane)


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(kubeconfig: Path, crd_installed: list[str], tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start operators for one test; every one still running at the end is stopped (SIGTERM)."""
    started: list[OperatorProcess] = []

    def start(
        emulator: EmulatorHandle | None,
        namespace: str,
        *,
        name: str = "operator",
        env: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        access_key: tuple[str, str] | None = None,
        wait: bool = True,
    ) -> OperatorProcess:
        key_id, secret = access_key or (
            (emulator.access_key_id, emulator.access_key_secret) if emulator else ("", "")
        )
        process = OperatorProcess(
            kubeconfig=kubeconfig,
            kms_endpoint=endpoint or (emulator.endpoint if emulator else ""),
            access_key_id=key_id,
            access_key_secret=secret,
            log_dir=tmp_path,
            name=name,
            extra_env={
                "WATCH_NAMESPACES": namespace,
                "KMSKEY_WEBHOOK_ENABLED": "false",
                **(env or {}),
            },
        )
        started.append(process)
        if wait:
            process.start(timeout=120)
        return process

    yield start
    for process in started:
        process.stop()


# A traceback block in the log: from its header to the next timestamped line.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):\n(?:(?!\[\d{4}-).*\n?)*")


def crashes(process: OperatorProcess, *, killed_on_purpose: bool = False) -> list[str]:
    """Evidence that the operator crashed: it exited on its own, or an exception escaped our code.

    kopf logs its own failed API requests with a traceback (e.g. while the API server is down) and retries;
    those pass through kopf and aiohttp only and are not crashes. A traceback through kmskey_operator is: an
    exception a handler or one of our tasks did not expect.
    """
    evidence = []
    if not killed_on_purpose and process.process is not None:
        code = process.process.exited()
        if code is not None and code != 0:
            evidence.append(f"{process.name} exited with code {code}")
    log = process.log()
    for match in _TRACEBACK.finditer(log):
        if "/kmskey_operator/" in match.group(0):
            evidence.append(f"{process.name}: {log[max(0, match.start() - 300) : match.end()][:3000]}")
    return evidence


def peering_crds() -> Path:
    """kopf's peering CRDs as the Helm chart ships them (fallback: the copy in tests/chaos)."""
    shipped = CHART_CRDS / "kopfpeerings.kopf.dev.yaml"
    if shipped.exists():
        return shipped
    return Path(__file__).resolve().parent / "kopf-peering-crds.yaml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: reliability and security scenarios (quick here; `make chaos` runs the full set)"
    )
