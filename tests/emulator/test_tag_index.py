"""ListKeys' tag filters read a tag index: whatever happens to tags, it answers as a scan of every key."""

from __future__ import annotations

import json

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from kms_emulator.backend import KmsBackend
from kms_emulator.clock import Clock
from kms_emulator.model import Key
from kms_emulator.testing import EmulatorHandle

NAMES = ["owner", "env", "team"]
VALUES = ["a", "b", "c"]
TAGS = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), TAGS),
        st.tuples(st.just("tag"), st.integers(0, 30), TAGS.filter(bool)),
        st.tuples(st.just("untag"), st.integers(0, 30), st.lists(st.sampled_from(NAMES), min_size=1)),
        st.tuples(st.just("untag-all"), st.integers(0, 30)),
        st.tuples(st.just("delete"), st.integers(0, 30)),
        st.tuples(st.just("restore")),
    ),
    max_size=40,
)
FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "TagKey": st.frozensets(st.sampled_from(NAMES), min_size=1),
        "TagValue": st.frozensets(st.sampled_from(VALUES), min_size=1),
        "KeyState": st.just(frozenset({"Enabled"})),
    },
)


def scan(backend: KmsBackend, filters: dict[str, frozenset[str]]) -> list[str]:
    """What ListKeys must answer: every key, in creation order, checked against every filter."""

    def matches(key: Key) -> bool:
        return (
            ("TagKey" not in filters or bool(set(key.tags) & filters["TagKey"]))
            and ("TagValue" not in filters or bool(set(key.tags.values()) & filters["TagValue"]))
            and ("KeyState" not in filters or key.key_state in filters["KeyState"])
        )

    return [key.key_id for key in backend.keys.values() if matches(key)]


def listed(backend: KmsBackend, filters: dict[str, frozenset[str]]) -> list[str]:
    found: list[str] = []
    page = 1
    while True:
        keys, total = backend.list_keys(page_number=page, page_size=7, filters=filters)
        found += [key.key_id for key in keys]
        if page * 7 >= total:
            assert len(found) == total
            return found
        page += 1


def apply(backend: KmsBackend, operation: tuple[object, ...]) -> None:
    ids = list(backend.keys)
    kind = operation[0]
    if kind == "create":
        backend.create_key(tags=operation[1])  # type: ignore[arg-type]
        return
    if kind == "restore":
        backend.restore([Key.from_dict(item) for item in backend.snapshot()])
        return
    if not ids:
        return
    key_id = ids[int(operation[1]) % len(ids)]  # type: ignore[call-overload]
    if backend.keys[key_id].key_state == "PendingDeletion":
        return
    if kind == "tag":
        backend.tag_resource(key_id, operation[2])  # type: ignore[arg-type]
    elif kind == "untag":
        backend.untag_resource(key_id, operation[2])  # type: ignore[arg-type]
    elif kind == "untag-all":
        backend.untag_resources(
            region_id=backend.region_id,
            resource_type="key",
            resource_ids=[key_id],
            tag_keys=[],
            remove_all=True,
        )
    elif kind == "delete":
        backend.schedule_key_deletion(key_id, 7)
        backend.clock.advance(8 * 86400)  # the window passes: the key is gone at the next action


@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS, filters=st.lists(FILTERS, min_size=1, max_size=4))
def test_tag_filtered_list_keys_answers_what_a_scan_of_every_key_would(
    operations: list[tuple[object, ...]], filters: list[dict[str, frozenset[str]]]
) -> None:
    backend = KmsBackend(region_id="cn-hangzhou", account_id="1234567890123456", clock=Clock(), max_keys=1000)
    for operation in operations:
        apply(backend, operation)
        for wanted in filters:
            assert listed(backend, wanted) == scan(backend, wanted)


def test_the_sdk_finds_a_key_by_its_tag_among_many(client: Client, emu: EmulatorHandle) -> None:
    for i in range(300):
        emu.backend.create_key(tags={"bulk": str(i % 3)})
    wanted = emu.backend.create_key(tags={"owner-uid": "uid-1234"})
    filters = json.dumps(
        [{"Key": "TagKey", "Values": ["owner-uid"]}, {"Key": "TagValue", "Values": ["uid-1234"]}]
    )

    body = client.list_keys(models.ListKeysRequest(page_size=100, filters=filters)).body

    assert [key.key_id for key in body.keys.key] == [wanted.key_id]
    assert body.total_count == 1
