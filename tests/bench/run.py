"""`python -m tests.bench.run` (`make bench`): operator speed, KMS-call efficiency and memory at 1,000 keys.

One run starts a real kube-apiserver + etcd, the KMS emulator as its own process (default quotas ON: CreateKey
10/s, reads 20/s, writes 10/s) and the operator as a subprocess with its admission webhook registered, then:

1. measures the emulator's own throughput (`kms_emulator.bench`, before anything else runs);
2. apply → Ready latency of keys created one at a time, quotas off; KMS calls per create;
3. a one-field spec edit on those keys: KMS calls per update and edit → Ready latency;
4. admission latency: sequential dry-run creates through the webhook, and a no-webhook baseline;
5. bursts of 100 and 1,000 KmsKeys applied at once (quotas on) → all Ready, against N ÷ CreateKey QPS;
6. the operator idle at 1,000+ keys (RSS, CPU), then a no-op resync wave of the 1,000 keys (reads and
   writes per key, CPU, RSS);
7. with --peer-binary only, the peer row (tests/bench/peer.py): a fresh operator, then AWS's ACK
   kms-controller against moto, each alone with the same 1,000 keys and quotas off, as ratios;
8. two accounts bursting 1,000 keys each at once (tests/bench/accounts.py): a second emulator serving both
   accounts, a fresh operator with a KmsProviderConfig per account's namespace, both against one floor.

It prints a table and writes tests/bench/results/latest.json and latest.md (or --output-dir). Every wait is
bounded; the processes it starts are stopped by PID when it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kms_emulator.admin_client import AdminClient
from kms_emulator.credentials import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from kmskey_operator import names
from kmskey_operator.kms.ratelimit import CallClass, call_class
from tests.bench import accounts, cluster, peer, procstat, report, transport
from tests.harness import scrape
from tests.harness.controlplane import ControlPlane, missing_binaries
from tests.harness.operator import OperatorProcess
from tests.harness.processes import PROXY_VARIABLES, ManagedProcess, ProcessSpec

REPO_ROOT = report.REPO_ROOT
RESULTS_DIR = Path(__file__).resolve().parent / "results"
WEBHOOK_CONFIGURATION = "kmskey-operator-bench"
WEBHOOK_PATH = (
    f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}"
)
CREATE_QPS = 10.0  # KMS's CreateKey quota, and the emulator's default
# Keys outside the resync measurement resync hourly, so that no other key's drift check lands in a window.
QUIET_RESYNC = {names.RESYNC_ANNOTATION: "1h"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes ----------------------------------------------------------------------------------------------


def kube_bin() -> str:
    found = os.environ.get("KUBE_BIN", "")
    if not found:
        result = subprocess.run(
            ["bash", "hack/build-control-plane.sh"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        match = re.search(r"^KUBE_BIN=(.+)$", result.stdout, re.MULTILINE)
        found = match.group(1) if match else ""
    problem = missing_binaries(found)
    if problem:
        raise SystemExit(f"bench: {problem}: run `make control-plane` (or `make test`'s set-up) first")
    return found


@contextlib.contextmanager
def emulator_process(
    log_dir: Path, max_keys: int, *, quotas: bool = True
) -> Iterator[tuple[ManagedProcess, transport.KmsEndpoint]]:
    """`python -m kms_emulator` as its own process (quotas on, HTTPS), sharing no GIL with anything else."""
    argv = [
        sys.executable,
        "-m",
        "kms_emulator",
        "--port",
        "0",
        "--max-keys",
        str(max_keys),
        "--quotas",
        "on" if quotas else "off",
        *transport.emulator_args(log_dir),
    ]
    process = ManagedProcess(
        ProcessSpec("kms-emulator", argv, env={"PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT),
        log_dir / "kms-emulator.log",
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            endpoint = transport.KmsEndpoint.from_log(process.log_path.read_text())
            if endpoint:
                break
            if process.exited() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the KMS emulator did not start:\n{process.log_tail()}")
            time.sleep(0.05)
        yield process, endpoint
    finally:
        process.stop()


def emulator_throughput(seconds: float) -> dict[str, Any]:
    """Run `python -m kms_emulator.bench` (its own emulator, quotas off) and parse what it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "kms_emulator.bench", "--seconds", str(seconds), "--tls"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    rate = re.search(r"DescribeKey: (\d+) calls/s", result.stdout)
    latency = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", result.stdout)
    busy = re.search(r"emulator CPU use (\d+)%", result.stdout)
    return {
        "emulator_calls_per_second": float(rate.group(1)) if rate else None,
        "emulator_latency_p50_ms": float(latency.group(1)) if latency else None,
        "emulator_latency_p99_ms": float(latency.group(2)) if latency else None,
        "emulator_cpu_percent_of_core": float(busy.group(1)) if busy else None,
        "emulator_bench_output": result.stdout.strip(),
    }


def operator_process(
    plane: ControlPlane,
    endpoint: transport.KmsEndpoint,
    log_dir: Path,
    name: str = "operator",
    **extra_env: str,
) -> OperatorProcess:
    """The operator as the bench runs it (its webhook registered, KMS over HTTPS), `extra_env` on top."""
    return OperatorProcess(
        kubeconfig=plane.kubeconfig,
        kms_endpoint=endpoint.address,
        kms_ca_file=endpoint.ca_file,
        access_key_id=DEFAULT_ACCESS_KEY_ID,
        access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
        log_dir=log_dir,
        extra_env={
            "KMSKEY_WEBHOOK_MANAGED": WEBHOOK_CONFIGURATION,
            "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
            **extra_env,
        },
        name=name,
    )


def wait_operator_ready(plane: ControlPlane, operator: OperatorProcess) -> None:
    wait_until("operator /readyz", lambda: operator.readiness()[0] == 200, 60)
    wait_until("the webhook configuration", lambda: plane.request("GET", WEBHOOK_PATH)[0] == 200, 60)


def install_crds(plane: ControlPlane) -> None:
    cluster.apply_crds(plane, sorted((REPO_ROOT / "crds").glob("*.yaml")))


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f}s")
        time.sleep(interval)


# -- operator metrics and the emulator's call log -----------------------------------------------------------


metric_sum = scrape.metric_sum


def api_writes(plane: ControlPlane) -> float:
    """Write requests for KmsKeys the kube-apiserver has served so far (its own count, any subresource)."""
    status, data = plane.request("GET", "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"kube-apiserver /metrics: HTTP {status}")
    return scrape.api_writes(data.decode(), names.PLURAL, names.GROUP)


def is_throttling(code: str | None) -> bool:
    return bool(code) and "Throttling" in str(code)


def emulator_calls(admin: AdminClient) -> tuple[Counter[str], int]:
    """The calls the emulator has logged since its last reset, by action, and how many failed."""
    records = admin.calls()
    return Counter(r.action for r in records), sum(1 for r in records if r.code)


def call_summary(admin: AdminClient) -> dict[str, Any]:
    """The emulator's call log since its last reset: counts by action and quota class, and throttles."""
    records = admin.calls()
    by_action = Counter(r.action for r in records)
    accepted = [r for r in records if not is_throttling(r.code)]
    by_class = Counter(str(call_class(r.action)) for r in accepted)
    return {
        "total": len(records),
        "accepted": len(accepted),
        "throttled": sum(1 for r in records if is_throttling(r.code)),
        "errors": sum(1 for r in records if r.code and not is_throttling(r.code)),
        "by_action": dict(sorted(by_action.items())),
        "reads": by_class[str(CallClass.READ)],
        "writes": by_class[str(CallClass.WRITE)] + by_class[str(CallClass.CREATE)],
        "creates": by_class[str(CallClass.CREATE)],
    }


# -- scenarios ----------------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: argparse.Namespace, plane: ControlPlane, admin: AdminClient, op: OperatorProcess
    ):
        self.args = args
        self.plane = plane
        self.admin = admin
        self.op = op
        assert op.process is not None
        self.sampler = procstat.Sampler(op.process.pid)
        self.api = cluster.api_client(plane.kubeconfig)
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.burst_began = 0.0  # monotonic time the last burst's first create was sent

    def latency(self) -> None:
        """Keys created one at a time, quotas off: apply → Ready, and KMS calls per create."""
        count = self.args.latency_keys
        namespace = "bench-latency"
        cluster.create_namespace(self.api, namespace)
        self.admin.set_quotas(False)
        self.admin.reset_calls()
        latencies: list[float] = []
        writes_before = api_writes(self.plane)
        with cluster.ReadyWatcher(self.api, namespace) as watcher:
            for i in range(count):
                name = f"latency-{i:03d}"
                body = cluster.kmskey(name, {"description": f"bench latency {i}"}, QUIET_RESYNC)
                cluster.create_many(self.api, namespace, [body], watcher, workers=1)
                if not watcher.wait_ready([name], timeout=30):
                    raise TimeoutError(f"{namespace}/{name} not Ready in 30s")
                times = watcher.keys[name]
                assert times.sent is not None
                latencies.append(times.ready[1] - times.sent)
            calls = call_summary(self.admin)
            time.sleep(2)  # the last status patch may still be on its way
            # The kube-apiserver's count, less the harness's own creates (one POST per key).
            operator_writes = api_writes(self.plane) - writes_before - count
            p50 = report.percentile(latencies, 0.5) * 1000
            log(f"latency: {count} keys, p50 {p50:.0f} ms; calls {calls}; API writes {operator_writes:.0f}")
            self.results.update(
                ready_latency_p50_ms=report.percentile(latencies, 0.5) * 1000,
                ready_latency_p99_ms=report.percentile(latencies, 0.99) * 1000,
                ready_latency_max_ms=max(latencies) * 1000,
                ready_latency_keys=count,
                kms_calls_per_key_create=calls["accepted"] / count,
                api_writes_per_key_create=operator_writes / count,
                kms_calls_create_by_action={k: v / count for k, v in calls["by_action"].items()},
            )
            self.update(namespace, watcher, [f"latency-{i:03d}" for i in range(count)])
        self.admin.set_quotas(True)

    def update(self, namespace: str, watcher: cluster.ReadyWatcher, keys: list[str]) -> None:
        """A one-field edit (description) of every key, sent together: KMS calls per update, edit → Ready."""
        self.admin.reset_calls()
        writes_before = api_writes(self.plane)
        sent: dict[str, float] = {}
        for name in keys:
            sent[name] = time.monotonic()
            cluster.patch_spec(self.api, namespace, name, {"description": f"{name} edited"})
        if not watcher.wait_ready(keys, generation=2, timeout=60):
            raise TimeoutError("edited keys not Ready in 60s")
        latencies = [watcher.keys[n].ready[2] - sent[n] for n in keys]
        calls = call_summary(self.admin)
        time.sleep(2)
        operator_writes = api_writes(self.plane) - writes_before - len(keys)  # less the harness's patches
        log(f"update: {len(keys)} keys, p50 {report.percentile(latencies, 0.5) * 1000:.0f} ms; calls {calls}")
        self.results.update(
            kms_calls_per_key_update=calls["accepted"] / len(keys),
            api_writes_per_key_update=operator_writes / len(keys),
            kms_calls_update_by_action={k: v / len(keys) for k, v in calls["by_action"].items()},
            update_latency_p50_ms=report.percentile(latencies, 0.5) * 1000,
            update_latency_p99_ms=report.percentile(latencies, 0.99) * 1000,
        )

    def admission(self) -> None:
        count = self.args.admission_requests
        namespace = "bench-admission"
        cluster.create_namespace(self.api, namespace)
        before = metric_sum(self.op.metrics(), "kmskey_admission_requests_total")
        cluster.dry_run_latencies(self.api, namespace, 20)  # warm the connections up
        latencies = cluster.dry_run_latencies(self.api, namespace, count)
        reviewed = metric_sum(self.op.metrics(), "kmskey_admission_requests_total") - before
        if reviewed < count:
            raise RuntimeError(f"the webhook answered {reviewed:.0f} of {count + 20} dry-run creates")
        baseline = cluster.dry_run_latencies(self.api, namespace, count, kmskeys=False)
        log(f"admission: p50 {report.percentile(latencies, 0.5) * 1000:.1f} ms over {count} requests")
        self.results.update(
            admission_p50_ms=report.percentile(latencies, 0.5) * 1000,
            admission_p99_ms=report.percentile(latencies, 0.99) * 1000,
            admission_requests=count,
            admission_baseline_p50_ms=report.percentile(baseline, 0.5) * 1000,
            admission_baseline_p99_ms=report.percentile(baseline, 0.99) * 1000,
        )

    def other_pids(self, emulator_pid: int) -> dict[str, int]:
        pids = {p.spec.name: p.pid for p in self.plane.processes}
        pids["kms-emulator"] = emulator_pid
        pids["bench-harness"] = os.getpid()
        return pids

    def burst(self, count: int, emulator_pid: int, annotations: dict[str, str]) -> dict[str, Any]:
        """`count` KmsKeys created at once (quotas on) → time until every one is Ready."""
        namespace = f"bench-burst-{count}"
        cluster.create_namespace(self.api, namespace)
        bodies = [
            cluster.kmskey(f"key-{i:04d}", {"description": f"bench burst key {i}"}, annotations)
            for i in range(count)
        ]
        floor = count / CREATE_QPS
        self.admin.reset_calls()
        others = self.other_pids(emulator_pid)
        cpu_before = {name: procstat.cpu_seconds(pid) for name, pid in others.items()}
        mark = self.sampler.mark()
        watcher = cluster.ReadyWatcher(self.api, namespace)
        with watcher:
            began = self.burst_began = time.monotonic()
            apply_seconds = cluster.create_many(self.api, namespace, bodies, watcher, workers=8)
            log(f"burst {count}: applied in {apply_seconds:.1f}s; waiting for Ready")
            timeout = 3 * floor + 120
            deadline = time.monotonic() + timeout
            wanted = [b["metadata"]["name"] for b in bodies]
            while not watcher.wait_ready(wanted, timeout=min(15.0, max(0.1, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"burst {count}: {watcher.count_ready(wanted)} Ready after {timeout}s")
                log(f"burst {count}: {watcher.count_ready(wanted)}/{count} Ready")
            window = self.sampler.window(mark)
            keys = [watcher.keys[n] for n in wanted]
        elapsed = time.monotonic() - began
        cpu = {name: procstat.cpu_seconds(pid) - cpu_before[name] for name, pid in others.items()}
        ready = [k.ready[1] - began for k in keys]
        statuses = [k.first_status - began for k in keys if k.first_status is not None]
        calls = call_summary(self.admin)
        result = {
            "seconds": max(ready),
            "quota_floor_seconds": floor,
            "apply_seconds": apply_seconds,
            "all_status_seconds": max(statuses) if len(statuses) == count else None,
            "ready_p50_seconds": report.percentile(ready, 0.5),
            "first_ready_seconds": min(ready),
            "throttled_calls": calls["throttled"],
            "kms_calls": calls,
            "operator_cpu_percent": window.cpu_percent,
            "operator_rss_mb_max": window.rss_mb_max,
            "cpu_percent_of_one_core": {k: round(100 * v / elapsed, 1) for k, v in cpu.items()},
        }
        log(f"burst {count}: all Ready in {result['seconds']:.1f}s (floor {floor:.0f}s); {json.dumps(calls)}")
        log(f"burst {count}: CPU (% of one core) {result['cpu_percent_of_one_core']}")
        return result

    def idle_and_resync(self, burst_ready_at: float, first_ready_at: float) -> None:
        """The operator idle at 1,000+ keys, then the no-op resync wave of the 1,000 (annotated) keys."""
        interval = self.args.resync_seconds
        # The first resync can come at 0.9 × the interval after a key's last reconcile (jitter 10%).
        earliest_resync = first_ready_at + 0.9 * interval
        rss_after_burst = procstat.rss_mb(self.sampler.pid)
        time.sleep(max(0.0, burst_ready_at + 5 - time.monotonic()))
        idle_for = min(self.args.idle_seconds, earliest_resync - 5 - time.monotonic())
        if idle_for < 10:
            self.notes.append(f"idle window only {idle_for:.0f}s: the burst ran into the first resyncs")
            idle_for = max(idle_for, 5.0)
        self.admin.reset_calls()
        mark = self.sampler.mark()
        time.sleep(idle_for)
        idle = self.sampler.window(mark)
        idle_calls = call_summary(self.admin)
        log(f"idle: {idle}; KMS calls {idle_calls['total']}")
        self.results.update(
            operator_rss_mb_after_burst=rss_after_burst,
            operator_rss_mb_1000_keys=idle.rss_mb_end,
            managed_keys_at_idle=self.args.latency_keys + self.args.small_burst + self.args.keys,
            operator_cpu_percent_idle=idle.cpu_percent,
            idle_window_seconds=idle.seconds,
            idle_kms_calls=idle_calls["total"],
        )

        # The resync wave: from now until every one of the 1,000 keys has been resynced once.
        count = self.args.keys
        self.admin.reset_calls()
        resyncs_before = metric_sum(self.op.metrics(), "kmskey_reconciles_total", trigger="resync")
        writes_before = api_writes(self.plane)
        mark = self.sampler.mark()
        wave_began: float | None = None
        deadline = earliest_resync + 0.2 * interval + count / 5 + 60
        resyncs = 0.0
        while time.monotonic() < deadline:
            resyncs = (
                metric_sum(self.op.metrics(), "kmskey_reconciles_total", trigger="resync") - resyncs_before
            )
            if resyncs and wave_began is None:
                wave_began = time.monotonic()
                mark = self.sampler.mark()  # CPU from the wave's first resync, not the idle wait before it
            if resyncs >= count:
                break
            time.sleep(1.0)
        else:
            raise TimeoutError(f"resync wave: {resyncs:.0f} of {count} keys resynced")
        wave = self.sampler.window(mark)
        calls = call_summary(self.admin)
        wave_writes = api_writes(self.plane) - writes_before
        log(f"resync wave: {resyncs:.0f} resyncs in {wave.seconds:.0f}s; {wave}; calls {calls}")
        self.results.update(
            kms_reads_per_key_noop_resync=calls["reads"] / resyncs,
            kms_writes_per_key_noop_resync=calls["writes"] / resyncs,
            api_writes_per_key_noop_resync=wave_writes / resyncs,
            kms_calls_resync_by_action={k: v / resyncs for k, v in calls["by_action"].items()},
            resync_wave_seconds=wave.seconds,
            resync_wave_throttled_calls=calls["throttled"],
            operator_cpu_percent_resync=wave.cpu_percent,
            operator_rss_mb_resync=wave.rss_mb_max,
            resync_interval_seconds=interval,
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": report.machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "revision": report.git_revision(),
        "parameters": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("output_dir", "peer")
        },
    }
    for variable in PROXY_VARIABLES:  # this process, too, talks to 127.0.0.1 only
        os.environ.pop(variable, None)
    binaries = kube_bin()
    log("emulator throughput (kms_emulator.bench, its own process)")
    results.update(emulator_throughput(args.emulator_seconds))
    log(f"emulator: {results['emulator_calls_per_second']} DescribeKey calls/s")

    log_dir = Path(tempfile.mkdtemp(prefix="kmskey-bench-"))
    results["log_dir"] = str(log_dir)
    log(f"logs in {log_dir}")
    with ControlPlane(binaries, log_dir=log_dir) as plane:
        install_crds(plane)
        with emulator_process(log_dir, max_keys=args.keys * 2 + 1000) as (emulator, endpoint):
            admin = transport.admin_client(endpoint)
            admin.wait_ready()
            results.update(transport.probe(endpoint, admin, log))
            operator = operator_process(plane, endpoint, log_dir)
            operator.start()
            try:
                wait_operator_ready(plane, operator)
                bench = Bench(args, plane, admin, operator)
                with bench.sampler:
                    rss_started = procstat.rss_mb(bench.sampler.pid)
                    log(f"operator up, RSS {rss_started:.0f} MiB")
                    bench.results["operator_rss_mb_start"] = rss_started
                    bench.latency()
                    bench.admission()
                    small = bench.burst(args.small_burst, emulator.pid, QUIET_RESYNC)
                    bench.results.update(
                        burst_100_seconds=small["seconds"],
                        quota_floor_100_seconds=small["quota_floor_seconds"],
                        burst_100=small,
                    )
                    resync = {names.RESYNC_ANNOTATION: f"{args.resync_seconds:.0f}s"}
                    handshakes = admin.tls_handshakes()
                    large = bench.burst(args.keys, emulator.pid, resync)
                    handshakes = admin.tls_handshakes() - handshakes
                    bench.results.update(transport.burst_summary(large, handshakes))
                    bench.results.update(
                        burst_1000_seconds=large["seconds"],
                        quota_floor_1000_seconds=large["quota_floor_seconds"],
                        burst_1000_vs_floor=large["seconds"] / large["quota_floor_seconds"],
                        burst_1000_apply_seconds=large["apply_seconds"],
                        burst_1000_all_status_seconds=large["all_status_seconds"],
                        burst_1000_ready_p50_seconds=large["ready_p50_seconds"],
                        burst_1000_throttled_calls=large["throttled_calls"],
                        operator_cpu_percent_burst=large["operator_cpu_percent"],
                        burst_1000=large,
                    )
                    bench.idle_and_resync(
                        burst_ready_at=bench.burst_began + large["seconds"],
                        first_ready_at=bench.burst_began + large["first_ready_seconds"],
                    )
                    bench.results["operator_rss_mb_peak"] = max(
                        large["operator_rss_mb_max"], bench.results["operator_rss_mb_resync"]
                    )
                results.update(bench.results)
                results["notes"] = bench.notes
                results["operator_log_errors"] = sum(
                    1 for line in operator.log().splitlines() if "ERROR" in line or "Traceback" in line
                )
            finally:
                operator.stop()

            def start_ours(extra_env: Mapping[str, str]) -> OperatorProcess:
                ours = operator_process(plane, endpoint, log_dir, "operator-peer-row", **extra_env)
                ours.start()
                wait_operator_ready(plane, ours)
                return ours

            results.update(
                peer.section(
                    args.peer,
                    plane=plane,
                    log_dir=log_dir,
                    keys=args.keys,
                    start_ours=start_ours,
                    ours_backend=(emulator.pid, lambda: emulator_calls(admin)),
                    set_backend_quotas=admin.set_quotas,
                )
            )

        def start_for_accounts(accounts_endpoint: transport.KmsEndpoint) -> OperatorProcess:
            # Only the two accounts' namespaces: the 1,150 keys above are another emulator's.
            namespaces = ",".join(accounts.ACCOUNTS)
            ours = operator_process(
                plane, accounts_endpoint, log_dir, "operator-accounts", WATCH_NAMESPACES=namespaces
            )
            ours.start()
            wait_operator_ready(plane, ours)
            return ours

        log("two accounts, 1,000 keys each at once (tests/bench/accounts.py)")
        results.update(
            accounts.section(plane, log_dir, keys=args.keys, log=log, start_operator=start_for_accounts)
        )
    results["bench_wall_seconds"] = time.monotonic() - started
    results["finished_at"] = report.now_iso()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1000, help="the large burst and resync wave (1000)")
    parser.add_argument("--small-burst", type=int, default=100, help="the small burst (100)")
    parser.add_argument("--latency-keys", type=int, default=50, help="keys created one at a time (50)")
    parser.add_argument("--admission-requests", type=int, default=300, help="dry-run creates timed (300)")
    parser.add_argument("--resync-seconds", type=float, default=240, help="resync interval of the 1,000 keys")
    parser.add_argument("--idle-seconds", type=float, default=60, help="idle window at 1,000 keys (60)")
    parser.add_argument("--emulator-seconds", type=float, default=3, help="kms_emulator.bench duration (3)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="where latest.json/md go")
    peer.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.peer = peer.options(args)  # checked before anything runs
    except peer.PeerConfigError as error:
        parser.error(str(error))
    results = run(args)
    json_path, md_path = report.write(results, args.output_dir)
    print()
    print(report.table(results))
    print()
    print(f"bench: {results['bench_wall_seconds']:.0f}s; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
