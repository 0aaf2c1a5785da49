"""The bench table names the sizes of the run it reports, not the default run's."""

from __future__ import annotations

import pytest

from tests.bench import report


def test_a_smaller_run_is_labelled_with_its_own_sizes() -> None:
    results = {
        "parameters": {"keys": 200, "small_burst": 20, "latency_keys": 10},
        "managed_keys_at_idle": 230,
        "burst_100_seconds": 2.0,
        "burst_1000_seconds": 20.5,
        "quota_floor_1000_seconds": 20.0,
        "operator_rss_mb_1000_keys": 120.0,
        "operator_cpu_percent_idle": 0.4,
        "update_latency_p50_ms": 90.0,
        "two_account_burst_seconds": 21.3,
        "two_account_burst_ratio": 1.065,
    }
    table = report.table(results)
    assert "Burst 200 KmsKeys → all Ready | 20.5 s" in table
    assert "Burst 20 KmsKeys" in table
    assert "Operator RSS, 230 keys, idle" in table
    assert "Operator CPU, 230 keys, idle" in table
    assert "10 edited at once" in table
    assert "200 keys Ready ≤ 1.2 × quota floor" in table
    assert "Two accounts × 200 KmsKeys" in table
    assert "1,000" not in table
    assert "1,150" not in table


def test_the_default_run_reads_as_before() -> None:
    table = report.table({"parameters": {"keys": 1000}, "burst_1000_seconds": 101.0})
    assert "Burst 1,000 KmsKeys → all Ready | 101.0 s" in table


def test_histogram_quantile_reads_the_counts_between_two_scrapes_as_prometheus_does() -> None:
    inf = float("inf")
    before = {0.01: 10.0, 0.1: 10.0, 1.0: 10.0, inf: 10.0}
    after = {0.01: 60.0, 0.1: 100.0, 1.0: 109.0, inf: 110.0}  # 50 ≤ 10 ms, 40 ≤ 100 ms, 9 ≤ 1 s, 1 above
    assert report.histogram_quantile(before, after, 0.5) == 0.01  # rank 50: the top of the first bucket
    assert report.histogram_quantile(before, after, 0.9) == 0.1
    assert report.histogram_quantile(before, after, 0.95) == pytest.approx(0.1 + 0.9 * 5 / 9)
    assert report.histogram_quantile(before, after, 0.999) == 1.0  # in +Inf: the highest finite bound
    assert report.histogram_max_bound(before, after) == inf
    assert report.histogram_max_bound(before, {**after, inf: 109.0}) == 1.0
    assert report.histogram_quantile(after, after, 0.99) is None
    assert report.histogram_max_bound(after, after) is None


def test_the_merged_scale_section_shows_the_scale_runs_figures_only() -> None:
    bench = {
        "parameters": {"keys": 1000},
        "operator_cpu_percent_burst": 18.1,
        "operator_rss_mb_start": 72.0,
        "machine": {"cpu_model": "x", "cores": 2, "memory_gib": 1, "kernel": "k", "python": "3"},
        "finished_at": "t",
        "revision": "r",
        "bench_wall_seconds": 1.0,
    }
    scale = {
        "parameters": {"keys": 10000},
        "burst_10000_seconds": 171.0,
        "healthz_p99_ms_during_burst": 40.2,
        "operator_cpu_percent_burst": 75.7,
        "revision": "s",
        "finished_at": "u",
    }
    merged = bench | {k: scale[k] for k in report.SCALE_KEYS if k in scale}
    merged["scale"] = {"revision": "s", "finished_at": "u", "keys": 10000}
    section = report.markdown(merged).split("From the last `make bench-scale`")[1]
    assert "10,000 KmsKeys applied at once → all Ready (quotas off) | 171.0 s" in section
    assert "1,000" not in section
    assert "Operator CPU during the burst" not in section  # the 1,000-key run's 18.1 % is not the scale run's
