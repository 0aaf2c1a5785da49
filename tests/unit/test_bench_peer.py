"""The peer row of `make bench` (tests/bench/peer.py, netaudit.py, report.py) without the ACK controller.

What can run without a hand-built kms-controller: the flags and their errors, the skip, the environment and
flags the peer would get, the ratios, the report's rows, and the socket audit on this test's own sockets.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.bench import cluster, netaudit, peer, report
from tests.harness.processes import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]

KEY_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: keys.kms.services.k8s.aws
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    peer.add_arguments(parser)
    return parser.parse_args(list(argv))


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def peer_files(tmp_path: Path) -> dict[str, Path]:
    """A stand-in binary and moto_server (never run: only checked to be executable) and a CRD directory."""
    crds = tmp_path / "config" / "crd"
    (crds / "bases").mkdir(parents=True)
    (crds / "common" / "bases").mkdir(parents=True)
    (crds / "bases" / "kms.services.k8s.aws_keys.yaml").write_text(KEY_CRD)
    (crds / "common" / "bases" / "services.k8s.aws_fieldexports.yaml").write_text(
        KEY_CRD.replace("keys.kms.services.k8s.aws", "fieldexports.services.k8s.aws")
    )
    (crds / "kustomization.yaml").write_text("kind: Kustomization\nresources:\n  - bases/x.yaml\n")
    return {
        "binary": executable(tmp_path / "kms-controller"),
        "moto": executable(tmp_path / "moto_server"),
        "crds": crds,
    }


# -- flags ----------------------------------------------------------------------------------------------


def test_without_peer_binary_the_row_is_off() -> None:
    assert peer.options(parse()) is None


def test_the_peer_options_are_read_and_the_crds_found(peer_files: dict[str, Path]) -> None:
    opts = peer.options(
        parse(
            "--peer-binary",
            str(peer_files["binary"]),
            "--peer-crds",
            str(peer_files["crds"]),
            "--peer-moto-server",
            str(peer_files["moto"]),
            "--peer-idle-seconds",
            "12",
            "--peer-arg=--reconcile-default-max-concurrent-syncs=8",
        )
    )
    assert opts is not None
    assert opts.extra_args == ("--reconcile-default-max-concurrent-syncs=8",)
    assert opts is not None
    assert opts.binary == peer_files["binary"]
    assert opts.moto_server == peer_files["moto"]
    assert opts.idle_seconds == 12
    # Every CRD under the directory, and no kustomization file.
    assert [p.name for p in opts.crds] == [
        "kms.services.k8s.aws_keys.yaml",
        "services.k8s.aws_fieldexports.yaml",
    ]


def test_moto_server_is_found_on_path_when_not_given(peer_files: dict[str, Path]) -> None:
    args = parse("--peer-binary", str(peer_files["binary"]), "--peer-crds", str(peer_files["crds"]))
    opts = peer.options(args, which=lambda name: str(peer_files["moto"]) if name == "moto_server" else None)
    assert opts is not None
    assert opts.moto_server == peer_files["moto"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peer-crds", "{crds}"], "--peer-crds/--peer-moto-server/--peer-arg need --peer-binary"),
        (["--peer-arg=--log-level=debug"], "need --peer-binary"),
        (
            ["--peer-binary", "{binary}", "--peer-crds", "{crds}", "--peer-arg=log-level"],
            "--peer-arg 'log-level': give one --flag[=value]",
        ),
        (
            ["--peer-binary", "{binary}", "--peer-crds", "{crds}", "--peer-arg=--metrics-addr=0.0.0.0:8080"],
            "the bench sets that flag itself",
        ),
        (["--peer-binary", "{crds}"], "--peer-binary {crds}: not an executable file"),
        (["--peer-binary", "{binary}"], "--peer-binary needs --peer-crds DIR"),
        (["--peer-binary", "{binary}", "--peer-crds", "{binary}"], "not a directory"),
        (["--peer-binary", "{binary}", "--peer-crds", "{crds}/common"], "no Key CRD"),
        (
            ["--peer-binary", "{binary}", "--peer-crds", "{crds}", "--peer-moto-server", "{crds}"],
            "--peer-moto-server {crds}: not an executable file",
        ),
    ],
)
def test_unusable_peer_flags_are_refused_naming_the_flag(
    peer_files: dict[str, Path], argv: list[str], message: str
) -> None:
    fill = {k: str(v) for k, v in peer_files.items()}
    with pytest.raises(peer.PeerConfigError) as error:
        peer.options(parse(*[a.format(**fill) for a in argv]), which=lambda _: str(peer_files["moto"]))
    assert message.format(**fill) in str(error.value)


def test_a_missing_moto_server_says_how_to_install_it(peer_files: dict[str, Path]) -> None:
    args = parse("--peer-binary", str(peer_files["binary"]), "--peer-crds", str(peer_files["crds"]))
    if (Path(sys.executable).parent / "moto_server").exists():
        pytest.fail("this venv has moto_server beside python; the test needs one without")
    with pytest.raises(peer.PeerConfigError, match=r"pip install 'moto\[server\]'"):
        peer.options(args, which=lambda _: None)


def test_make_bench_refuses_bad_peer_flags_before_running_anything(tmp_path: Path) -> None:
    """The real entry point: argparse's error (exit 2) naming the flag, within a second, nothing started."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.run", "--peer-binary", str(tmp_path / "missing")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--peer-binary {tmp_path / 'missing'}: not an executable file" in result.stderr
    assert "emulator throughput" not in result.stdout


# -- the skip -------------------------------------------------------------------------------------------


def test_without_the_flag_the_section_is_skipped_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    def unused(*_: Any) -> Any:
        raise AssertionError("nothing may start when the peer row is off")

    found = peer.section(
        None,
        plane=unused,  # type: ignore[arg-type]
        log_dir=Path("/nonexistent"),
        keys=1000,
        start_ours=unused,
        ours_backend=(0, unused),
        set_backend_quotas=unused,
    )
    assert found == {"peer": {"skipped": peer.SKIP_MESSAGE}}
    printed = capsys.readouterr().out
    assert "peer row skipped: no --peer-binary given" in printed
    # ...and the report shows the sentence where the peer table would be, and the targets as n/a.
    table = report.table(found)
    assert peer.SKIP_MESSAGE in table
    assert "| peer row: RSS per key, ours ÷ peer < 1 | 1 | n/a | – |" in table
    assert "| peer row: CPU per create, ours ÷ peer < 1 | 1 | n/a | – |" in table


# -- ratios and the report ------------------------------------------------------------------------------


def side(**values: float) -> dict[str, Any]:
    base = {
        "ready_seconds": 100.0,
        "cpu_ms_per_create": 10.0,
        "cpu_ms_per_create_until_ready": 9.0,
        "rss_kib_per_key": 100.0,
        "rss_mb_idle": 97.7,
        "rss_mb_start": 50.0,
        "rss_kib_per_key_marginal": 50.0,
        "cpu_percent_burst": 10.0,
        "cpu_percent_idle": 1.0,
        "kms_calls_per_create": 2.0,
    }
    return {**base, **values}


def test_ratios_are_ours_over_the_peer() -> None:
    ours = side(
        rss_kib_per_key=150.0, cpu_ms_per_create=5.0, ready_seconds=20.0, rss_kib_per_key_marginal=25.0
    )
    found = peer.ratios(ours, side())
    assert found == {
        "peer_rss_ratio": 1.5,  # ours uses more memory per key: worse, above 1
        "peer_cpu_per_create_ratio": 0.5,  # ours half the CPU per create: better, below 1
        "peer_ready_seconds_ratio": 0.2,
        "peer_rss_marginal_ratio": 0.5,
    }


def test_a_ratio_is_missing_not_infinite_when_the_peer_value_is_zero_or_absent() -> None:
    assert peer.ratio(5.0, 0.0) is None
    assert peer.ratio(None, 3.0) is None
    assert peer.ratios(side(), {"rss_kib_per_key": 0.0})["peer_rss_ratio"] is None


def test_the_report_shows_both_sides_and_the_ratio() -> None:
    ours = side(rss_kib_per_key=150.0, cpu_ms_per_create=5.0)
    theirs = side()
    results = {**peer.ratios(ours, theirs), "peer": {"keys": 1000, "ours": ours, "ack": theirs}}
    table = report.table(results)
    assert (
        "| Peer row: 1,000 keys at once, quotas off, each controller alone "
        "| kmskey-operator | ACK kms-controller + moto | ours ÷ peer |"
    ) in table
    assert "| CPU per create (from apply until quiet, ÷ keys) | 5.00 ms | 10.00 ms | 0.50 |" in table
    assert "| RSS per key (RSS idle, all Ready, ÷ keys) | 150 KiB | 100 KiB | 1.50 |" in table
    assert "|   RSS idle after all Ready | 98 MiB | 98 MiB | – |" in table
    assert "| peer row: RSS per key, ours ÷ peer < 1 | 1 | 1.5 | NO |" in table
    assert "| peer row: CPU per create, ours ÷ peer < 1 | 1 | 0.5 | yes |" in table


def test_a_peer_ratio_of_exactly_one_is_not_better() -> None:
    target = next(t for t in report.targets(100.0) if t.key == "peer_rss_ratio")
    assert not target.met(1.0)
    assert target.met(0.99)


# -- what the peer gets ---------------------------------------------------------------------------------


def test_the_peer_inherits_no_aws_variable_and_gets_only_loopback_endpoints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This machine sets AWS_CA_BUNDLE; the ACK runtime then fails every reconcile. A profile would also
    # send the SDK to a shared config file.
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    endpoint = "http://127.0.0.1:4566"
    env = child_environment(peer.peer_environment(tmp_path / "kubeconfig", endpoint), ("AWS_",))
    assert "AWS_CA_BUNDLE" not in env
    assert "AWS_PROFILE" not in env
    assert "HTTPS_PROXY" not in env
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL_KMS"] == env["AWS_ENDPOINT_URL_STS"] == endpoint
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert env["PATH"] == os.environ["PATH"]  # everything else is inherited as for any child


def test_every_address_the_peer_listens_on_or_dials_is_loopback() -> None:
    endpoint = "http://127.0.0.1:4566"
    argv = peer.peer_argv(Path("/bin/kms-controller"), endpoint, "bench-peer-ack", 1, 2, 3)
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:] if "=" in a)
    assert flags["aws-endpoint-url"] == flags["aws-identity-endpoint-url"] == endpoint
    assert flags["healthz-addr"] == "127.0.0.1:1"
    assert flags["metrics-addr"] == "127.0.0.1:2"
    assert flags["webhook-server-addr"] == "127.0.0.1:3"
    assert flags["watch-namespace"] == "bench-peer-ack"
    assert flags["enable-leader-election"] == "false"
    assert set(peer.PINNED_FLAGS) <= {a.split("=", 1)[0] for a in argv[1:]}
    extra = peer.peer_argv(
        Path("/c"), endpoint, "ns", 1, 2, 3, ["--reconcile-default-max-concurrent-syncs=8"]
    )
    assert extra[-1] == "--reconcile-default-max-concurrent-syncs=8"
    assert peer.moto_argv(Path("/venv/bin/moto_server"), 4566) == [
        "/venv/bin/moto_server",
        "-H",
        "127.0.0.1",
        "-p",
        "4566",
    ]


def test_ack_keys_are_ready_on_their_ready_condition() -> None:
    def key(*conditions: tuple[str, str]) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert peer.ack_key_ready(key(("ACK.ResourceSynced", "True"), ("Ready", "True")))
    assert not peer.ack_key_ready(key(("ACK.ResourceSynced", "True"), ("Ready", "False")))
    assert not peer.ack_key_ready(key(("ACK.Recoverable", "True")))
    assert not peer.ack_key_ready({"metadata": {"name": "k"}})
    assert peer.ACK_KEYS.plural == "keys"
    assert peer.ACK_KEYS.group == "kms.services.k8s.aws"
    assert cluster.KMSKEYS.is_ready is cluster.is_ready


def test_first_ready_is_the_earliest_generation() -> None:
    times = cluster.KeyTimes(sent=1.0, ready={2: 9.0, 1: 4.0})
    assert peer.first_ready(times) == 4.0
    assert peer.first_ready(cluster.KeyTimes()) is None


def test_the_peer_calls_are_counted_from_its_metrics_and_from_moto_log() -> None:
    text = textwrap.dedent(
        """\
        # HELP ack_outbound_api_requests_total Total number of outbound AWS API requests.
        # TYPE ack_outbound_api_requests_total counter
        ack_outbound_api_requests_total{op_id="CreateKey",op_type="CREATE",service="kms"} 1000
        ack_outbound_api_requests_total{op_id="DescribeKey",op_type="READ_ONE",service="kms"} 2000
        # HELP ack_outbound_api_requests_error_total Errors.
        # TYPE ack_outbound_api_requests_error_total counter
        ack_outbound_api_requests_error_total{op_id="TagResource",service="kms",status_code="400"} 3
        """
    )
    assert peer.counter_by_label(text, "ack_outbound_api_requests_total", "op_id") == Counter(
        {"CreateKey": 1000, "DescribeKey": 2000}
    )
    assert sum(peer.counter_by_label(text, "ack_outbound_api_requests_error_total").values()) == 3
    log = (
        '127.0.0.1 - - [01/Dec/2026 20:42:07] "POST / HTTP/1.1" 200 -\n'
        " * Running on http://127.0.0.1:53037\n"
        '127.0.0.1 - - [01/Dec/2026 20:42:07] "POST / HTTP/1.1" 400 -\n'
    )
    assert peer.moto_requests(log) == (2, 1)


def test_the_controller_version_is_read_from_its_log() -> None:
    line = '{"level":"info","msg":"initializing service controller","aws.service":"kms","version":"v1.4.1"}'
    assert peer.controller_version(line) == "v1.4.1"
    assert peer.controller_version(line.replace("v1.4.1", "")) == "unset"
    assert peer.controller_version("") == "unknown"


def test_wait_quiet_tells_an_idle_process_from_a_busy_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert peer.wait_quiet(idle.pid, timeout=10, seconds=1.0)
        assert not peer.wait_quiet(busy.pid, timeout=2.5, seconds=1.0)
    finally:
        for child in (busy, idle):
            child.kill()
            child.wait(10)


# -- the socket audit -----------------------------------------------------------------------------------


def test_proc_net_addresses_are_decoded() -> None:
    assert netaudit.decode_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert netaudit.decode_address("FEA9FEA9:0050") == ("169.254.169.254", 80)
    assert netaudit.decode_address("00000000000000000000000001000000:0050") == ("::1", 80)
    mapped, port = netaudit.decode_address("0000000000000000FFFF00000100007F:01BB")
    assert ipaddress.ip_address(mapped) == ipaddress.ip_address("::ffff:127.0.0.1")
    assert port == 443


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.4.5.6", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("169.254.169.254", False),  # the EC2 instance metadata service
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("52.94.0.1", False),
    ],
)
def test_only_loopback_counts_as_local(address: str, loopback: bool) -> None:
    assert netaudit.is_loopback(address) is loopback


def test_a_table_entry_to_the_metadata_service_is_seen_and_listeners_are_not() -> None:
    table = textwrap.dedent(
        """\
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
           1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1
           2: 0A00020F:D432 FEA9FEA9:0050 02 00000000:00000000 00:00000000 00000000     0        0 333 1
           3: 0100007F:D433 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 444 1
        """
    )
    # 111 listens, 444 belongs to another process; 222 is a loopback connection, 333 a SYN to the IMDS.
    assert netaudit.parse_proc_net(table, {"111", "222", "333"}) == {
        ("127.0.0.1", 8080),
        ("169.254.169.254", 80),
    }


def test_the_audit_sees_this_process_connected_to_a_local_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port)),
            netaudit.SocketAudit({"me": os.getpid()}) as audit,
        ):
            assert ("127.0.0.1", port) in netaudit.remote_addresses(os.getpid())
        summary = audit.summary()
    assert "127.0.0.1" in summary["remote_addresses"]["me"]
    assert summary["foreign"] == {}
    assert summary["samples"] >= 2


def test_the_audit_reports_a_foreign_address() -> None:
    audit = netaudit.SocketAudit({})
    audit.seen["peer"] = {("127.0.0.1", 8080), ("169.254.169.254", 80)}
    assert audit.foreign() == {"peer": ["169.254.169.254:80"]}
