"""`make dev-up` / `make dev-down`: the local environment for humans, running in the background.

    python -m tests.harness.devenv up|down|status

`up` starts the control plane (etcd + kube-apiserver) and every available service in SERVICES (today the KMS
emulator, later the operator) as detached processes, applies crds/, and writes into .dev/:

    kubeconfig   the admin kubeconfig
    env          KUBECONFIG=... plus each service's variables, for `set -a; . .dev/env; set +a`
    kms-tls/     the KMS emulator's CA (ca.crt, trusted by the operator: KMS is reached over HTTPS)
    pids         the started processes (PID + kernel start time), the only ones `down` will signal
    logs/        one log per process (kept after `down`)

`up` is idempotent (a running environment is left as it is); `down` stops exactly what `up` recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness.controlplane import ControlPlane, ControlPlaneError, missing_binaries, run_kubectl
from tests.harness.ports import free_ports
from tests.harness.processes import ManagedProcess, ProcessRecord, ProcessSpec, log_tail, stop_record

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = REPO_ROOT / ".dev"
SERVICE_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServiceSpec:
    """A background service besides the control plane.

    `argv` gets the environment gathered so far (KUBECONFIG and earlier services' variables); `ready` is
    matched against the service's log, and `env` turns the match into variables for .dev/env. `extra_env`
    is called just before the service starts (so the ports it reserves are reserved by the `up` that runs).
    """

    name: str
    available: Callable[[], bool]
    argv: Callable[[dict[str, str]], Sequence[str]]
    ready: re.Pattern[str]
    env: Callable[[re.Match[str]], dict[str, str]]
    extra_env: Callable[[], dict[str, str]] = dict


def _emulator_env(match: re.Match[str]) -> dict[str, str]:
    return {
        "KMS_ENDPOINT": f"127.0.0.1:{match.group(1)}",
        # HTTPS, as real KMS: the operator (and the SDK: Config(ca=...)) trusts the emulator's own CA.
        "KMS_PROTOCOL": "https",
        "KMSKEY_KMS_CA_BUNDLE": match.group(2),
        # The emulator's documented default key pair (kms_emulator/credentials.py).
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "emulator-access-key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "emulator-access-key-secret",
        "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
    }


def _operator_env() -> dict[str, str]:
    health, metrics, webhook = free_ports(3)
    return {
        "PYTHONPATH": str(REPO_ROOT / "operator"),
        "PYTHONUNBUFFERED": "1",
        "KMSKEY_HEALTH_HOST": "127.0.0.1",
        "KMSKEY_HEALTH_PORT": str(health),
        "KMSKEY_METRICS_HOST": "127.0.0.1",
        "KMSKEY_METRICS_PORT": str(metrics),
        "KMSKEY_WEBHOOK_LISTEN_HOST": "127.0.0.1",
        "KMSKEY_WEBHOOK_HOST": "127.0.0.1",
        "KMSKEY_WEBHOOK_PORT": str(webhook),
        "KMSKEY_WEBHOOK_CERT_DIR": str(DEV_DIR / "webhook-certs"),
        "KMSKEY_WEBHOOK_MANAGED": "kmskey-operator-dev",
        "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
        "KMSKEY_RESYNC_SECONDS": "60",
        # One developer, every namespace theirs: examples/adopt-existing-key.yaml works as it is.
        "KMSKEY_ADOPTION_NAMESPACES": "*",
    }


SERVICES: list[ServiceSpec] = [
    ServiceSpec(
        name="kms-emulator",
        available=lambda: (REPO_ROOT / "operator" / "kms_emulator" / "__main__.py").is_file(),
        # The seed example's KMS instance ID, so examples/seed.yaml works as it is.
        argv=lambda env: [
            sys.executable,
            "-m",
            "kms_emulator",
            "--port",
            "0",
            "--instance-id",
            "kst-hzz62ee5fe3b7ifgq5hmg",
            "--tls-dir",
            str(DEV_DIR / "kms-tls"),  # the CA survives dev-down/dev-up: .dev/env stays valid
        ],
        ready=re.compile(r"kms-emulator listening on https://127\.0\.0\.1:(\d+) \(CA certificate: (.+)\)"),
        env=_emulator_env,
        extra_env=lambda: {"PYTHONPATH": str(REPO_ROOT / "operator"), "PYTHONUNBUFFERED": "1"},
    ),
    ServiceSpec(
        name="operator",
        available=lambda: (REPO_ROOT / "operator" / "kmskey_operator" / "cli.py").is_file(),
        argv=lambda env: [sys.executable, "-m", "kmskey_operator.cli", "run"],
        # Ready once its admission webhook serves and its configuration is written.
        ready=re.compile(r"(?:Created|Updated) ValidatingWebhookConfiguration (\S+)"),
        env=lambda match: {},
        extra_env=_operator_env,
    ),
]


class DevEnvError(RuntimeError):
    pass


def _log(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def _read_records(dev_dir: Path) -> list[ProcessRecord]:
    path = dev_dir / "pids"
    if not path.exists():
        return []
    return [ProcessRecord.from_json(item) for item in json.loads(path.read_text())]


def _write_records(dev_dir: Path, records: Sequence[ProcessRecord]) -> None:
    path = dev_dir / "pids"
    path.write_text(json.dumps([r.to_json() for r in records], indent=2) + "\n")


def _kube_bin() -> str:
    """$KUBE_BIN, else whatever the (cached) build script reports."""
    kube_bin = os.environ.get("KUBE_BIN", "")
    if kube_bin:
        return kube_bin
    _log("KUBE_BIN not set: asking hack/build-control-plane.sh (builds once, then cached)")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-control-plane.sh")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    found = re.search(r"^KUBE_BIN=(.+)$", result.stdout, re.MULTILINE)
    return found.group(1) if found else ""


def _start_service(
    spec: ServiceSpec, env: dict[str, str], log_dir: Path
) -> tuple[ManagedProcess, dict[str, str]]:
    process = ManagedProcess(
        ProcessSpec(spec.name, list(spec.argv(env)), env={**env, **spec.extra_env()}, cwd=REPO_ROOT),
        log_dir / f"{spec.name}.log",
        detach=True,
    )
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        match = spec.ready.search(process.log_path.read_text(errors="replace"))
        if match:
            return process, spec.env(match)
        code = process.exited()
        if code is not None:
            raise DevEnvError(f"{spec.name} exited with code {code}:\n{process.log_tail()}")
        time.sleep(0.1)
    process.stop()
    raise DevEnvError(
        f"{spec.name} printed no ready line in {SERVICE_START_TIMEOUT:.0f}s:\n{process.log_tail()}"
    )


def up(dev_dir: Path = DEV_DIR) -> int:
    running = [r for r in _read_records(dev_dir) if r.alive()]
    if running:
        _log(
            f"already up ({', '.join(f'{r.name}={r.pid}' for r in running)}); "
            "run `make dev-down` first to restart"
        )
        return 0
    if (dev_dir / "pids").exists():
        _log("found a stale .dev/pids (nothing alive): cleaning up")
        down(dev_dir, quiet=True)

    kube_bin = _kube_bin()
    problem = missing_binaries(kube_bin)
    if problem:
        raise DevEnvError(f"{problem}: run `make control-plane`")

    log_dir = dev_dir / "logs"
    for old in log_dir.glob("*.log"):
        old.unlink()
    shutil.rmtree(dev_dir / "control-plane", ignore_errors=True)  # nothing runs from it (checked above)
    plane = ControlPlane(kube_bin, dev_dir / "control-plane", detach=True, log_dir=log_dir)
    started: list[ProcessRecord] = []
    try:
        _log("starting etcd + kube-apiserver on 127.0.0.1")
        try:
            plane.start()
        finally:
            started.extend(plane.records)
            _write_records(dev_dir, started)
        kubeconfig = dev_dir / "kubeconfig"
        shutil.copyfile(plane.kubeconfig, kubeconfig)
        kubeconfig.chmod(0o600)
        _log(f"kube-apiserver ready at {plane.server} in {plane.startup_seconds:.1f}s")

        crds = REPO_ROOT / "crds"
        if any(crds.glob("*.yaml")):
            run_kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(crds))
            run_kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
            _log("CRDs applied and Established")

        env = {"KUBECONFIG": str(kubeconfig.resolve())}
        for spec in SERVICES:
            if not spec.available():
                _log(f"{spec.name}: not available yet, skipped")
                continue
            process, service_env = _start_service(spec, env, log_dir)
            started.append(process.record)
            _write_records(dev_dir, started)
            env.update(service_env)
            _log(f"{spec.name} ready (pid {process.pid})")

        (dev_dir / "env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    except BaseException:  # including Ctrl-C: leave nothing running
        for record in reversed(started):
            stop_record(record)
        (dev_dir / "pids").unlink(missing_ok=True)
        raise
    _log(f"up: {len(started)} processes; logs in {log_dir}")
    _log("use it with:  set -a; . .dev/env; set +a; kubectl get kmskeys")
    return 0


def down(dev_dir: Path = DEV_DIR, *, quiet: bool = False) -> int:
    records = _read_records(dev_dir)
    if not records and not quiet:
        _log("nothing recorded in .dev/pids: nothing to stop")
    for record in reversed(records):  # services first, then kube-apiserver, then etcd
        was_alive = record.alive()
        stop_record(record)
        if not quiet:
            _log(f"{record.name} (pid {record.pid}): {'stopped' if was_alive else 'was not running'}")
    for name in ("pids", "env", "kubeconfig"):
        (dev_dir / name).unlink(missing_ok=True)
    shutil.rmtree(dev_dir / "control-plane", ignore_errors=True)
    return 0


def status(dev_dir: Path = DEV_DIR) -> int:
    records = _read_records(dev_dir)
    if not records:
        print("down")
        return 0
    alive = 0
    for record in records:
        state = "running" if record.alive() else "NOT running"
        alive += record.alive()
        print(f"{record.name:16} pid {record.pid:<8} {state:12} log {record.log}")
    if alive < len(records):
        for record in records:
            if not record.alive():
                print(f"--- last lines of {record.log}:\n{log_tail(Path(record.log), 10)}")
    env_file = dev_dir / "env"
    if env_file.exists():
        print(env_file.read_text(), end="")
    return 0 if alive == len(records) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.devenv", description="The local dev environment in the background."
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    DEV_DIR.mkdir(exist_ok=True)
    try:
        if args.command == "up":
            return up()
        if args.command == "down":
            return down()
        return status()
    except (DevEnvError, ControlPlaneError) as error:
        _log(f"ERROR: {error}")
        return 1
    except KeyboardInterrupt:
        _log("interrupted; everything started so far was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
