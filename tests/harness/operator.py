"""Run the real operator (`kmskey-operator run`) as a child process against the local control plane.

Tests talk to it only as users do: through the Kubernetes API and KMS. `kill()` is a real SIGKILL, so
crash tests exercise the same recovery path as a pod that is OOM-killed. Given the emulator's CA
(`kms_ca_file=emu.ca_file`), the operator talks HTTPS to it and trusts that CA through its extra-CA setting,
as it would trust a corporate proxy's CA; without one it talks plain HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.harness.ports import free_ports
from tests.harness.processes import ManagedProcess, ProcessSpec


class OperatorProcess:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        kms_endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        log_dir: Path,
        region_id: str = "cn-hangzhou",
        extra_env: Mapping[str, str] | None = None,
        name: str = "operator",
        kms_ca_file: str | Path | None = None,
    ) -> None:
        self.health_port, self.metrics_port, self.webhook_port, self.ready_port = free_ports(4)
        self.log_path = log_dir / f"{name}.log"
        trust = {"KMSKEY_KMS_CA_BUNDLE": str(kms_ca_file)} if kms_ca_file else {}
        self.env = {
            "KUBECONFIG": str(kubeconfig),
            "KMS_ENDPOINT": kms_endpoint,
            "KMS_PROTOCOL": "https" if kms_ca_file else "http",
            **trust,
            # The emulator answers STS on its KMS listener; never the public sts.<region>.aliyuncs.com.
            "KMSKEY_STS_ENDPOINT": kms_endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": access_key_secret,
            "ALIBABA_CLOUD_REGION_ID": region_id,
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            "KMSKEY_HEALTH_HOST": "127.0.0.1",
            "KMSKEY_HEALTH_PORT": str(self.health_port),
            "KMSKEY_METRICS_PORT": str(self.metrics_port),
            "KMSKEY_METRICS_HOST": "127.0.0.1",
            "KMSKEY_READY_PORT": str(self.ready_port),
            "KMSKEY_WEBHOOK_PORT": str(self.webhook_port),
            "KMSKEY_WEBHOOK_HOST": "127.0.0.1",
            "KMSKEY_WEBHOOK_LISTEN_HOST": "127.0.0.1",
            "KMSKEY_WEBHOOK_CERT_DIR": str(log_dir / f"{name}-certs"),
            "PYTHONUNBUFFERED": "1",
            # Tests adopt keys in their own namespaces; tenancy tests set their own policy.
            "KMSKEY_ADOPTION_NAMESPACES": "*",
            **(extra_env or {}),
        }
        self.name = name
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        spec = ProcessSpec(self.name, [sys.executable, "-m", "kmskey_operator.cli", "run"], env=self.env)
        self.process = ManagedProcess(spec, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.exited() is not None:
                raise RuntimeError(f"operator exited early:\n{self.process.log_tail(60)}")
            if self.healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy after {timeout}s:\n{self.process.log_tail(60)}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of /readyz; (0, {}) when nothing listens yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ready_port}/readyz", timeout=5) as r:
                return int(r.status), dict(json.loads(r.read()))
        except urllib.error.HTTPError as error:
            return int(error.code), dict(json.loads(error.read()))
        except OSError:
            return 0, {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crashed pod."""
        if self.process is not None and self.process.exited() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.popen.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
