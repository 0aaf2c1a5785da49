"""The benchmark's results: the machine they were measured on, the targets, a table, JSON and markdown."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench import accounts, transport

REPO_ROOT = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def histogram_quantile(
    before: dict[float, float], after: dict[float, float], fraction: float
) -> float | None:
    """The `fraction` quantile of what a Prometheus histogram counted between two scrapes.

    `before` and `after` map each bucket's upper bound (`le`, +Inf included) to its cumulative count. As
    Prometheus's histogram_quantile: linear within the bucket that holds the rank; a rank in the +Inf bucket
    gives the highest finite bound. None when nothing was counted.
    """
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = fraction * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def histogram_max_bound(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the highest bucket that counted anything between two scrapes (inf if +Inf)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    return next(bound for bound, cumulative in zip(bounds, counts, strict=True) if cumulative >= counts[-1])


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel and Python: what the numbers depend on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_revision() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclasses.dataclass(frozen=True)
class Target:
    key: str
    label: str
    limit: float
    higher_is_better: bool = False
    strict: bool = False  # the value must be below (above) the limit, not equal to it

    def met(self, value: float) -> bool:
        if self.strict:
            return value > self.limit if self.higher_is_better else value < self.limit
        return value >= self.limit if self.higher_is_better else value <= self.limit


def targets(quota_floor_seconds: float, keys: str = "1,000") -> list[Target]:
    """Issue 9's and 18's targets, as limits on result keys (`keys`: the burst's size, as labels say it)."""
    return [
        Target("burst_1000_seconds", f"{keys} keys Ready ≤ 1.2 × quota floor", 1.2 * quota_floor_seconds),
        Target("kms_reads_per_key_noop_resync", "no-op resync ≤ 3 reads per key", 3),
        Target("kms_writes_per_key_noop_resync", "no-op resync 0 writes per key", 0),
        Target("api_writes_per_key_noop_resync", "no-op resync 0 API writes per key", 0),
        # RSS is reported in MiB (as /proc and ps show it); 150 MB is 143.05 MiB.
        Target(
            "operator_rss_mb_1000_keys", f"operator RSS ≤ 150 MB (143.05 MiB) at {keys} keys", 150e6 / 2**20
        ),
        Target("admission_p99_ms", "admission p99 ≤ 50 ms", 50),
        Target("ready_latency_p50_ms", "apply → Ready p50 ≤ 1 s (quotas off)", 1000),
        # Issue 18's peer row (ours ÷ ACK's kms-controller + moto; n/a when the run had no peer).
        Target("peer_rss_ratio", "peer row: RSS per key, ours ÷ peer < 1", 1.0, strict=True),
        Target("peer_cpu_per_create_ratio", "peer row: CPU per create, ours ÷ peer < 1", 1.0, strict=True),
        # Issue 18's HTTPS targets (tests/bench/transport.py).
        *(Target(key, label.format(keys=keys), limit) for key, label, limit in transport.TARGETS),
        # Issue 15's two-account row (tests/bench/accounts.py).
        *(Target(key, label.format(keys=keys), limit) for key, label, limit in accounts.TARGETS),
    ]


# (result key, row label, unit, format) in the order the table shows them. Labels name the run's own
# sizes: {small} the small burst, {keys} the large one, {idle_keys} every key at idle, {edits} the edits.
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("burst_100_seconds", "Burst {small} KmsKeys → all Ready", "s", "{:.1f}"),
    ("quota_floor_100_seconds", "  quota floor ({small} ÷ CreateKey QPS)", "s", "{:.1f}"),
    ("burst_1000_seconds", "Burst {keys} KmsKeys → all Ready", "s", "{:.1f}"),
    ("quota_floor_1000_seconds", "  quota floor ({keys} ÷ CreateKey QPS)", "s", "{:.1f}"),
    ("burst_1000_vs_floor", "  ratio to the floor", "×", "{:.3f}"),
    ("burst_1000_apply_seconds", "  time to apply the {keys} manifests", "s", "{:.1f}"),
    ("burst_1000_all_status_seconds", "  time until every key had a status", "s", "{:.1f}"),
    ("burst_1000_ready_p50_seconds", "  apply → Ready, median key", "s", "{:.1f}"),
    ("burst_1000_throttled_calls", "  KMS calls throttled (Throttling / Rejected.Throttling)", "", "{:.0f}"),
    ("ready_latency_p50_ms", "Apply → Ready, one key at a time, p50 (quotas off)", "ms", "{:.0f}"),
    ("ready_latency_p99_ms", "Apply → Ready, one key at a time, p99 (quotas off)", "ms", "{:.0f}"),
    ("kms_calls_per_key_create", "KMS calls per key: create", "", "{:.2f}"),
    ("kms_reads_per_key_noop_resync", "KMS reads per key: no-op resync", "", "{:.2f}"),
    ("kms_writes_per_key_noop_resync", "KMS writes per key: no-op resync", "", "{:.2f}"),
    ("kms_calls_per_key_update", "KMS calls per key: one-field update (description)", "", "{:.2f}"),
    ("api_writes_per_key_create", "API writes per key: create (kube-apiserver's count)", "", "{:.2f}"),
    ("api_writes_per_key_update", "API writes per key: one-field update", "", "{:.2f}"),
    ("api_writes_per_key_noop_resync", "API writes per key: no-op resync", "", "{:.2f}"),
    (
        "update_latency_p50_ms",
        "Spec edit → Ready, p50 (all {edits} edited at once; quotas off)",
        "ms",
        "{:.0f}",
    ),
    ("update_latency_p99_ms", "Spec edit → Ready, p99 ({edits} edited at once)", "ms", "{:.0f}"),
    ("operator_rss_mb_start", "Operator RSS at start (no keys)", "MiB", "{:.0f}"),
    ("operator_rss_mb_after_burst", "Operator RSS when the {keys} burst is Ready", "MiB", "{:.0f}"),
    (
        "operator_rss_mb_1000_keys",
        "Operator RSS, {idle_keys} keys, idle (end of the idle window)",
        "MiB",
        "{:.0f}",
    ),
    ("operator_rss_mb_peak", "Operator RSS, peak during the run", "MiB", "{:.0f}"),
    ("operator_cpu_percent_idle", "Operator CPU, {idle_keys} keys, idle", "% core", "{:.1f}"),
    ("operator_cpu_percent_resync", "Operator CPU during a resync wave", "% core", "{:.1f}"),
    ("operator_cpu_percent_burst", "Operator CPU during the {keys} burst", "% core", "{:.1f}"),
    ("admission_p50_ms", "Admission (dry-run create via webhook), p50", "ms", "{:.1f}"),
    ("admission_p99_ms", "Admission (dry-run create via webhook), p99", "ms", "{:.1f}"),
    ("admission_baseline_p50_ms", "  baseline: dry-run ConfigMap (no webhook), p50", "ms", "{:.1f}"),
    (
        "emulator_calls_per_second",
        "Emulator throughput (DescribeKey, own process, HTTPS)",
        "calls/s",
        "{:.0f}",
    ),
    *transport.ROWS,
    *accounts.ROWS,
)


def sizes(results: dict[str, Any]) -> dict[str, str]:
    """The run's own sizes for the labels (a `--keys 200` run says 200, not 1,000)."""
    parameters = results.get("parameters") or {}
    keys = int(parameters.get("keys") or 1000)
    small = int(parameters.get("small_burst") or 100)
    edits = int(parameters.get("latency_keys") or 50)
    idle = int(results.get("managed_keys_at_idle") or keys + small + edits)
    return {"keys": f"{keys:,}", "small": f"{small:,}", "edits": f"{edits:,}", "idle_keys": f"{idle:,}"}


# The peer row, side by side: (key in each side's results, label, unit, format, ratio key or None)
PEER_ROWS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("ready_seconds", "apply → all Ready", "s", "{:.1f}", "peer_ready_seconds_ratio"),
    (
        "cpu_ms_per_create",
        "CPU per create (from apply until quiet, ÷ keys)",
        "ms",
        "{:.2f}",
        "peer_cpu_per_create_ratio",
    ),
    ("cpu_ms_per_create_until_ready", "  of it until the last key was Ready", "ms", "{:.2f}", None),
    ("rss_kib_per_key", "RSS per key (RSS idle, all Ready, ÷ keys)", "KiB", "{:.0f}", "peer_rss_ratio"),
    ("rss_mb_idle", "  RSS idle after all Ready", "MiB", "{:.0f}", None),
    ("rss_mb_start", "  RSS at start (no keys)", "MiB", "{:.0f}", None),
    ("rss_kib_per_key_marginal", "  RSS per key above the start", "KiB", "{:.0f}", "peer_rss_marginal_ratio"),
    ("cpu_percent_burst", "CPU during the burst", "% core", "{:.1f}", None),
    ("cpu_percent_idle", "CPU idle", "% core", "{:.1f}", None),
    ("kms_calls_per_create", "KMS calls per create (served by the emulator / moto)", "", "{:.2f}", None),
)


def peer_table(results: dict[str, Any]) -> list[str]:
    """The peer row as a table of its own (ours, the peer, ours ÷ peer), or the line saying it was skipped."""
    peer = results.get("peer")
    if not isinstance(peer, dict):
        return []
    if "skipped" in peer:
        return ["", str(peer["skipped"])]
    ours, theirs = peer["ours"], peer["ack"]
    lines = [
        "",
        f"| Peer row: {peer['keys']:,} keys at once, quotas off, each controller alone "
        "| kmskey-operator | ACK kms-controller + moto | ours ÷ peer |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label, unit, fmt, ratio_key in PEER_ROWS:
        ratio = results.get(ratio_key) if ratio_key else None
        lines.append(
            f"| {label} | {_row_value(ours, key, unit, fmt)} | {_row_value(theirs, key, unit, fmt)} | "
            + ("–" if ratio is None else f"{ratio:.2f}")
            + " |"
        )
    return lines


def _row_value(results: dict[str, Any], key: str, unit: str, fmt: str) -> str:
    value = results.get(key)
    if value is None:
        return "n/a"
    text = fmt.format(value)
    return f"{text} {unit}".strip() if unit else text


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table, then the targets with met/missed."""
    lines = ["| Measurement | Result |", "| --- | ---: |"]
    names = sizes(results)
    for key, label, unit, fmt in ROWS:
        if key in results:
            lines.append(f"| {label.format(**names)} | {_row_value(results, key, unit, fmt)} |")
    lines += peer_table(results)
    lines += ["", "| Target | Limit | Measured | Met |", "| --- | ---: | ---: | :---: |"]
    for target in targets(float(results.get("quota_floor_1000_seconds") or 100.0), names["keys"]):
        value = results.get(target.key)
        if value is None:
            lines.append(f"| {target.label} | {target.limit:.4g} | n/a | – |")
            continue
        met = "yes" if target.met(float(value)) else "NO"
        lines.append(f"| {target.label} | {target.limit:.4g} | {float(value):.4g} | {met} |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = results.get("load_average_at_start") or []
    header = [
        "# `make bench` results",
        "",
        f"Measured {results['finished_at']} at commit `{results['revision']}` in "
        f"{results['bench_wall_seconds']:.0f} s.",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB memory, Linux {m['kernel']}, "
        f"Python {m['python']}. Load average when the run started: "
        + (" / ".join(f"{x:.2f}" for x in load) if load else "n/a")
        + " (1 / 5 / 15 min).",
        "",
        "kube-apiserver + etcd (local, real), the KMS emulator as its own process with the default KMS "
        "quotas ON (CreateKey 10/s, reads 20/s, writes 10/s) except where a row says quotas off, and the "
        "operator as a subprocess with its default settings (client-side limits equal to the quotas), its "
        "admission webhook registered (failurePolicy Fail). All on the one machine described above. KMS is "
        f"reached over {str(results.get('kms_transport') or 'http').upper()}, as real KMS (HTTPS only) is: "
        "with the emulator's own CA, which the operator trusts through KMSKEY_KMS_CA_BUNDLE.",
        "",
        table(results),
        "",
    ]
    notes = results.get("notes") or []
    if notes:
        header += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    scale = results.get("scale")
    if isinstance(scale, dict):
        header += [
            f"From the last `make bench-scale` ({scale.get('keys')} keys, quotas off, commit "
            f"`{scale.get('revision')}`, {scale.get('finished_at')}; details in scale.md):",
            "",
            # Only the figures merged from that run: the other keys here are this run's (1,000 keys).
            scale_table(
                {k: results[k] for k in SCALE_KEYS if k in results}
                | {"parameters": {"keys": scale.get("keys")}}
            ),
            "",
        ]
    return "\n".join(header)


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """latest.json and latest.md; the figures of the last `make bench-scale` there are kept."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    if json_path.exists():
        previous = json.loads(json_path.read_text())
        results = {**{k: previous[k] for k in (*SCALE_KEYS, "scale") if k in previous}, **results}
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path


# --- `make bench-scale` ---------------------------------------------------------------------------------

# Its headline figures, merged into latest.json (issue 18's target table) under these keys.
SCALE_KEYS = (
    "burst_10000_seconds",
    "operator_rss_mb_10000_keys",
    "operator_idle_cpu_percent_10000_keys",
    "healthz_p99_ms_during_burst",
    "event_loop_lag_p99_ms_during_burst",
    "api_writes_per_key_noop_resync_10000_keys",
)

SCALE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("burst_10000_seconds", "{keys} KmsKeys applied at once → all Ready (quotas off)", "s", "{:.1f}"),
    ("burst_apply_seconds", "  time to apply the {keys} manifests", "s", "{:.1f}"),
    ("burst_ready_p50_seconds", "  apply → Ready, median key", "s", "{:.1f}"),
    ("healthz_p50_ms_during_burst", "/healthz during the burst, p50", "ms", "{:.1f}"),
    ("healthz_p99_ms_during_burst", "/healthz during the burst, p99", "ms", "{:.1f}"),
    ("healthz_max_ms_during_burst", "/healthz during the burst, max", "ms", "{:.1f}"),
    (
        "event_loop_lag_p50_ms_during_burst",
        "main event loop's lag during the burst, p50 (the probes' ticks, from /metrics)",
        "ms",
        "{:.1f}",
    ),
    ("event_loop_lag_p99_ms_during_burst", "main event loop's lag during the burst, p99", "ms", "{:.1f}"),
    ("event_loop_lag_max_ms_during_burst", "main event loop's lag during the burst, max (≤)", "ms", "{:.0f}"),
    ("operator_cpu_percent_burst", "Operator CPU during the burst", "% core", "{:.1f}"),
    ("operator_cpu_ms_per_create", "  per create", "ms", "{:.2f}"),
    (
        "api_writes_per_key_create",
        "API writes per create (kube-apiserver's count, less the creates)",
        "",
        "{:.2f}",
    ),
    ("operator_rss_mb_start", "Operator RSS at start (no keys)", "MiB", "{:.0f}"),
    ("operator_rss_mb_burst_max", "Operator RSS, peak during the burst", "MiB", "{:.0f}"),
    ("operator_rss_mb_10000_keys", "Operator RSS, {keys} keys, idle", "MiB", "{:.0f}"),
    ("operator_rss_kib_per_key", "  per key above the start", "KiB", "{:.1f}"),
    ("operator_idle_cpu_percent_10000_keys", "Operator CPU, {keys} keys, idle", "% core", "{:.2f}"),
    ("operator_cpu_percent_resync_wave", "Operator CPU during the drift-check wave", "% core", "{:.1f}"),
    ("api_writes_per_key_noop_resync_10000_keys", "API writes per key: no-op drift check", "", "{:.3f}"),
    ("kms_reads_per_key_noop_resync_10000_keys", "KMS reads per key: no-op drift check", "", "{:.2f}"),
    ("healthz_p99_ms_during_resync_wave", "/healthz during the drift-check wave, p99", "ms", "{:.1f}"),
    (
        "event_loop_lag_p99_ms_during_resync_wave",
        "main event loop's lag during the drift-check wave, p99",
        "ms",
        "{:.1f}",
    ),
)


def scale_targets() -> list[Target]:
    """Issue 18's scale targets (RSS as the 150 MB one: 250 MB is 238.4 MiB)."""
    return [
        Target("operator_rss_mb_10000_keys", "RSS idle ≤ 250 MB (238.4 MiB) at 10,000 keys", 250e6 / 2**20),
        Target("operator_idle_cpu_percent_10000_keys", "idle CPU ≤ 2.0 % at 10,000 keys", 2.0),
        Target("healthz_p99_ms_during_burst", "/healthz p99 ≤ 100 ms during the burst", 100),
        Target("api_writes_per_key_noop_resync_10000_keys", "0 API writes per no-op drift check", 0),
    ]


def scale_table(results: dict[str, Any]) -> str:
    keys = f"{int((results.get('parameters') or {}).get('keys') or 10000):,}"
    lines = ["| Measurement | Result |", "| --- | ---: |"]
    for key, label, unit, fmt in SCALE_ROWS:
        if key in results:
            lines.append(f"| {label.format(keys=keys)} | {_row_value(results, key, unit, fmt)} |")
    lines += ["", "| Target | Limit | Measured | Met |", "| --- | ---: | ---: | :---: |"]
    for target in scale_targets():
        value = results.get(target.key)
        if value is None:
            lines.append(f"| {target.label} | {target.limit:.4g} | n/a | – |")
            continue
        met = "yes" if target.met(float(value)) else "NO"
        lines.append(f"| {target.label} | {target.limit:.4g} | {float(value):.4g} | {met} |")
    return "\n".join(lines)


def scale_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    start = " / ".join(f"{x:.2f}" for x in results.get("load_average_at_start") or [])
    end = " / ".join(f"{x:.2f}" for x in results.get("load_average_at_end") or [])
    return "\n".join(
        [
            "# `make bench-scale` results",
            "",
            f"Measured {results['finished_at']} at commit `{results['revision']}` in "
            f"{results['bench_wall_seconds']:.0f} s. Machine: {m['cpu_model']}, {m['cores']} cores, "
            f"{m['memory_gib']} GiB memory, Linux {m['kernel']}, Python {m['python']}. Load average "
            f"(1 / 5 / 15 min) at the start {start or 'n/a'}, at the end {end or 'n/a'}.",
            "",
            "kube-apiserver + etcd (local, real), the KMS emulator as its own process with its quotas OFF, "
            "the operator with its client-side KMS limits off (KMSKEY_*_QPS=0), its admission webhook "
            "registered (failurePolicy Fail) and its default drift-check interval; all on one machine.",
            "",
            scale_table(results),
            "",
        ]
    )


def write_scale(results: dict[str, Any], directory: Path) -> tuple[Path, ...]:
    """scale.json and scale.md; the headline figures also go into latest.json (and latest.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "scale.json", directory / "scale.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md_path.write_text(scale_markdown(results))
    latest = directory / "latest.json"
    if not latest.exists():
        return json_path, md_path
    merged = json.loads(latest.read_text())
    merged.update({k: results[k] for k in SCALE_KEYS if k in results})
    merged["scale"] = {
        "revision": results["revision"],
        "finished_at": results["finished_at"],
        "load_average_at_start": results.get("load_average_at_start"),
        "keys": (results.get("parameters") or {}).get("keys"),
        "details": "scale.json",
    }
    latest.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    (directory / "latest.md").write_text(markdown(merged))
    return json_path, md_path, latest


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    """`python -m tests.bench.report [DIR]`: render DIR/latest.md again from DIR/latest.json."""
    import sys

    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    results = json.loads((directory / "latest.json").read_text())
    (directory / "latest.md").write_text(markdown(results))
    print(table(results))


if __name__ == "__main__":
    main()
