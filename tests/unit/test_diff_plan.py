"""The pure core: diff compares like with like, plan orders KMS calls safely. No I/O."""

from __future__ import annotations

import dataclasses
import json

from kmskey_operator import claims, names
from kmskey_operator.kms.types import KeyMetadata, ObservedKey
from kmskey_operator.model import parse_spec
from kmskey_operator.reconcile import plan
from kmskey_operator.reconcile.diff import diff

UID = "3f1e2d4c-0000-4000-8000-000000000001"
ME = claims.Claimant("cluster-1", "team-a", "orders", UID)
CLAIM = claims.claim_tags(ME, adopted=False)
BASE = KeyMetadata(
    key_id="k1",
    key_state="Enabled",
    key_spec="Aliyun_AES_256",
    key_usage="ENCRYPT/DECRYPT",
    origin="Aliyun_KMS",
    protection_level="SOFTWARE",
    description="d",
    automatic_rotation="Disabled",
    deletion_protection="Disabled",
)


def observed(tags: dict[str, str] | None = None, policy: str | None = None, **meta: str) -> ObservedKey:
    return ObservedKey(
        metadata=dataclasses.replace(BASE, **meta),
        tags={**CLAIM, **(tags or {})},
        policy=policy,
    )


def actions(spec: dict[str, object], key: ObservedKey, *, created: bool = True) -> list[str]:
    parsed = parse_spec(spec)
    return [
        c.action for c in plan.update_calls(diff(parsed, key, created=created), parsed, key, "cn-hangzhou")
    ]


def test_rotation_interval_in_days_equals_the_same_interval_in_seconds() -> None:
    key = observed(automatic_rotation="Enabled", rotation_interval="604800s")
    assert actions({"enableAutomaticRotation": True, "rotationInterval": "7d"}, key) == []


def test_suspended_rotation_counts_as_on() -> None:
    key = observed(key_state="Disabled", automatic_rotation="Suspended", rotation_interval="604800s")
    assert (
        actions({"automaticRotation": "Enabled", "rotationInterval": "7d", "status": "Disabled"}, key) == []
    )


def test_policies_are_compared_by_json_value_not_text() -> None:
    text = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["kms:*"]}]})
    reordered = json.dumps(
        {"Statement": [{"Action": ["kms:*"], "Effect": "Allow"}], "Version": "1"}, indent=4
    )
    assert actions({"policy": text}, observed(policy=reordered)) == []
    assert actions({"policy": text}, observed(policy=text.replace("Allow", "Deny"))) == ["SetKeyPolicy"]


def test_reserved_kms_tags_are_neither_compared_nor_removed() -> None:
    assert (
        actions({"tags": {"team": "a"}}, observed(tags={"team": "a", "acs:system": "x", "aliyun-x": "y"}))
        == []
    )


def test_a_tag_changed_outside_is_put_back_and_an_extra_one_removed() -> None:
    key = observed(tags={"team": "b", "extra": "1"})
    assert actions({"tags": {"team": "a"}}, key) == ["UntagResources", "TagResources"]


def test_enable_comes_first_and_disable_comes_last() -> None:
    disabled = observed(key_state="Disabled")
    assert actions(
        {"status": "Enabled", "description": "x", "enableAutomaticRotation": True, "rotationInterval": "7d"},
        disabled,
    ) == ["EnableKey", "UpdateKeyDescription", "UpdateRotationPolicy"]
    enabled = observed()
    assert actions(
        {"status": "Disabled", "description": "x", "enableAutomaticRotation": True, "rotationInterval": "7d"},
        enabled,
    ) == ["UpdateKeyDescription", "UpdateRotationPolicy", "DisableKey"]


def test_rotation_on_a_key_that_stays_disabled_is_blocked_not_attempted() -> None:
    parsed = parse_spec({"status": "Disabled", "enableAutomaticRotation": True, "rotationInterval": "7d"})
    result = diff(parsed, observed(key_state="Disabled"), created=True)
    assert [b.field for b in result.blocked] == ["automaticRotation"]
    assert plan.update_calls(result, parsed, observed(key_state="Disabled"), "cn-hangzhou") == []


def test_force_new_differences_are_conflicts_and_never_calls() -> None:
    parsed = parse_spec({"keySpec": "RSA_2048", "keyUsage": "SIGN/VERIFY", "origin": "EXTERNAL"})
    result = diff(parsed, observed(), created=False)
    assert sorted(c.field for c in result.conflicts) == ["keySpec", "keyUsage", "origin"]
    assert plan.update_calls(result, parsed, observed(), "cn-hangzhou") == []


def test_protection_level_is_not_compared_for_instance_keys() -> None:
    key = observed(dkms_instance_id="kst-1", protection_level="HSM")
    assert diff(
        parse_spec({"dkmsInstanceId": "kst-1", "protectionLevel": "SOFTWARE"}), key, created=True
    ).in_sync


def test_unset_fields_are_not_managed() -> None:
    key = observed(
        description="set by hand",
        deletion_protection="Enabled",
        automatic_rotation="Enabled",
        rotation_interval="604800s",
    )
    assert actions({}, key, created=False) == []


def test_create_sends_everything_create_key_accepts_in_one_call() -> None:
    spec = parse_spec(
        {
            "description": "d",
            "keySpec": "Aliyun_SM4",
            "enableAutomaticRotation": True,
            "rotationInterval": "7d",
            "policy": '{"Version":"1"}',
            "tags": {"a": "b"},
            "dkmsInstanceId": "kst-1",
        }
    )
    call = plan.create_call(spec, CLAIM)
    assert call.action == "CreateKey"
    assert call.params["RotationInterval"] == "604800s"
    assert call.params["DKMSInstanceId"] == "kst-1"
    assert "ProtectionLevel" not in call.params  # ignored by KMS for instance keys
    tags = {t["TagKey"]: t["TagValue"] for t in json.loads(call.params["Tags"])}
    assert tags == {"a": "b", **CLAIM}
    assert tags[names.OWNER_TAG_KEY] == UID


def test_after_create_only_what_create_key_cannot_do_remains() -> None:
    spec = parse_spec(
        {
            "description": "d",
            "status": "Disabled",
            "enableDeletionProtection": True,
            "tags": {"a": "b"},
            "policy": '{"Version":"1"}',
        }
    )
    created = dataclasses.replace(BASE, description="d", deletion_protection="")
    after = plan.observed_after_create(spec, created, CLAIM)
    calls = plan.update_calls(diff(spec, after, created=True), spec, after, "cn-hangzhou")
    assert [c.action for c in calls] == ["SetDeletionProtection", "DisableKey"]
