"""`make bench`'s two-account row (#15): two accounts bursting 1,000 KmsKeys each at once, quotas on.

KMS's quotas are per account and region (CreateKey 10/s), so two teams in two accounts should each get their
whole quota: both bursts Ready within 1.2 × one account's floor (1,000 ÷ 10/s = 100 s), not 2 × it. One
emulator process serves both accounts (its quotas on, HTTPS); one fresh operator serves both namespaces, each
with a `default` KmsProviderConfig over a Secret of its own account, so every key goes through the accounts
registry, its account's rate limiter and that account's credentials.

Results: `two_account_burst_seconds` (both Ready), `two_account_burst_ratio` (that ÷ one account's floor),
and per account the seconds, throttled calls and creates. `python -m tests.bench.accounts [--keys N]` runs it
alone (its own control plane) and merges these keys into tests/bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.bench import cluster, procstat, transport
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.processes import ManagedProcess, ProcessSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
CREATE_QPS = 10.0
ACCOUNTS = {
    "bench-account-a": ("1111111111111111", "ak-bench-a", "bench-a-secret-0123456789"),
    "bench-account-b": ("2222222222222222", "ak-bench-b", "bench-b-secret-0123456789"),
}
RATIO_TARGET = 1.2

# (result key, row label, unit, format), appended to report.ROWS
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("two_account_burst_seconds", "Two accounts × {keys} KmsKeys at once → all Ready", "s", "{:.1f}"),
    ("two_account_burst_ratio", "  ratio to one account's floor ({keys} ÷ CreateKey QPS)", "×", "{:.3f}"),
    ("two_account_burst_throttled_calls", "  KMS calls throttled, both accounts", "", "{:.0f}"),
)
# (result key, label, limit), appended to report.targets
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("two_account_burst_ratio", "two accounts × {keys} keys Ready ≤ 1.2 × one account's floor", RATIO_TARGET),
)
Log = Callable[[str], None]


def accounts_document() -> dict[str, Any]:
    return {
        "accounts": [
            {
                "accountId": account,
                "users": [{"name": "bench", "accessKeys": [{"id": key, "secret": secret}]}],
            }
            for account, key, secret in ACCOUNTS.values()
        ]
    }


@contextmanager
def emulator(log_dir: Path, keys: int) -> Iterator[transport.KmsEndpoint]:
    """A second emulator process, serving the two accounts (quotas on, HTTPS)."""
    accounts_file = log_dir / "bench-accounts.json"
    accounts_file.write_text(json.dumps(accounts_document()))
    argv = [
        sys.executable,
        "-m",
        "kms_emulator",
        "--port",
        "0",
        "--max-keys",
        str(keys + 100),
        "--quotas",
        "on",
        "--accounts-file",
        str(accounts_file),
        "--tls-dir",
        str(log_dir / "kms-tls-accounts"),
    ]
    process = ManagedProcess(
        ProcessSpec("kms-emulator-accounts", argv, env={"PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT),
        log_dir / "kms-emulator-accounts.log",
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            endpoint = transport.KmsEndpoint.from_log(process.log_path.read_text())
            if endpoint:
                break
            if process.exited() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the accounts emulator did not start:\n{process.log_tail()}")
            time.sleep(0.05)
        yield endpoint
    finally:
        process.stop()


def provider_config(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"credentials": {"source": "Secret", "secretRef": {"name": "kms-keys"}}},
    }


def prepare(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    for namespace, (_, key, secret) in ACCOUNTS.items():
        cluster.create_namespace(api, namespace)
        data = {"accessKeyId": key, "accessKeySecret": secret}
        core.create_namespaced_secret(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kms-keys"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            },
        )
        custom.create_namespaced_custom_object(
            "kms.alicloud.dev", "v1alpha1", namespace, "kmsproviderconfigs", provider_config(namespace)
        )


def wait_configs_ready(api: client.ApiClient, timeout: float = 60) -> None:
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for namespace in ACCOUNTS:
            body = custom.get_namespaced_custom_object(
                "kms.alicloud.dev", "v1alpha1", namespace, "kmsproviderconfigs", "default"
            )
            conditions = (body.get("status") or {}).get("conditions") or []
            ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if ready == len(ACCOUNTS):
            return
        time.sleep(0.5)
    raise TimeoutError("the bench's KmsProviderConfigs did not get Ready")


def burst(api: client.ApiClient, keys: int, log: Log) -> dict[str, Any]:
    """`keys` KmsKeys in each account's namespace, all applied at once; seconds until each set is Ready."""
    bodies = {
        namespace: [
            cluster.kmskey(f"key-{i:04d}", {"description": f"two-account burst {i}"}) for i in range(keys)
        ]
        for namespace in ACCOUNTS
    }
    watchers = {namespace: cluster.ReadyWatcher(api, namespace) for namespace in ACCOUNTS}
    for watcher in watchers.values():
        watcher.__enter__()
    try:
        began = time.monotonic()
        appliers = [
            threading.Thread(
                target=cluster.create_many, args=(api, ns, bodies[ns], watchers[ns]), kwargs={"workers": 4}
            )
            for ns in ACCOUNTS
        ]
        for thread in appliers:
            thread.start()
        for thread in appliers:
            thread.join()
        log(f"two accounts: {2 * keys} manifests applied in {time.monotonic() - began:.1f}s")
        floor = keys / CREATE_QPS
        deadline = time.monotonic() + 3 * floor + 120
        per_account: dict[str, float] = {}
        for namespace, watcher in watchers.items():
            wanted = [b["metadata"]["name"] for b in bodies[namespace]]
            while not watcher.wait_ready(wanted, timeout=min(15.0, max(0.1, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{namespace}: {watcher.count_ready(wanted)} of {keys} Ready")
                log(f"two accounts: {namespace} {watcher.count_ready(wanted)}/{keys} Ready")
            per_account[namespace] = max(watcher.keys[n].ready[1] for n in wanted) - began
    finally:
        for watcher in watchers.values():
            watcher.__exit__()
    return {"floor_seconds": floor, "seconds_by_namespace": per_account}


def section(
    plane: ControlPlane, log_dir: Path, *, keys: int, log: Log, start_operator: Callable[..., OperatorProcess]
) -> dict[str, Any]:
    """Run the row on `plane` with its own emulator and operator (started by `start_operator(endpoint)`)."""
    api = cluster.api_client(plane.kubeconfig)
    with emulator(log_dir, keys=2 * keys) as endpoint:
        admin = transport.admin_client(endpoint)
        admin.wait_ready()
        prepare(api)
        operator = start_operator(endpoint)
        try:
            wait_configs_ready(api)
            admin.reset_calls()
            assert operator.process is not None
            sampler = procstat.Sampler(operator.process.pid)
            with sampler:
                mark = sampler.mark()
                measured = burst(api, keys, log)
                window = sampler.window(mark)
        finally:
            operator.stop()
        calls = admin.calls()
    seconds = max(measured["seconds_by_namespace"].values())
    by_account: dict[str, dict[str, Any]] = {}
    for namespace, (account, _, _) in ACCOUNTS.items():
        mine = [r for r in calls if r.account_id == account]
        by_account[account] = {
            "seconds": measured["seconds_by_namespace"][namespace],
            "creates": sum(1 for r in mine if r.action == "CreateKey" and r.status == 200),
            "throttled_calls": sum(1 for r in mine if r.code and "Throttling" in r.code),
            "kms_calls": len(mine),
        }
    result = {
        "two_account_burst_seconds": seconds,
        "two_account_burst_ratio": seconds / measured["floor_seconds"],
        "two_account_floor_seconds": measured["floor_seconds"],
        "two_account_burst_keys_per_account": keys,
        "two_account_burst_throttled_calls": sum(a["throttled_calls"] for a in by_account.values()),
        "two_account_burst_operator_cpu_percent": window.cpu_percent,
        "two_account_burst_operator_rss_mb_max": window.rss_mb_max,
        "two_account_burst_by_account": by_account,
    }
    log(
        f"two accounts: both Ready in {seconds:.1f}s = {result['two_account_burst_ratio']:.3f} × one "
        f"account's floor ({measured['floor_seconds']:.0f}s); {json.dumps(by_account)}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the row alone and merge its keys into latest.json (and latest.md)."""
    from tests.bench import report
    from tests.bench import run as bench_run

    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.accounts", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--keys", type=int, default=1000, help="KmsKeys per account (1000)")
    parser.add_argument("--output-dir", type=Path, default=bench_run.RESULTS_DIR)
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="kmskey-bench-accounts-"))
    started = time.monotonic()
    with ControlPlane(bench_run.kube_bin(), log_dir=log_dir) as plane:
        bench_run.install_crds(plane)

        def start(endpoint: transport.KmsEndpoint) -> OperatorProcess:
            operator = bench_run.operator_process(
                plane, endpoint, log_dir, "operator-accounts", WATCH_NAMESPACES=",".join(ACCOUNTS)
            )
            operator.start()
            bench_run.wait_operator_ready(plane, operator)
            return operator

        found = section(plane, log_dir, keys=args.keys, log=bench_run.log, start_operator=start)
    found["two_account_run"] = {
        "revision": report.git_revision(),
        "finished_at": report.now_iso(),
        "wall_seconds": time.monotonic() - started,
        "machine": report.machine(),
        "log_dir": str(log_dir),
    }
    latest = args.output_dir / "latest.json"
    results = json.loads(latest.read_text()) if latest.exists() else {}
    results.update(found)
    run = found["two_account_run"]
    # A directory without a full run's latest.json still renders: the header reads these.
    results.setdefault("machine", run["machine"])
    results.setdefault("finished_at", run["finished_at"])
    results.setdefault("revision", run["revision"])
    results.setdefault("bench_wall_seconds", run["wall_seconds"])
    report.write(results, args.output_dir)
    print(json.dumps({k: v for k, v in found.items() if not isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
