"""`kms-emulator` / `python -m kms_emulator`: run the emulator as its own process.

When it listens it prints exactly one line to stdout, so that a parent process can read the port chosen for
`--port 0` (and, with `--tls`, the CA certificate to trust):

    kms-emulator listening on http://HOST:PORT
    kms-emulator listening on https://HOST:PORT (CA certificate: DIR/ca.crt)

It stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .accounts import AccountsError, read_accounts_file
from .backend import DEFAULT_MAX_KEYS
from .credentials import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from .faults import DEFAULT_FAULT_CODE, DEFAULT_FAULT_STATUS, FaultRule
from .quota import THROTTLE_STYLES, QuotaSettings
from .server import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Emulator, EmulatorConfig
from .testing import bound_port
from .tls import CA_CERT_FILE, CA_KEY_FILE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kms-emulator",
        description="A local Alibaba Cloud KMS (OpenAPI 2016-01-20) that the official SDK can talk to.",
    )
    add = parser.add_argument
    add(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; the admin API is unauthenticated)",
    )
    add("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    add("--tls", action="store_true", help="serve HTTPS (as KMS does) with a CA of the emulator's own")
    add(
        "--tls-dir",
        type=Path,
        help="keep the CA (ca.crt, the file clients trust) and the serving certificate here; an existing "
        "CA is reused (implies --tls; default with --tls: a temporary directory removed on exit)",
    )
    add(
        "--tls-ca-dir",
        type=Path,
        help="serve with the CA in this directory (ca.crt and ca.key, e.g. a mounted Secret; read only): "
        "clients are given that CA before the emulator starts. Copied into --tls-dir (implies --tls)",
    )
    add(
        "--tls-name",
        action="append",
        default=[],
        help="one more DNS name or IP address for the serving certificate (repeatable); 127.0.0.1, ::1, "
        "localhost and --host are always named",
    )
    add(
        "--access-key-id",
        action="append",
        default=[],
        help=f"accepted access key ID; repeat, paired in order with --access-key-secret "
        f"(default {DEFAULT_ACCESS_KEY_ID} / {DEFAULT_ACCESS_KEY_SECRET})",
    )
    add(
        "--access-key-secret",
        action="append",
        default=[],
        help="secret for the --access-key-id at the same position",
    )
    add(
        "--credentials-file",
        type=Path,
        help='more access keys: a JSON object {"ID": "SECRET", ...} or lines "ID:SECRET" (# comments)',
    )
    add(
        "--accounts-file",
        type=Path,
        help="more accounts, RAM users, roles (trust policies) and OIDC providers: a JSON document "
        "(see kms_emulator/accounts.py)",
    )
    add("--region", default=DEFAULT_REGION, help=f"the region served (default {DEFAULT_REGION})")
    add(
        "--account-id",
        default=DEFAULT_ACCOUNT_ID,
        help=f"account in ARNs and Creator (default {DEFAULT_ACCOUNT_ID})",
    )
    add("--state-file", help="keep keys in this JSON file across restarts (written atomically)")
    add(
        "--instance-id",
        action="append",
        default=[],
        help="a known KMS instance ID (DKMSInstanceId); repeatable",
    )
    add(
        "--max-keys", type=int, default=DEFAULT_MAX_KEYS, help=f"keys per region (default {DEFAULT_MAX_KEYS})"
    )
    add(
        "--quotas", choices=("on", "off"), default="on", help="QPS quotas per account and region (default on)"
    )
    add("--create-qps", type=float, default=10.0, help="CreateKey QPS quota (default 10)")
    add("--read-qps", type=float, default=20.0, help="read (Describe*/List*/Get*) QPS quota (default 20)")
    add("--write-qps", type=float, default=10.0, help="write QPS quota (default 10)")
    add(
        "--throttle-style",
        choices=THROTTLE_STYLES,
        default="rejected-429",
        help="over quota: Rejected.Throttling/429 + x-acs-retry-after, or Throttling/400 (default: 429)",
    )
    add("--fault-action", default="*", help="action the fault flags apply to (default *, every action)")
    add("--fault-rate", type=float, default=0.0, help="probability of answering with an injected error (0-1)")
    add(
        "--fault-code", default=DEFAULT_FAULT_CODE, help=f"injected error code (default {DEFAULT_FAULT_CODE})"
    )
    add("--fault-status", type=int, default=DEFAULT_FAULT_STATUS, help="injected error status (default 503)")
    add("--latency-ms", type=int, default=0, help="latency added to every call of --fault-action")
    add(
        "--drop-rate", type=float, default=0.0, help="probability of closing the connection without an answer"
    )
    add(
        "--keepalive-seconds",
        type=float,
        default=75.0,
        help="close a kept-alive connection idle this long, as servers and load balancers do (default 75)",
    )
    add("--seed", type=int, help="seed for key IDs and fault dice (reproducible runs)")
    add("--log-level", default="WARNING", help="Python log level (default WARNING)")
    return parser


def read_credentials_file(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        document = json.loads(text)
        return [(str(k), str(v)) for k, v in document.items()]
    pairs: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, secret = line.partition(":")
        if not sep or not key_id or not secret:
            raise ValueError(f"{path}: expected ID:SECRET, got {line!r}")
        pairs.append((key_id.strip(), secret.strip()))
    return pairs


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    if len(args.access_key_id) != len(args.access_key_secret):
        raise SystemExit("kms-emulator: give --access-key-id and --access-key-secret in pairs")
    pairs = list(zip(args.access_key_id, args.access_key_secret, strict=True))
    if args.credentials_file:
        pairs += read_credentials_file(args.credentials_file)
    faults: list[FaultRule] = []
    if args.fault_rate > 0:
        faults.append(
            FaultRule(
                action=args.fault_action, rate=args.fault_rate, code=args.fault_code, status=args.fault_status
            )
        )
    if args.latency_ms > 0:
        faults.append(FaultRule(action=args.fault_action, code=None, latency_ms=args.latency_ms))
    if args.drop_rate > 0:
        faults.append(
            FaultRule(action=args.fault_action, rate=args.drop_rate, code=None, drop_connection=True)
        )
    try:
        accounts = read_accounts_file(args.accounts_file) if args.accounts_file else []
    except AccountsError as error:
        raise SystemExit(f"kms-emulator: {error}") from None
    return EmulatorConfig(
        accounts=tuple(accounts),
        host=args.host,
        port=args.port,
        region_id=args.region,
        account_id=args.account_id,
        access_keys=tuple(pairs),
        instance_ids=tuple(args.instance_id),
        state_file=args.state_file,
        max_keys=args.max_keys,
        quotas=QuotaSettings(
            enabled=args.quotas == "on",
            create_qps=args.create_qps,
            read_qps=args.read_qps,
            write_qps=args.write_qps,
            style=args.throttle_style,
        ),
        faults=tuple(faults),
        seed=args.seed,
        tls_dir=str(args.tls_dir) if args.tls_dir else None,
        tls_names=tuple(args.tls_name),
        keepalive_seconds=args.keepalive_seconds,
    )


def ready_line(emulator: Emulator, port: int) -> str:
    line = f"kms-emulator listening on {emulator.protocol}://{emulator.config.host}:{port}"
    return f"{line} (CA certificate: {emulator.tls.ca_file})" if emulator.tls else line


async def serve(config: EmulatorConfig) -> None:
    emulator = Emulator(config)
    runner = emulator.make_runner()
    await runner.setup()
    await emulator.make_site(runner).start()
    print(ready_line(emulator, bound_port(runner)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def use_ca(source: Path, tls_dir: Path) -> None:
    """Put the CA of `source` into `tls_dir`, where the emulator reuses a CA it finds (kms_emulator.tls)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    for name, mode in ((CA_CERT_FILE, 0o644), (CA_KEY_FILE, 0o600)):
        path = source / name
        if not path.is_file():
            raise SystemExit(f"kms-emulator: --tls-ca-dir {source} has no {name} (needs ca.crt, ca.key)")
        target = tls_dir / name
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(path.read_bytes())


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    temporary = None
    if (args.tls or args.tls_ca_dir) and args.tls_dir is None:
        temporary = args.tls_dir = Path(tempfile.mkdtemp(prefix="kms-emulator-tls-"))
    if args.tls_ca_dir:
        use_ca(args.tls_ca_dir, args.tls_dir)
    try:
        asyncio.run(serve(config_from_args(args)))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
