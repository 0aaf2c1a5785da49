"""`python -m kms_emulator.bench`: how many DescribeKey calls per second one emulator process serves.

The emulator runs as its own process (quotas off), pinned to one CPU core when the machine has two or more;
this process is the client, pinned to another core, sending ACS3-signed requests exactly as the SDK does
(fresh date and nonce per request, so no request is a replay) over keep-alive connections with a fixed number
in flight. It reports requests per second, latency percentiles, and how busy the emulator's core was (below
100% means the client, not the emulator, was the limit). `--tls` measures it over HTTPS, as KMS is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .credentials import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from .signing import sign_acs3

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def signed_headers(endpoint: str, action: str, query: Sequence[tuple[str, str]]) -> dict[str, str]:
    headers = {
        "host": endpoint,
        "x-acs-action": action,
        "x-acs-version": "2016-01-20",
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": EMPTY_SHA256,
        "accept": "application/json",
    }
    headers["Authorization"] = sign_acs3(
        secret=DEFAULT_ACCESS_KEY_SECRET,
        access_key_id=DEFAULT_ACCESS_KEY_ID,
        method="POST",
        path="/",
        query=query,
        headers=headers,
    )
    return headers


async def call(session: aiohttp.ClientSession, base: str, action: str, **params: str) -> dict[str, Any]:
    """One signed call to `base` (http(s)://HOST:PORT)."""
    query = sorted(params.items())
    endpoint = base.split("://", 1)[1]
    async with session.post(
        f"{base}/?{urlencode(query)}", headers=signed_headers(endpoint, action, query)
    ) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"{action}: HTTP {response.status}: {body}")
        return body


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to tell a saturated core from an idle one."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    base: str, seconds: float, concurrency: int, pid: int | None, ca_file: str | None = None
) -> tuple[int, list[float], float | None]:
    context = ssl.create_default_context(cafile=ca_file) if base.startswith("https:") else None
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context if context is not None else True)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        created = await call(session, base, "CreateKey")
        key_id = str(created["KeyMetadata"]["KeyId"])
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await call(session, base, "DescribeKey", KeyId=key_id)
                latencies.append(time.perf_counter() - start)

        began, cpu_began = time.perf_counter(), cpu_seconds(pid) if pid else 0.0
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        busy = (cpu_seconds(pid) - cpu_began) / elapsed if pid else None
    return int(len(latencies) / elapsed), sorted(latencies), busy


READY = re.compile(r"kms-emulator listening on (https?://\S+)(?: \(CA certificate: (.+)\))?$")


def start_emulator(core: int | None, tls: bool = False) -> tuple[subprocess.Popen[str], str, str | None]:
    """The emulator as its own process; returns it, its base URL and (over TLS) its CA file."""
    command = [
        sys.executable,
        "-m",
        "kms_emulator",
        "--port",
        "0",
        "--quotas",
        "off",
        *(["--tls"] if tls else []),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core is not None else None,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    match = READY.match(line)
    if not match:
        process.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return process, match.group(1), match.group(2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kms_emulator.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time (default 5)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--endpoint", help="measure an already running emulator (host:port) instead")
    parser.add_argument("--tls", action="store_true", help="over HTTPS (the emulator's own CA)")
    parser.add_argument("--ca-file", help="the CA of an already running HTTPS emulator (with --endpoint)")
    args = parser.parse_args(argv)

    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0] if len(cores) >= 2 else None
    process = None
    scheme = "https" if args.tls or args.ca_file else "http"
    base, ca_file = (f"{scheme}://{args.endpoint}", args.ca_file) if args.endpoint else ("", None)
    if not args.endpoint:
        process, base, ca_file = start_emulator(server_core, args.tls)
    if server_core is not None:
        os.sched_setaffinity(0, set(cores[1:]))  # keep the client off the emulator's core
    try:
        pid = process.pid if process is not None else None
        rate, latencies, busy = asyncio.run(run(base, args.seconds, args.concurrency, pid, ca_file))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    pinned = f"emulator pinned to CPU {server_core}" if server_core is not None else "emulator not pinned"
    over = "HTTPS" if base.startswith("https:") else "HTTP"
    print(
        f"DescribeKey: {rate} calls/s ({len(latencies)} calls over {over}, concurrency {args.concurrency}, "
        f"{pinned})"
    )
    print(f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if busy is not None:
        print(f"emulator CPU use {busy:.0%} of one core")


if __name__ == "__main__":
    main()
