"""Random parameters for random actions: the answer is always a well-formed JSON object, never a 500.

A 500 would mean a bug of the emulator's own (an exception escaping a handler): every bad input must map to a
documented 4xx error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_emulator.actions import ACTIONS
from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.emulator.raw import acs3_request, send

PARAMETER_NAMES = [
    "KeyId",
    "Description",
    "KeySpec",
    "KeyUsage",
    "Origin",
    "ProtectionLevel",
    "EnableAutomaticRotation",
    "RotationInterval",
    "DKMSInstanceId",
    "KeyStorageMechanism",
    "Policy",
    "PolicyName",
    "Tags",
    "TagKeys",
    "PageNumber",
    "PageSize",
    "Filters",
    "EnableDeletionProtection",
    "DeletionProtectionDescription",
    "ProtectedResourceArn",
    "PendingWindowInDays",
    "SecretName",
    "CertificateId",
    "RegionId",
    "ResourceType",
    "ResourceId.1",
    "ResourceId.2",
    "Tag.1.Key",
    "Tag.1.Value",
    "Tag.2.Key",
    "TagKey.1",
    "All",
    "NextToken",
]
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
VALUES = st.one_of(
    TEXT,
    st.sampled_from(
        ["", "true", "False", "7d", "0", "-1", "101", "Aliyun_AES_256", "RSA_2048", "EXTERNAL", "key"]
    ),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    JSON_VALUES.map(json.dumps),
    st.lists(st.fixed_dictionaries({"TagKey": TEXT, "TagValue": TEXT}), max_size=3).map(json.dumps),
    st.lists(st.fixed_dictionaries({"Key": TEXT, "Values": st.lists(TEXT, max_size=2)}), max_size=3).map(
        json.dumps
    ),
)
PARAMS = st.dictionaries(st.sampled_from(PARAMETER_NAMES) | TEXT.filter(bool), VALUES, max_size=8)


@pytest.fixture(scope="module")
def fuzz_emu() -> Iterator[EmulatorHandle]:
    with run_emulator(max_keys=100_000, seed=7) as handle:
        handle.backend.create_key(description="a key that random KeyIds may not find")
        yield handle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(ACTIONS)), params=PARAMS, known_key=st.booleans())
def test_random_parameters_always_get_a_well_formed_json_answer(
    fuzz_emu: EmulatorHandle, action: str, params: dict[str, str], known_key: bool
) -> None:
    if known_key:
        params["KeyId"] = next(iter(fuzz_emu.backend.keys), "")

    response = send(fuzz_emu, acs3_request(fuzz_emu, action, params))

    assert response.status != 500, response.body
    assert response.content_type == "application/json;charset=utf-8"
    assert isinstance(response.body, dict)
    assert response.body["RequestId"]
    if response.status >= 400:
        assert {"HostId", "Code", "Message", "Recommend"} <= set(response.body)
    else:
        assert response.status == 200
