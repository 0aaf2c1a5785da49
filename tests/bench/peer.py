"""The peer row of `make bench`: AWS's ACK kms-controller against moto's KMS, beside the operator (#18).

Optional. With `--peer-binary` (a kms-controller built by hand beside the project: the README's Performance
section gives the steps) and `--peer-crds` (that repository's `config/crd`), the bench ends with a
side-by-side section on the same API server, in the same run:

1. ours: a fresh operator process (the bench's settings, its webhook registered) watching one new namespace,
   with the emulator's quotas and the operator's client-side limits off; N KmsKeys applied at once;
2. then, ours stopped, the peer: moto's server (`moto_server`) as KMS and STS, the ACK controller watching
   another new namespace; the same N keys (same names, same description) as ACK `Key` resources.

Each controller runs alone and is measured the same way: apply → all Ready (first Ready=True of every key);
CPU per create, the CPU seconds of the controller process from the first create until it is quiet again
after all are Ready, ÷ N; RSS per key, its RSS after all are Ready and an idle window, ÷ N. Ratios are
ours ÷ peer: below 1.0, ours is better.

Nothing may dial any address but 127.0.0.1: the peer gets static credentials, every AWS endpoint (KMS, STS)
pointed at moto, the EC2 metadata service disabled, no inherited `AWS_*` variable, and 127.0.0.1 for every
port it listens on; a socket audit (`netaudit`) samples the remote ends of the sockets of the peer, moto and
our operator throughout and fails the section if any is not loopback. Without `--peer-binary` the section is
skipped and says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.bench import cluster, netaudit, procstat, report
from tests.harness.controlplane import ControlPlane
from tests.harness.ports import free_ports
from tests.harness.processes import ManagedProcess, ProcessSpec

SKIP_MESSAGE = (
    "peer row skipped: no --peer-binary given (build ACK's kms-controller by hand as the README's "
    'Performance section says, then `make bench BENCH_ARGS="--peer-binary PATH --peer-crds DIR"`)'
)
PEER_NAME = "ACK kms-controller + moto"
ACK_GROUP = "kms.services.k8s.aws"
ACK_VERSION = "v1alpha1"
AWS_REGION = "us-east-1"
# moto accepts any credentials; these are its documented test values, never real ones.
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"
OURS_NAMESPACE = "bench-peer-ours"
PEER_NAMESPACE = "bench-peer-ack"


class PeerConfigError(ValueError):
    """A --peer-* flag names something the bench cannot use; the message names the flag and the fix."""


# -- flags ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PeerOptions:
    binary: Path
    crds: tuple[Path, ...]
    moto_server: Path
    idle_seconds: float
    extra_args: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("peer row (optional: ACK's kms-controller against moto, see README)")
    group.add_argument(
        "--peer-binary", type=Path, help="ACK kms-controller binary built by hand; without it: no peer row"
    )
    group.add_argument("--peer-crds", type=Path, help="its CRDs: the controller repository's config/crd")
    group.add_argument(
        "--peer-moto-server",
        type=Path,
        help="moto's `moto_server` (pip install 'moto[server]'); default: beside this Python, else PATH",
    )
    group.add_argument(
        "--peer-idle-seconds", type=float, default=30, help="idle window after all Ready, each side (30)"
    )
    group.add_argument(
        "--peer-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more ACK controller flag, e.g. --peer-arg=--reconcile-default-max-concurrent-syncs=8",
    )


def options(
    args: argparse.Namespace, which: Callable[[str], str | None] = shutil.which
) -> PeerOptions | None:
    """The peer row's options, None when it is off (no --peer-binary); PeerConfigError when unusable."""
    if args.peer_binary is None:
        if args.peer_crds is not None or args.peer_moto_server is not None or args.peer_arg:
            raise PeerConfigError(
                "--peer-crds/--peer-moto-server/--peer-arg need --peer-binary (the controller)"
            )
        return None
    binary = args.peer_binary.expanduser()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise PeerConfigError(f"--peer-binary {binary}: not an executable file (build it as the README says)")
    if args.peer_crds is None:
        raise PeerConfigError("--peer-binary needs --peer-crds DIR (the controller repository's config/crd)")
    crds = crd_files(args.peer_crds.expanduser())
    moto = args.peer_moto_server
    if moto is None:
        beside = Path(sys.executable).parent / "moto_server"
        found = str(beside) if beside.is_file() else which("moto_server")
        if found is None:
            raise PeerConfigError(
                "moto_server not found beside this Python or on PATH: pip install 'moto[server]' "
                "(the README's Performance section) and pass --peer-moto-server PATH"
            )
        moto = Path(found)
    moto = moto.expanduser()
    if not (moto.is_file() and os.access(moto, os.X_OK)):
        raise PeerConfigError(f"--peer-moto-server {moto}: not an executable file")
    if args.peer_idle_seconds < 0:
        raise PeerConfigError("--peer-idle-seconds must not be negative")
    for extra in args.peer_arg:
        if not extra.startswith("--"):
            raise PeerConfigError(
                f"--peer-arg {extra!r}: give one --flag[=value] (write --peer-arg=--flag=value)"
            )
        if extra.split("=", 1)[0] in PINNED_FLAGS:
            raise PeerConfigError(f"--peer-arg {extra!r}: the bench sets that flag itself (127.0.0.1, moto)")
    return PeerOptions(binary, crds, moto, float(args.peer_idle_seconds), tuple(args.peer_arg))


def crd_files(directory: Path) -> tuple[Path, ...]:
    """Every CustomResourceDefinition manifest under `directory` (kustomization files are not)."""
    if not directory.is_dir():
        raise PeerConfigError(f"--peer-crds {directory}: not a directory (give the repository's config/crd)")
    found = tuple(
        path
        for path in sorted(directory.rglob("*.yaml"))
        if re.search(r"^kind:\s*CustomResourceDefinition\s*$", path.read_text(errors="replace"), re.M)
    )
    if not any("kms.services.k8s.aws_keys" in path.name for path in found):
        raise PeerConfigError(f"--peer-crds {directory}: no Key CRD (kms.services.k8s.aws_keys.yaml) in it")
    return found


# -- the peer's processes -------------------------------------------------------------------------------


def peer_environment(kubeconfig: Path, endpoint: str) -> dict[str, str]:
    """What the ACK controller gets on top of the bench's environment (inherited AWS_* variables dropped).

    Static credentials, one region, every AWS endpoint (KMS, and STS for GetCallerIdentity) at moto, no
    shared config or credentials files, no EC2 instance metadata service.
    """
    return {
        "KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_REGION": AWS_REGION,
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_KMS": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


# The flags `peer_argv` sets: what keeps the peer on 127.0.0.1, at moto and in its namespace.
PINNED_FLAGS = frozenset(
    {
        "--aws-region",
        "--aws-endpoint-url",
        "--aws-identity-endpoint-url",
        "--allow-unsafe-aws-endpoint-urls",
        "--enable-leader-election",
        "--watch-namespace",
        "--healthz-addr",
        "--metrics-addr",
        "--webhook-server-addr",
    }
)


def peer_argv(
    binary: Path,
    endpoint: str,
    namespace: str,
    health_port: int,
    metrics_port: int,
    webhook_port: int,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The controller's flags: the chart's defaults, except what keeps it on 127.0.0.1 and in `namespace`.

    Like the chart: leader election off, one concurrent sync per kind, the default 10 h resync, the
    default resource tags. Every listen address is 127.0.0.1 (the binary's defaults are 0.0.0.0).
    """
    return [
        str(binary),
        f"--aws-region={AWS_REGION}",
        f"--aws-endpoint-url={endpoint}",
        f"--aws-identity-endpoint-url={endpoint}",
        "--allow-unsafe-aws-endpoint-urls",  # moto serves plain HTTP on 127.0.0.1
        "--enable-leader-election=false",
        f"--watch-namespace={namespace}",
        f"--healthz-addr=127.0.0.1:{health_port}",
        f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--webhook-server-addr=127.0.0.1:{webhook_port}",
        "--log-level=info",
        *extra_args,
    ]


def moto_argv(moto_server: Path, port: int) -> list[str]:
    return [str(moto_server), "-H", "127.0.0.1", "-p", str(port)]


MOTO_REQUEST = re.compile(r'"POST [^"]* HTTP/1\.[01]" (\d{3})')


def moto_requests(log_text: str) -> tuple[int, int]:
    """(requests, of which errors >= 400) in a slice of moto's log (werkzeug logs one line per request)."""
    codes = [int(m.group(1)) for m in MOTO_REQUEST.finditer(log_text)]
    return len(codes), sum(1 for c in codes if c >= 400)


def metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def counter_by_label(text: str, sample_name: str, label: str | None = None) -> Counter[str]:
    """Sum of a Prometheus counter's samples in `text`, by the value of `label` ("" without one)."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name:
                counts[sample.labels.get(label, "") if label else ""] += int(sample.value)
    return counts


def wait_for(what: str, check: Callable[[], bool], process: ManagedProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.exited() is not None:
            raise RuntimeError(f"{what}: {process.spec.name} exited:\n{process.log_tail(40)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f}s:\n{process.log_tail(40)}")
        time.sleep(0.2)


def accepts_connections(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# -- one side's measurement -----------------------------------------------------------------------------


def ack_key_ready(body: Mapping[str, Any]) -> bool:
    """ACK's `Ready` condition is True (set with ACK.ResourceSynced once the runtime has synced the key)."""
    for entry in (body.get("status") or {}).get("conditions") or []:
        if isinstance(entry, dict) and entry.get("type") == "Ready":
            return entry.get("status") == "True"
    return False


ACK_KEYS = cluster.Resource(ACK_GROUP, ACK_VERSION, "keys", ack_key_ready)


def ack_key(name: str, description: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{ACK_GROUP}/{ACK_VERSION}",
        "kind": "Key",
        "metadata": {"name": name},
        "spec": {"description": description},
    }


def key_names(count: int) -> list[str]:
    return [f"key-{i:04d}" for i in range(count)]


def description(name: str) -> str:
    return f"bench peer comparison {name}"


def first_ready(times: cluster.KeyTimes) -> float | None:
    """When the key was first Ready, whatever its generation (ACK's late initialisation bumps it to 2)."""
    return min(times.ready.values()) if times.ready else None


Calls = tuple[Counter[str], int]  # KMS calls so far by action, and how many of them failed


@dataclasses.dataclass
class Side:
    """One controller under test, already started and idle, and how to count the KMS calls it made."""

    name: str
    namespace: str
    resource: cluster.Resource
    bodies: list[dict[str, Any]]
    pid: int
    backend_pid: int
    calls: Callable[[], Calls]


QUIET_PERCENT = 5.0  # a controller below this much of a core over QUIET_SECONDS has finished its work
QUIET_SECONDS = 3.0


def wait_quiet(
    pid: int, timeout: float, percent: float = QUIET_PERCENT, seconds: float = QUIET_SECONDS
) -> bool:
    """Block until `pid` used less than `percent` of a core over the last `seconds`; False on timeout."""
    samples = [(time.monotonic(), procstat.cpu_seconds(pid))]
    deadline = samples[0][0] + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples.append((time.monotonic(), procstat.cpu_seconds(pid)))
        while len(samples) > 2 and samples[-1][0] - samples[1][0] >= seconds:
            samples.pop(0)
        span = samples[-1][0] - samples[0][0]
        if span >= seconds and 100 * (samples[-1][1] - samples[0][1]) / span < percent:
            return True
    return False


def measure(
    api: client.ApiClient, side: Side, idle_seconds: float, context_pids: Mapping[str, int]
) -> dict[str, Any]:
    """Apply `side.bodies` at once → all Ready, then until the controller is quiet, then an idle window.

    CPU per create counts the controller's CPU from the first create until it is quiet again after all
    keys are Ready (work a create causes after its key is Ready, such as ACK's second pass over every key
    once it wrote its late-initialised spec fields, counts too); RSS is read at the end of the idle window.
    """
    count = len(side.bodies)
    wanted = [b["metadata"]["name"] for b in side.bodies]
    rss_start = procstat.rss_mb(side.pid)
    others = {"kms-backend": side.backend_pid, **context_pids}
    with procstat.Sampler(side.pid) as sampler:
        calls_before, errors_before = side.calls()
        cpu_others = {n: procstat.cpu_seconds(p) for n, p in others.items()}
        mark = sampler.mark()
        with cluster.ReadyWatcher(api, side.namespace, side.resource) as watcher:
            began = time.monotonic()
            apply_seconds = cluster.create_many(
                api, side.namespace, side.bodies, watcher, workers=8, resource=side.resource
            )
            report_every = time.monotonic() + 15
            deadline = began + max(600.0, 2.0 * count)

            def all_ready(keys: dict[str, cluster.KeyTimes]) -> bool:
                return all(n in keys and keys[n].ready for n in wanted)

            while not watcher.wait(all_ready, timeout=1.0):
                now = time.monotonic()
                ready = sum(1 for n in wanted if n in watcher.keys and watcher.keys[n].ready)
                if now > deadline:
                    raise TimeoutError(f"{side.name}: {ready}/{count} Ready after {now - began:.0f}s")
                if now > report_every:
                    log(f"{side.name}: {ready}/{count} Ready")
                    report_every = now + 15
            burst = sampler.window(mark)
            cpu_until_ready = procstat.cpu_seconds(side.pid) - mark[1]
            quiet = wait_quiet(side.pid, timeout=max(120.0, 0.5 * (time.monotonic() - began)))
            settled = sampler.window(mark)
            ready_at = [first_ready(watcher.keys[n]) for n in wanted]
        cpu_seconds = procstat.cpu_seconds(side.pid) - mark[1]
        elapsed = time.monotonic() - began
        cpu_context = {n: procstat.cpu_seconds(p) - cpu_others[n] for n, p in others.items()}
        calls_after, errors_after = side.calls()
        idle_mark = sampler.mark()
        time.sleep(idle_seconds)
        idle = sampler.window(idle_mark)
    offsets = [t - began for t in ready_at if t is not None]
    calls = calls_after - calls_before
    rss_idle = idle.rss_mb_end
    return {
        "controller": side.name,
        "keys": count,
        "ready_seconds": max(offsets),
        "apply_seconds": apply_seconds,
        "ready_p50_seconds": report.percentile(offsets, 0.5),
        "settled_seconds": settled.seconds,
        "settled_quiet": quiet,
        "cpu_seconds_creates": cpu_seconds,
        "cpu_ms_per_create": 1000 * cpu_seconds / count,
        "cpu_ms_per_create_until_ready": 1000 * cpu_until_ready / count,
        "cpu_percent_burst": burst.cpu_percent,
        "cpu_percent_idle": idle.cpu_percent,
        "idle_seconds": idle.seconds,
        "rss_mb_start": rss_start,
        "rss_mb_peak": max(settled.rss_mb_max, idle.rss_mb_max),
        "rss_mb_idle": rss_idle,
        "rss_kib_per_key": 1024 * rss_idle / count,
        "rss_kib_per_key_marginal": 1024 * (rss_idle - rss_start) / count,
        "kms_calls_per_create": sum(calls.values()) / count,
        "kms_calls_create_by_action": {k: v / count for k, v in sorted(calls.items())},
        "kms_call_errors": errors_after - errors_before,
        "cpu_percent_of_one_core": {n: round(100 * v / elapsed, 1) for n, v in cpu_context.items()},
    }


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours ÷ peer (below 1.0: ours is better for a cost); None when either is missing or the peer is 0."""
    if ours is None or peer is None or peer <= 0:
        return None
    return ours / peer


def ratios(ours: Mapping[str, Any], peer: Mapping[str, Any]) -> dict[str, float | None]:
    """The result keys `make bench` reports for the peer row (issue #18's targets: the first two < 1.0)."""
    return {
        "peer_rss_ratio": ratio(ours.get("rss_kib_per_key"), peer.get("rss_kib_per_key")),
        "peer_cpu_per_create_ratio": ratio(ours.get("cpu_ms_per_create"), peer.get("cpu_ms_per_create")),
        "peer_ready_seconds_ratio": ratio(ours.get("ready_seconds"), peer.get("ready_seconds")),
        "peer_rss_marginal_ratio": ratio(
            ours.get("rss_kib_per_key_marginal"), peer.get("rss_kib_per_key_marginal")
        ),
    }


def skipped(reason: str = SKIP_MESSAGE) -> dict[str, Any]:
    return {"peer": {"skipped": reason}}


# -- the section ----------------------------------------------------------------------------------------


class Controller(Protocol):
    """What the bench's operator process offers the peer row (tests.harness.operator.OperatorProcess)."""

    process: ManagedProcess | None

    def stop(self) -> None: ...

    def log(self) -> str: ...


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] peer row: {message}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def moto_version(moto_server: Path) -> str:
    python = moto_server.parent / "python"
    if not python.exists():
        return "unknown"
    result = subprocess.run(
        [str(python), "-c", "import moto; print(moto.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def controller_version(log_text: str) -> str:
    match = re.search(r'"msg":"initializing service controller"[^\n]*"version":"([^"]*)"', log_text)
    return (match.group(1) or "unset") if match else "unknown"


def error_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if '"level":"error"' in line or "Traceback" in line)


def measure_ours(
    api: client.ApiClient,
    keys: int,
    idle_seconds: float,
    start_ours: Callable[[Mapping[str, str]], Controller],
    ours_backend: tuple[int, Callable[[], Calls]],
    set_backend_quotas: Callable[[bool], None],
    audit: netaudit.SocketAudit,
    context_pids: Mapping[str, int],
) -> dict[str, Any]:
    """Ours alone: the emulator's quotas and the operator's client-side limits off, one namespace watched."""
    cluster.create_namespace(api, OURS_NAMESPACE)
    set_backend_quotas(False)
    operator = start_ours(
        {
            "WATCH_NAMESPACES": OURS_NAMESPACE,
            "KMSKEY_CREATE_QPS": "0",
            "KMSKEY_READ_QPS": "0",
            "KMSKEY_WRITE_QPS": "0",
        }
    )
    try:
        assert operator.process is not None
        audit.add("kmskey-operator", operator.process.pid)
        backend_pid, backend_calls = ours_backend
        log(f"ours: {keys} KmsKeys at once, quotas off")
        side = Side(
            "kmskey-operator",
            OURS_NAMESPACE,
            cluster.KMSKEYS,
            [cluster.kmskey(n, {"description": description(n)}) for n in key_names(keys)],
            operator.process.pid,
            backend_pid,
            backend_calls,
        )
        ours = measure(api, side, idle_seconds, context_pids)
        audit.sample()
        ours["log_errors"] = sum(
            1 for line in operator.log().splitlines() if "ERROR" in line or "Traceback" in line
        )
    finally:
        operator.stop()
        audit.remove("kmskey-operator")
        set_backend_quotas(True)
    log(f"ours: {json.dumps(ours)}")
    return ours


def measure_peer(
    api: client.ApiClient,
    opts: PeerOptions,
    kubeconfig: Path,
    log_dir: Path,
    keys: int,
    audit: netaudit.SocketAudit,
    context_pids: Mapping[str, int],
) -> dict[str, Any]:
    """The peer alone: moto as KMS and STS, the ACK controller watching its own namespace."""
    cluster.create_namespace(api, PEER_NAMESPACE)
    moto_port, health_port, metrics_port, webhook_port = free_ports(4)
    endpoint = f"http://127.0.0.1:{moto_port}"
    moto = ManagedProcess(
        ProcessSpec(
            "moto",
            moto_argv(opts.moto_server, moto_port),
            env={"PYTHONUNBUFFERED": "1", "AWS_EC2_METADATA_DISABLED": "true"},
            drop_env_prefixes=("AWS_",),
        ),
        log_dir / "peer-moto.log",
    )
    audit.add("moto", moto.pid)
    controller: ManagedProcess | None = None
    try:
        wait_for("moto listening", lambda: accepts_connections(moto_port), moto, 60)
        controller = ManagedProcess(
            ProcessSpec(
                "ack-kms-controller",
                peer_argv(
                    opts.binary,
                    endpoint,
                    PEER_NAMESPACE,
                    health_port,
                    metrics_port,
                    webhook_port,
                    opts.extra_args,
                ),
                env=peer_environment(kubeconfig, endpoint),
                drop_env_prefixes=("AWS_",),
            ),
            log_dir / "peer-ack-kms-controller.log",
        )
        audit.add("ack-kms-controller", controller.pid)
        ready_url = f"http://127.0.0.1:{health_port}/readyz"
        wait_for("the ACK controller /readyz", lambda: http_ok(ready_url), controller, 120)
        time.sleep(2)  # its informers list and settle

        def ack_calls() -> Calls:
            text = metrics(f"http://127.0.0.1:{metrics_port}/metrics")
            by_action = counter_by_label(text, "ack_outbound_api_requests_total", "op_id")
            return by_action, sum(counter_by_label(text, "ack_outbound_api_requests_error_total").values())

        moto_before = moto_requests(moto.log_path.read_text(errors="replace"))
        log(f"{PEER_NAME}: {keys} Keys at once (moto has no quotas)")
        side = Side(
            PEER_NAME,
            PEER_NAMESPACE,
            ACK_KEYS,
            [ack_key(n, description(n)) for n in key_names(keys)],
            controller.pid,
            moto.pid,
            ack_calls,
        )
        peer = measure(api, side, opts.idle_seconds, context_pids)
        moto_after = moto_requests(moto.log_path.read_text(errors="replace"))
        # moto's own count of the requests it served, as a check on the controller's metric
        peer["moto_requests_per_create"] = (moto_after[0] - moto_before[0]) / keys
        peer["moto_request_errors"] = moto_after[1] - moto_before[1]
        audit.sample()
        controller_log = controller.log_path.read_text(errors="replace")
        peer["log_errors"] = error_lines(controller_log)
        peer["controller_version"] = controller_version(controller_log)
    finally:
        if controller is not None:
            controller.stop()
        moto.stop()
        audit.remove("ack-kms-controller")
        audit.remove("moto")
    log(f"peer: {json.dumps(peer)}")
    return peer


def section(
    opts: PeerOptions | None,
    *,
    plane: ControlPlane,
    log_dir: Path,
    keys: int,
    start_ours: Callable[[Mapping[str, str]], Controller],
    ours_backend: tuple[int, Callable[[], Calls]],
    set_backend_quotas: Callable[[bool], None],
) -> dict[str, Any]:
    """The peer row: ours, then the peer, each alone with `keys` keys and quotas off; results for latest.json.

    `start_ours(extra_env)` starts the bench's operator (webhook registered, ready) with extra settings;
    `ours_backend` is the emulator's PID and a counter of its calls; `set_backend_quotas` turns them on/off.
    """
    if opts is None:
        log(SKIP_MESSAGE)
        return skipped()
    api = cluster.api_client(plane.kubeconfig)
    context = {p.spec.name: p.pid for p in plane.processes}  # the API server's and etcd's CPU, for context
    with netaudit.SocketAudit({}) as audit:
        ours = measure_ours(
            api, keys, opts.idle_seconds, start_ours, ours_backend, set_backend_quotas, audit, context
        )
        cluster.apply_crds(plane, opts.crds)
        peer = measure_peer(api, opts, plane.kubeconfig, log_dir, keys, audit, context)
    network = audit.summary()
    log(f"socket audit: {json.dumps(network)}")
    if network["foreign"]:
        raise RuntimeError(f"peer row: a process dialled a non-loopback address: {network['foreign']}")
    found = ratios(ours, peer)
    log(f"ratios (ours ÷ peer): {found}")
    return {
        **found,
        "peer": {
            "keys": keys,
            "ours": ours,
            "ack": peer,
            "network_audit": network,
            "binary": str(opts.binary),
            "binary_sha256": sha256(opts.binary),
            "extra_args": list(opts.extra_args),
            "moto_version": moto_version(opts.moto_server),
            "moto_server": str(opts.moto_server),
            "aws_region": AWS_REGION,
        },
    }
