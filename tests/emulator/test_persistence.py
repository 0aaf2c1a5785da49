"""The state file: keys survive a restart, and a reader never sees a half-written file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from alibabacloud_kms20160120 import models

from kms_emulator.testing import run_emulator
from tests.emulator.conftest import make_client


def test_keys_survive_a_restart_with_their_state_tags_and_policy(tmp_path: Path) -> None:
    state_file = str(tmp_path / "kms-state.json")
    with run_emulator(state_file=state_file) as first:
        client = make_client(first)
        kept = client.create_key(
            models.CreateKeyRequest(
                description="kept",
                tags=json.dumps([{"TagKey": "env", "TagValue": "dev"}]),
                enable_automatic_rotation=True,
                rotation_interval="10d",
            )
        ).body.key_metadata.key_id
        client.disable_key(models.DisableKeyRequest(key_id=kept))
        before = client.describe_key(models.DescribeKeyRequest(key_id=kept)).body.to_map()["KeyMetadata"]

    with run_emulator(state_file=state_file) as second:
        client = make_client(second)
        after = client.describe_key(models.DescribeKeyRequest(key_id=kept)).body.to_map()["KeyMetadata"]
        tags = client.list_resource_tags(models.ListResourceTagsRequest(key_id=kept)).body.tags.tag

    assert after == before
    assert [(t.tag_key, t.tag_value) for t in tags] == [("env", "dev")]


def test_a_missing_state_file_starts_empty_and_is_created_on_the_first_change(tmp_path: Path) -> None:
    state_file = tmp_path / "sub" / "state.json"
    with run_emulator(state_file=str(state_file)) as emu:
        assert emu.backend.keys == {}
        emu.backend.create_key()

    document = json.loads(state_file.read_text())
    assert document["version"] == 2
    assert len(document["accounts"][emu.account_id]) == 1


def test_a_reader_never_sees_a_half_written_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    problems: list[str] = []
    done = threading.Event()

    def read_continuously() -> None:
        while not done.is_set():
            try:
                json.loads(state_file.read_text())
            except FileNotFoundError:
                continue
            except ValueError as error:
                problems.append(str(error))

    with run_emulator(state_file=str(state_file)) as emu:
        reader = threading.Thread(target=read_continuously)
        reader.start()
        for i in range(150):
            emu.backend.create_key(description="x" * (i * 50))
        done.set()
        reader.join()

    assert problems == []
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind
