"""`make bench` over HTTPS (tests/bench/transport.py): the emulator's ready line, the CPU probe, the rows."""

from __future__ import annotations

from pathlib import Path

from kms_emulator.testing import run_emulator
from tests.bench import report, transport


def test_the_bench_reads_protocol_endpoint_and_ca_from_the_emulators_ready_line() -> None:
    https = transport.KmsEndpoint.from_log(
        "kms-emulator listening on https://127.0.0.1:4321 (CA certificate: /tmp/x/ca.crt)\n"
    )
    assert https == transport.KmsEndpoint("https", "127.0.0.1:4321", "/tmp/x/ca.crt")
    assert https.url == "https://127.0.0.1:4321"
    plain = transport.KmsEndpoint.from_log("kms-emulator listening on http://127.0.0.1:80\n")
    assert plain == transport.KmsEndpoint("http", "127.0.0.1:80", None)
    assert transport.KmsEndpoint.from_log("starting...\n") is None
    assert transport.emulator_args(Path("/logs")) == ["--tls-dir", "/logs/kms-tls"]


def test_the_probe_counts_the_process_cpu_of_a_known_number_of_gateway_calls_over_https() -> None:
    with run_emulator(tls=True) as emu:
        assert emu.ca_file is not None
        endpoint = transport.KmsEndpoint("https", emu.endpoint, str(emu.ca_file))
        measured = transport.run_probe(endpoint, calls=160, concurrency=4)
        counts = emu.call_counts()
        handshakes = emu.tls_handshakes()
    assert measured["calls"] == 160
    assert counts["DescribeKey"] == 160 + 4 * 20  # the measured calls and the warm-up, all over TLS
    assert measured["cpu_seconds"] > 0
    assert measured["cpu_ms_per_call"] == 1000 * measured["cpu_seconds"] / 160
    assert handshakes <= 4  # the probe's gateway kept its connections


def test_burst_summary_divides_the_operators_cpu_by_its_kms_calls_and_handshakes() -> None:
    burst = {"kms_calls": {"total": 2000}, "operator_cpu_percent": 20.0, "seconds": 100.0}
    summary = transport.burst_summary(burst, handshakes=5)
    assert summary["operator_cpu_ms_per_kms_call_burst"] == 10.0  # 20 s of CPU over 2,000 calls
    assert summary["burst_1000_kms_calls_per_tls_handshake"] == 400
    assert (
        transport.burst_summary({**burst, "kms_calls": {"total": 0}}, 0)["operator_cpu_ms_per_kms_call_burst"]
        is None
    )


def test_the_report_shows_the_transport_rows_and_checks_its_targets() -> None:
    results = {
        "kms_transport": "https",
        "https_cpu_ms_per_kms_call": 0.62,
        "burst_1000_vs_floor": 1.07,
        "quota_floor_1000_seconds": 100.0,
    }
    table = report.table(results)
    assert "| KMS transport (operator ↔ emulator) | https |" in table
    assert "| Operator CPU per KMS call over HTTPS (gateway process) | 0.62 ms |" in table
    assert "| operator CPU per KMS call over HTTPS ≤ 1.0 ms | 1 | 0.62 | yes |" in table
    assert "| 1,000 keys Ready over HTTPS ≤ 1.05 × quota floor | 1.05 | 1.07 | NO |" in table
