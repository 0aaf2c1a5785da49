"""`python -m tests.bench.scale` (`make bench-scale`): the operator with 10,000 KmsKeys, quotas off.

One run starts a real kube-apiserver + etcd, the KMS emulator as its own process with its quotas OFF, and the
operator with its client-side limits off too (KMSKEY_*_QPS=0) and its admission webhook registered, then:

1. applies 10,000 KmsKeys at once and waits until every one is Ready (`burst_10000_seconds`), probing the
   operator's `/healthz` every 100 ms meanwhile (`healthz_p99_ms_during_burst`: what a kubelet waits for;
   the probes have a thread of their own) and reading the main event loop's own lag from /metrics (how long
   each probe's tick waited for the loop, `event_loop_lag_p99_ms_during_burst`: how long it was busy before it
   could serve anything else, which is also what the webhook and the watch streams wait), and counting the
   kube-apiserver's write requests;
2. lets the wave settle (the operator returns its memory once a wave ends), then measures the operator idle
   with 10,000 keys (`operator_rss_mb_10000_keys`, `operator_idle_cpu_percent_10000_keys`): a window before
   any key's first drift check is due, so idle means what it says;
3. waits for the drift-check wave of all 10,000 keys (at KMSKEY_RESYNC_SECONDS, 600 s by default, as users
   run it) and counts, from the kube-apiserver's own metrics, the writes it made
   (`api_writes_per_key_noop_resync_10000_keys`).

It takes the whole machine (about 15 minutes at 10,000 keys): run it alone. It writes
tests/bench/results/scale.json and scale.md (or --output-dir), and merges the headline figures into the
latest.json / latest.md there (`make bench` keeps them when it rewrites those). Every wait is bounded; the
processes it starts are stopped by PID when it ends.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kms_emulator.admin_client import AdminClient
from tests.bench import cluster, procstat, report, transport
from tests.bench.run import (
    RESULTS_DIR,
    api_writes,
    call_summary,
    emulator_process,
    install_crds,
    kube_bin,
    log,
    metric_sum,
    operator_process,
    wait_operator_ready,
)
from tests.harness.controlplane import ControlPlane
from tests.harness.processes import PROXY_VARIABLES, ManagedProcess, ProcessSpec

NAMESPACE = "bench-scale"
QUOTAS_OFF = {"KMSKEY_CREATE_QPS": "0", "KMSKEY_READ_QPS": "0", "KMSKEY_WRITE_QPS": "0"}
WAVE_ENDED = "a wave of reconciles ended"  # memory.py's log line once it has released a wave


# The probe is a process of its own: a thread of the harness would wait for the harness's GIL (its create
# threads and its watcher parse thousands of objects a second) and count that as the operator's latency.
PROBE_SCRIPT = """
import os, sys, time, urllib.request
url, interval, flag, out = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with open(out, "a", buffering=1) as log:
    while True:
        time.sleep(interval)
        if not os.path.exists(flag):
            continue
        began = time.monotonic()
        try:
            with opener.open(url, timeout=10) as response:
                response.read()
        except OSError:
            log.write(f"{began} fail\\n")
            continue
        log.write(f"{began} {time.monotonic() - began}\\n")
"""


class HealthProbe:
    """GET /healthz every `interval` seconds from a process of its own while `probing`; (time, latency).

    Off during the idle window: ten probes a second cost the operator about 1 % of a core themselves.
    Both processes read the same system-wide monotonic clock, so the samples line up with the harness's.
    """

    def __init__(self, port: int, interval: float, directory: Path) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.interval = interval
        self._flag = directory / "healthz-probing"
        self._out = directory / "healthz-probes.txt"
        self._process: ManagedProcess | None = None

    def __enter__(self) -> HealthProbe:
        argv = [
            sys.executable,
            "-c",
            PROBE_SCRIPT,
            self.url,
            str(self.interval),
            str(self._flag),
            str(self._out),
        ]
        # A ManagedProcess dies with the harness, even a killed one.
        self._process = ManagedProcess(ProcessSpec("healthz-probe", argv), self._out.with_suffix(".log"))
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.stop()

    def start(self) -> None:
        self._flag.touch()

    def stop(self) -> None:
        self._flag.unlink(missing_ok=True)

    def samples(self) -> tuple[list[tuple[float, float]], int]:
        if not self._out.exists():
            return [], 0
        found: list[tuple[float, float]] = []
        failures = 0
        for line in self._out.read_text().splitlines():
            at, _, latency = line.partition(" ")
            if latency == "fail":
                failures += 1
            elif latency:
                found.append((float(at), float(latency)))
        return found, failures

    def between(self, start: float, end: float) -> dict[str, float | int | None]:
        samples, _ = self.samples()
        latencies = [seconds for at, seconds in samples if start <= at <= end]
        if not latencies:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None, "probes": 0}
        return {
            "p50_ms": report.percentile(latencies, 0.5) * 1000,
            "p99_ms": report.percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000,
            "probes": len(latencies),
        }


LOOP_LAG = "kmskey_event_loop_lag_seconds"


def loop_lag_buckets(metrics: str) -> dict[float, float]:
    """The operator's event-loop lag histogram (its probes' ticks): upper bound -> cumulative count."""
    found: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == LOOP_LAG:
            for sample in family.samples:
                if sample.name == f"{LOOP_LAG}_bucket":
                    found[float(sample.labels["le"])] = sample.value
    return found


def loop_lag(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    """p50 / p99 / max (a bucket's bound) of the main loop's lag between two scrapes, in ms."""

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000

    return {
        "p50_ms": ms(report.histogram_quantile(before, after, 0.5)),
        "p99_ms": ms(report.histogram_quantile(before, after, 0.99)),
        "max_ms": ms(report.histogram_max_bound(before, after)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": report.machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "revision": report.git_revision(),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    for variable in PROXY_VARIABLES:
        os.environ.pop(variable, None)
    binaries = kube_bin()
    log_dir = Path(tempfile.mkdtemp(prefix="kmskey-bench-scale-"))
    results["log_dir"] = str(log_dir)
    log(f"logs in {log_dir}; load average {results['load_average_at_start']}")
    count = args.keys
    with ControlPlane(binaries, log_dir=log_dir) as plane:
        install_crds(plane)
        with emulator_process(log_dir, max_keys=count + 1000, quotas=False) as (emulator, endpoint):
            admin = transport.admin_client(endpoint)
            admin.wait_ready()
            operator = operator_process(
                plane, endpoint, log_dir, KMSKEY_RESYNC_SECONDS=f"{args.resync_seconds:.0f}", **QUOTAS_OFF
            )
            operator.start()
            try:
                wait_operator_ready(plane, operator)
                assert operator.process is not None
                sampler = procstat.Sampler(operator.process.pid)
                api = cluster.api_client(plane.kubeconfig)
                others = {p.spec.name: p.pid for p in plane.processes}
                others.update({"kms-emulator": emulator.pid, "bench-harness": os.getpid()})
                with sampler, HealthProbe(operator.health_port, args.probe_interval, log_dir) as probe:
                    results["operator_rss_mb_start"] = procstat.rss_mb(sampler.pid)
                    log(f"operator up, RSS {results['operator_rss_mb_start']:.0f} MiB")
                    measure(args, results, plane, admin, operator, sampler, probe, api, others)
                results["operator_log_errors"] = sum(
                    1 for line in operator.log().splitlines() if "ERROR" in line or "Traceback" in line
                )
            finally:
                operator.stop()
    results["bench_wall_seconds"] = time.monotonic() - started
    results["finished_at"] = report.now_iso()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def measure(
    args: argparse.Namespace,
    results: dict[str, Any],
    plane: ControlPlane,
    admin: AdminClient,
    operator: Any,
    sampler: procstat.Sampler,
    probe: HealthProbe,
    api: Any,
    others: dict[str, int],
) -> None:
    count = args.keys
    cluster.create_namespace(api, NAMESPACE)
    bodies = [cluster.kmskey(f"key-{i:05d}", {"description": f"scale key {i}"}) for i in range(count)]
    wanted = [b["metadata"]["name"] for b in bodies]

    # 1. The burst.
    admin.reset_calls()
    writes_before = api_writes(plane)
    cpu_before = {name: procstat.cpu_seconds(pid) for name, pid in others.items()}
    mark = sampler.mark()
    lag_before = loop_lag_buckets(operator.metrics())
    probe.start()
    with cluster.ReadyWatcher(api, NAMESPACE) as watcher:
        began = time.monotonic()
        apply_seconds = cluster.create_many(api, NAMESPACE, bodies, watcher, workers=args.workers)
        log(f"burst: {count} applied in {apply_seconds:.1f}s; waiting for Ready")
        deadline = began + count / 5 + 600
        while not watcher.wait_ready(wanted, timeout=15.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"burst: {watcher.count_ready(wanted)} of {count} Ready")
            log(
                f"burst: {watcher.count_ready(wanted)}/{count} Ready; "
                f"RSS {procstat.rss_mb(sampler.pid):.0f} MiB"
            )
        keys = [watcher.keys[n] for n in wanted]
    probe.stop()
    lag = loop_lag(lag_before, loop_lag_buckets(operator.metrics()))
    ready = [k.ready[1] - began for k in keys]
    ended = began + max(ready)
    window = sampler.window(mark)
    elapsed = time.monotonic() - began
    cpu = {
        name: round(100 * (procstat.cpu_seconds(pid) - cpu_before[name]) / elapsed, 1)
        for name, pid in others.items()
    }
    time.sleep(2)  # the last status patches land
    burst_writes = api_writes(plane) - writes_before - count  # less the harness's own creates
    health = probe.between(began, ended)
    calls = call_summary(admin)
    results.update(
        burst_10000_seconds=max(ready),
        burst_apply_seconds=apply_seconds,
        burst_ready_p50_seconds=report.percentile(ready, 0.5),
        healthz_p50_ms_during_burst=health["p50_ms"],
        healthz_p99_ms_during_burst=health["p99_ms"],
        healthz_max_ms_during_burst=health["max_ms"],
        healthz_probes_during_burst=health["probes"],
        healthz_failed_probes=probe.samples()[1],
        event_loop_lag_p50_ms_during_burst=lag["p50_ms"],
        event_loop_lag_p99_ms_during_burst=lag["p99_ms"],
        event_loop_lag_max_ms_during_burst=lag["max_ms"],
        api_writes_per_key_create=burst_writes / count,
        operator_cpu_percent_burst=window.cpu_percent,
        operator_cpu_ms_per_create=1000 * window.cpu_percent / 100 * window.seconds / count,
        operator_rss_mb_burst_max=window.rss_mb_max,
        burst_cpu_percent_of_one_core=cpu,
        burst_kms_calls=calls,
    )
    log(
        f"burst: all {count} Ready in {max(ready):.1f}s; /healthz {health}; loop lag {lag}; CPU {cpu}; "
        f"{burst_writes:.0f} API writes"
    )

    # 2. Settle, then idle: before the first drift check of any key can be due (0.9 × the interval).
    first_check = began + min(ready) + 0.9 * args.resync_seconds
    results["operator_rss_mb_after_burst"] = procstat.rss_mb(sampler.pid)
    settle_deadline = time.monotonic() + args.settle_seconds
    while WAVE_ENDED not in operator.log() and time.monotonic() < settle_deadline:
        time.sleep(1)
    results["memory_released_after_burst"] = WAVE_ENDED in operator.log()
    idle_for = min(args.idle_seconds, first_check - 5 - time.monotonic())
    if idle_for < 10:
        raise RuntimeError(
            f"no idle window before the first drift checks ({idle_for:.0f}s): raise --resync-seconds"
        )
    admin.reset_calls()
    mark = sampler.mark()
    time.sleep(idle_for)
    idle = sampler.window(mark)
    results.update(
        operator_rss_mb_10000_keys=idle.rss_mb_end,
        operator_idle_cpu_percent_10000_keys=idle.cpu_percent,
        operator_rss_kib_per_key=1024 * (idle.rss_mb_end - results["operator_rss_mb_start"]) / count,
        idle_window_seconds=idle.seconds,
        idle_kms_calls=call_summary(admin)["total"],
    )
    log(f"idle: {idle}")

    # 3. The drift-check wave of every key.
    admin.reset_calls()
    resyncs_before = metric_sum(operator.metrics(), "kmskey_reconciles_total", trigger="resync")
    writes_before = api_writes(plane)
    deadline = began + max(ready) + 1.1 * args.resync_seconds + 300
    time.sleep(max(0.0, first_check - time.monotonic()))
    mark = sampler.mark()
    wave_began = time.monotonic()
    lag_before = loop_lag_buckets(operator.metrics())
    probe.start()
    resyncs = 0.0
    while resyncs < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"drift-check wave: {resyncs:.0f} of {count} keys checked")
        time.sleep(2)
        resyncs = metric_sum(operator.metrics(), "kmskey_reconciles_total", trigger="resync") - resyncs_before
    wave = sampler.window(mark)
    probe.stop()
    wave_writes = api_writes(plane) - writes_before
    calls = call_summary(admin)
    health = probe.between(wave_began, time.monotonic())
    results.update(
        api_writes_per_key_noop_resync_10000_keys=wave_writes / resyncs,
        kms_reads_per_key_noop_resync_10000_keys=calls["reads"] / resyncs,
        kms_writes_per_key_noop_resync_10000_keys=calls["writes"] / resyncs,
        resync_wave_seconds=wave.seconds,
        operator_cpu_percent_resync_wave=wave.cpu_percent,
        operator_rss_mb_resync_wave_max=wave.rss_mb_max,
        healthz_p99_ms_during_resync_wave=health["p99_ms"],
        event_loop_lag_p99_ms_during_resync_wave=loop_lag(lag_before, loop_lag_buckets(operator.metrics()))[
            "p99_ms"
        ],
        resyncs_counted=resyncs,
    )
    log(f"drift checks: {resyncs:.0f} in {wave.seconds:.0f}s, {wave_writes:.0f} API writes; {wave}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10000, help="KmsKeys applied at once (10000)")
    parser.add_argument("--resync-seconds", type=float, default=600, help="KMSKEY_RESYNC_SECONDS (600)")
    parser.add_argument("--idle-seconds", type=float, default=60, help="idle window (60)")
    parser.add_argument("--settle-seconds", type=float, default=90, help="wait for the wave's release (90)")
    parser.add_argument("--probe-interval", type=float, default=0.1, help="seconds between /healthz probes")
    parser.add_argument("--workers", type=int, default=8, help="create requests in flight (8)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="where scale.json/md go")
    args = parser.parse_args(argv)
    results = run(args)
    paths = report.write_scale(results, args.output_dir)
    print()
    print(report.scale_table(results))
    print()
    print(f"bench-scale: {results['bench_wall_seconds']:.0f}s; wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
