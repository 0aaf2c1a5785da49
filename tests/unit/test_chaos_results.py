"""The chaos results file: a figure no scenario recorded is null (unmeasured), never a reassuring 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import conftest as chaos


@pytest.fixture
def results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(chaos, "RESULTS", dict.fromkeys(chaos.FIGURES))
    target = tmp_path / "latest.json"
    monkeypatch.setenv("CHAOS_RESULTS", str(target))
    return target


def written(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_a_scenario_that_ended_before_recording_leaves_its_figures_unmeasured(results: Path) -> None:
    # The kill -9 scenario failed before its record(): only the security scenario recorded.
    chaos.record(secrets_leaked=0, operator_crashes=0)
    chaos.pytest_sessionfinish(session=None, exitstatus=1)  # type: ignore[arg-type]
    document = written(results)
    for figure in ("keys_duplicated", "keys_orphaned", "keys_lost", "crash_trials"):
        assert document[figure] is None, figure
        assert figure in document["unmeasured"]
    assert document["secrets_leaked"] == 0
    assert "secrets_leaked" not in document["unmeasured"]
    assert document["passed"] is False


def test_counters_add_up_from_their_first_recording_and_seconds_keep_the_worst(results: Path) -> None:
    chaos.record(keys_duplicated=0, failover_seconds=9.7)
    chaos.record(keys_duplicated=2, failover_seconds=10.7)
    chaos.record(keys_duplicated=1, failover_seconds=8.0)
    chaos.pytest_sessionfinish(session=None, exitstatus=0)  # type: ignore[arg-type]
    document = written(results)
    assert document["keys_duplicated"] == 3
    assert document["failover_seconds"] == 10.7
    assert document["passed"] is True


def test_a_fault_scenario_counts_as_not_converged_until_it_has(results: Path) -> None:
    chaos.record(fault_scenarios_total=1, fault_scenarios_converged=0)  # started, then failed
    chaos.record(fault_scenarios_total=1, fault_scenarios_converged=0)
    chaos.record(fault_scenarios_converged=1)  # the second one converged
    chaos.pytest_sessionfinish(session=None, exitstatus=1)  # type: ignore[arg-type]
    document = written(results)
    assert (document["fault_scenarios_converged"], document["fault_scenarios_total"]) == (1, 2)
