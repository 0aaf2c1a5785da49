import datetime

import pytest

from kmskey_operator import timestamps


def test_a_kubernetes_stamp_reads_as_utc() -> None:
    parsed = timestamps.parse("2026-12-01T23:56:30Z")
    assert parsed == datetime.datetime(2026, 12, 1, 23, 56, 30, tzinfo=datetime.UTC)
    assert timestamps.epoch("1970-01-01T00:01:00Z") == 60.0


def test_an_offset_and_a_naive_stamp_are_both_placed_in_time() -> None:
    assert timestamps.epoch("1970-01-01T01:00:00+01:00") == 0.0
    assert timestamps.epoch("1970-01-01T00:00:10") == 10.0  # naive: read as UTC, never as local time


@pytest.mark.parametrize("text", [None, "", "yesterday", 1700000000, "2026-13-01T00:00:00Z"])
def test_anything_else_is_no_time(text: object) -> None:
    assert timestamps.parse(text) is None
    assert timestamps.epoch(text) is None


def test_now_is_written_the_way_it_is_read() -> None:
    stamp = timestamps.now_rfc3339()
    assert stamp.endswith("Z")
    assert "." not in stamp
    parsed = timestamps.parse(stamp)
    assert parsed is not None
    assert abs(parsed.timestamp() - datetime.datetime.now(datetime.UTC).timestamp()) < 5
