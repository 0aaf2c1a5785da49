"""`make bench` over HTTPS, as KMS is reached, and what a KMS call over TLS costs the operator.

- The bench's emulator serves HTTPS with its own CA (kept in the run's log directory) and the operator trusts
  that CA through its extra-CA setting; the results say `kms_transport: "https"`.
- `probe`: `https_cpu_ms_per_kms_call`, the CPU time (user + system, all threads, from the kernel) of one
  process running the operator's own KMS gateway (settings read from the environment as `kmskey-operator run`
  reads them) over a known number of DescribeKey calls with reconciles' concurrency, after a warm-up; and, for
  comparison, the same process using the SDK's async methods, which the operator used before its transport.
  A process of its own, so that nothing else the operator does (kopf, the API server, the webhook) is counted
  as transport; the operator's whole CPU per KMS call during the 1,000-key burst is reported beside it.
- The burst's TLS handshakes: how many connections the operator opened for all the calls of the burst.

`python -m tests.bench.transport --calls N --concurrency C [--sdk-async]` is the probe process itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kms_emulator.admin_client import AdminClient
from kms_emulator.credentials import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from tests.harness.processes import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"listening on (https?)://(127\.0\.0\.1:\d+)(?: \(CA certificate: (.+)\))?")
PROBE_CALLS = 3000
PROBE_CONCURRENCY = 8  # reconciles in flight at once, each waiting on one KMS call
SDK_ASYNC_PROBE_CALLS = 150  # ~35 ms of CPU each: enough for a stable figure, short enough to wait for

# (result key, row label, unit, format), appended to report.ROWS ({keys}: the burst's size, report.sizes)
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("kms_transport", "KMS transport (operator ↔ emulator)", "", "{}"),
    ("https_cpu_ms_per_kms_call", "Operator CPU per KMS call over HTTPS (gateway process)", "ms", "{:.2f}"),
    (
        "https_cpu_ms_per_kms_call_sdk_async",
        "  the SDK's async path instead (before the transport)",
        "ms",
        "{:.1f}",
    ),
    ("https_probe_tls_handshakes", "  TLS handshakes for those calls (gateway process)", "", "{:.0f}"),
    (
        "operator_cpu_ms_per_kms_call_burst",
        "Operator CPU per KMS call in the {keys} burst (everything)",
        "ms",
        "{:.2f}",
    ),
    (
        "burst_1000_kms_calls_per_tls_handshake",
        "  KMS calls per TLS handshake in the {keys} burst",
        "",
        "{:.0f}",
    ),
)

# (result key, label, limit), appended to report.targets(); lower is better
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("https_cpu_ms_per_kms_call", "operator CPU per KMS call over HTTPS ≤ 1.0 ms", 1.0),
    ("burst_1000_vs_floor", "{keys} keys Ready over HTTPS ≤ 1.05 × quota floor", 1.05),
)


@dataclass(frozen=True)
class KmsEndpoint:
    """Where the bench's emulator listens, over which protocol, and the CA file that verifies it."""

    protocol: str
    address: str  # host:port, what KMS_ENDPOINT takes
    ca_file: str | None

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"

    @classmethod
    def from_log(cls, text: str) -> KmsEndpoint | None:
        """From the emulator's ready line, once it is in its log."""
        match = READY.search(text)
        return cls(match.group(1), match.group(2), match.group(3)) if match else None


def emulator_args(log_dir: Path) -> list[str]:
    """`kms-emulator` flags: HTTPS, its CA kept beside the run's logs."""
    return ["--tls-dir", str(log_dir / "kms-tls")]


def admin_client(endpoint: KmsEndpoint) -> AdminClient:
    return AdminClient(endpoint.url, ca_file=endpoint.ca_file)


def probe_environment(endpoint: KmsEndpoint) -> dict[str, str]:
    """The operator's KMS settings for the probe, as the bench's operator gets them (limits off: the
    emulator's quotas are off while it runs, and the probe measures calls, not waiting)."""
    env = {
        "KMS_ENDPOINT": endpoint.address,
        "KMS_PROTOCOL": endpoint.protocol,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
        "KMSKEY_READ_QPS": "0",
        "KMSKEY_WRITE_QPS": "0",
        "KMSKEY_CREATE_QPS": "0",
        "PYTHONPATH": str(REPO_ROOT / "operator"),
    }
    if endpoint.ca_file:
        env["KMSKEY_KMS_CA_BUNDLE"] = endpoint.ca_file
    return env


def run_probe(
    endpoint: KmsEndpoint, calls: int, concurrency: int, *, sdk_async: bool = False
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.bench.transport", "--calls", str(calls)]
    argv += ["--concurrency", str(concurrency), *(["--sdk-async"] if sdk_async else [])]
    result = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=child_environment(probe_environment(endpoint)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the transport probe failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def probe(endpoint: KmsEndpoint, admin: AdminClient, log: Any) -> dict[str, Any]:
    """The CPU a KMS call over HTTPS costs: the operator's gateway, then the SDK's async path (quotas off)."""
    admin.set_quotas(False)
    try:
        before = admin.tls_handshakes()
        pooled = run_probe(endpoint, PROBE_CALLS, PROBE_CONCURRENCY)
        handshakes = admin.tls_handshakes() - before
        log(
            f"transport: {pooled['cpu_ms_per_call']:.2f} ms CPU per call over {endpoint.protocol}, "
            f"{pooled['calls']} calls, {handshakes} TLS handshakes"
        )
        unpooled = run_probe(endpoint, SDK_ASYNC_PROBE_CALLS, PROBE_CONCURRENCY, sdk_async=True)
        log(f"transport: the SDK's async path, {unpooled['cpu_ms_per_call']:.1f} ms CPU per call")
    finally:
        admin.set_quotas(True)
    return {
        "kms_transport": endpoint.protocol,
        "https_cpu_ms_per_kms_call": pooled["cpu_ms_per_call"],
        "https_cpu_ms_per_kms_call_sdk_async": unpooled["cpu_ms_per_call"],
        "https_probe_tls_handshakes": handshakes,
        "https_probe": {"gateway": pooled, "sdk_async": unpooled, "tls_handshakes": handshakes},
    }


def burst_summary(burst: dict[str, Any], handshakes: int) -> dict[str, Any]:
    """The operator's whole CPU per KMS call in a burst, and how many calls shared each TLS connection."""
    calls = int(burst["kms_calls"]["total"])
    cpu_seconds = burst["operator_cpu_percent"] / 100 * burst["seconds"]
    return {
        "operator_cpu_ms_per_kms_call_burst": 1000 * cpu_seconds / calls if calls else None,
        "burst_1000_tls_handshakes": handshakes,
        "burst_1000_kms_calls_per_tls_handshake": calls / handshakes if handshakes else None,
    }


# -- the probe process --------------------------------------------------------------------------------------


async def _gateway_calls(calls: int, concurrency: int) -> tuple[int, float, float]:
    from kmskey_operator.kms.gateway import KmsGateway
    from kmskey_operator.settings import Settings

    settings = Settings.from_env()
    gateway = KmsGateway(settings)
    key_id = (await gateway.create_key(settings.region_id, {"Description": "transport probe"})).key_id

    async def worker(count: int) -> None:
        for _ in range(count):
            await gateway.describe_key(settings.region_id, key_id)

    await asyncio.gather(*(worker(20) for _ in range(concurrency)))  # warm: every connection is open
    began, cpu_began = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    done = calls // concurrency * concurrency
    result = done, time.process_time() - cpu_began, time.monotonic() - began
    return result


async def _sdk_async_calls(calls: int, concurrency: int) -> tuple[int, float, float]:
    """The SDK's async methods, as the operator called them before its transport (for comparison only)."""
    from alibabacloud_kms20160120 import models
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    client = Client(
        Config(
            access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
            endpoint=os.environ["KMS_ENDPOINT"],
            protocol=os.environ["KMS_PROTOCOL"],
            ca=os.environ.get("KMSKEY_KMS_CA_BUNDLE"),
            region_id="cn-hangzhou",
        )
    )
    created = await client.create_key_async(models.CreateKeyRequest(description="transport probe"))
    request = models.DescribeKeyRequest(key_id=created.body.key_metadata.key_id)

    async def worker(count: int) -> None:
        for _ in range(count):
            await client.describe_key_async(request)

    await asyncio.gather(*(worker(2) for _ in range(concurrency)))
    began, cpu_began = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    done = calls // concurrency * concurrency
    return done, time.process_time() - cpu_began, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.transport", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", type=int, default=PROBE_CALLS)
    parser.add_argument("--concurrency", type=int, default=PROBE_CONCURRENCY)
    parser.add_argument("--sdk-async", action="store_true", help="the SDK's async methods, not the gateway")
    args = parser.parse_args(argv)
    measure = _sdk_async_calls if args.sdk_async else _gateway_calls
    calls, cpu, wall = asyncio.run(measure(args.calls, args.concurrency))
    # process_time(): user + system CPU of this whole process, every thread included.
    print(
        json.dumps(
            {
                "calls": calls,
                "concurrency": args.concurrency,
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "cpu_ms_per_call": 1000 * cpu / calls,
                "calls_per_second": calls / wall,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
