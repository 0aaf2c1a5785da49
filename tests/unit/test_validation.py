"""validation.py: every CREATE/UPDATE rule, its refusal and what its message tells the user to do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmskey_operator import model, names, validation
from kmskey_operator.validation import validate_spec, validate_update

SEED_POLICY = json.dumps(
    {
        "Version": "1",
        "Statement": [
            {
                "Action": ["kms:*"],
                "Resource": ["*"],
                "Effect": "Allow",
                "Principal": {"RAM": ["acs:ram::1192853035118460:*"]},
                "Sid": "kms default key policy",
            }
        ],
    }
)
SEED_STATEMENT: dict[str, Any] = json.loads(SEED_POLICY)["Statement"][0]
# The seed's example, in camelCase.
SEED_SPEC: dict[str, Any] = {
    "protectionLevel": "SOFTWARE",
    "description": "key description example",
    "keySpec": "Aliyun_AES_256",
    "keyUsage": "ENCRYPT/DECRYPT",
    "rotationInterval": "604800s",
    "dkmsInstanceId": "kst-hzz6example",
    "origin": "Aliyun_KMS",
    "policy": SEED_POLICY,
    "enableAutomaticRotation": True,
    "automaticRotation": "Enabled",
    "status": "Enabled",
}


def without(spec: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in fields}


def errors_of(spec: dict[str, Any]) -> dict[str, str]:
    verdict = validate_spec(spec)
    return {p.field: p.message for p in verdict.errors}


def only_error(spec: dict[str, Any], field: str) -> str:
    verdict = validate_spec(spec)
    assert [p.field for p in verdict.errors] == [field], verdict
    assert field in verdict.summary()
    return verdict.errors[0].message


def body(spec: dict[str, Any] | None, *, key_id: str | None = "key-1", **metadata: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": "k", "namespace": "default", "generation": 1, **metadata},
        "spec": spec,
    }
    if key_id:
        result["status"] = {"keyId": key_id, "regionId": "cn-hangzhou"}
    return result


# --- valid specs --------------------------------------------------------------------------------------------


def test_the_seed_example_is_valid_with_only_the_protection_level_warning() -> None:
    verdict = validate_spec(SEED_SPEC)
    assert verdict.allowed
    assert verdict.summary() == ""
    # The seed sets protectionLevel next to dkmsInstanceId, which KMS ignores.
    assert [w.split(":")[0] for w in verdict.warnings] == ["spec.protectionLevel"]
    assert validate_spec(without(SEED_SPEC, "protectionLevel")).warnings == ()


@pytest.mark.parametrize("spec", [None, {}, {"deletionPolicy": "Retain", "managementPolicy": "Manage"}])
def test_an_empty_spec_means_a_default_key_and_is_valid(spec: dict[str, Any] | None) -> None:
    assert validate_spec(spec) == validation.ALLOWED


@pytest.mark.parametrize(
    ("key_spec", "usage"),
    [
        ("Aliyun_AES_256", "ENCRYPT/DECRYPT"),
        ("Aliyun_SM4", "ENCRYPT/DECRYPT"),
        ("RSA_2048", "ENCRYPT/DECRYPT"),
        ("RSA_3072", "SIGN/VERIFY"),
        ("EC_P256", "SIGN/VERIFY"),
        ("EC_P256K", "SIGN/VERIFY"),
        ("EC_SM2", "SIGN/VERIFY"),
        ("EC_SM2", "ENCRYPT/DECRYPT"),
    ],
)
def test_key_specs_accept_the_usages_kms_supports(key_spec: str, usage: str) -> None:
    assert validate_spec({"keySpec": key_spec, "keyUsage": usage}).allowed


def test_an_ec_key_without_usage_is_valid_because_kms_defaults_it_to_signing() -> None:
    assert validate_spec({"keySpec": "EC_P256"}).allowed


# --- shapes -------------------------------------------------------------------------------------------------


def test_every_badly_shaped_field_is_reported_not_only_the_first() -> None:
    errors = errors_of({"keySpec": "EC_P257", "keyUsage": 3, "bogus": 1})
    assert set(errors) == {"spec.keySpec", "spec.keyUsage", "spec.bogus"}
    assert "EC_P256" in errors["spec.keySpec"]


def test_a_bad_shape_hides_combination_rules_that_would_mislead() -> None:
    # keySpec is broken, so the usage must not be judged against the default spec.
    assert set(errors_of({"keySpec": "nope", "keyUsage": "SIGN/VERIFY"})) == {"spec.keySpec"}


# --- secretName / certificateId ----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "what"), [("secretName", "secret"), ("certificateId", "certificate")])
def test_secret_name_and_certificate_id_are_refused_and_point_to_key_id(field: str, what: str) -> None:
    message = only_error({field: "x"}, f"spec.{field}")
    assert f"KMS {what}, not a key" in message
    assert "spec.keyId" in message


# --- status -------------------------------------------------------------------------------------------------


def test_pending_deletion_is_refused_with_how_to_delete_instead() -> None:
    message = only_error({"status": "PendingDeletion"}, "spec.status")
    assert "deletionPolicy: Delete" in message
    assert "Enabled or Disabled" in message


@pytest.mark.parametrize("status", ["Enabled", "Disabled"])
def test_enabled_and_disabled_are_valid_states(status: str) -> None:
    assert validate_spec({"status": status}).allowed


def test_an_enabled_external_key_is_allowed_with_a_pending_import_warning() -> None:
    verdict = validate_spec({"origin": "EXTERNAL", "status": "Enabled"})
    assert verdict.allowed
    assert any("PendingImport" in w and "spec.status" in w for w in verdict.warnings)


# --- key spec and usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_spec", "usage", "fix"),
    [
        ("EC_P256", "ENCRYPT/DECRYPT", "use SIGN/VERIFY"),
        ("EC_P256K", "ENCRYPT/DECRYPT", "use SIGN/VERIFY"),
        ("Aliyun_AES_256", "SIGN/VERIFY", "use ENCRYPT/DECRYPT"),
        ("Aliyun_SM4", "SIGN/VERIFY", "use ENCRYPT/DECRYPT"),
    ],
)
def test_a_usage_the_key_spec_cannot_do_is_refused(key_spec: str, usage: str, fix: str) -> None:
    message = only_error({"keySpec": key_spec, "keyUsage": usage}, "spec.keyUsage")
    assert key_spec in message
    assert fix in message


def test_usage_without_key_spec_is_judged_against_the_default_spec() -> None:
    message = only_error({"keyUsage": "SIGN/VERIFY"}, "spec.keyUsage")
    assert "Aliyun_AES_256 (the default when spec.keySpec is unset)" in message
    assert "RSA_2048" in message


@pytest.mark.parametrize("key_spec", ["Aliyun_AES_128", "Aliyun_AES_192"])
def test_instance_only_specs_are_refused_without_a_kms_instance_and_warn_when_adopting(key_spec: str) -> None:
    assert "spec.dkmsInstanceId" in only_error({"keySpec": key_spec}, "spec.keySpec")
    adopting = validate_spec({"keySpec": key_spec, "keyId": "key-1"})
    assert adopting.allowed
    assert any("spec.dkmsInstanceId" in w for w in adopting.warnings)
    assert validate_spec({"keySpec": key_spec, "dkmsInstanceId": "kst-1"}).warnings == ()


def test_protection_level_in_a_kms_instance_warns_that_kms_ignores_it() -> None:
    verdict = validate_spec({"protectionLevel": "HSM", "dkmsInstanceId": "kst-1"})
    assert verdict.allowed
    assert any("spec.protectionLevel" in w and "ignores" in w for w in verdict.warnings)
    assert validate_spec({"protectionLevel": "HSM"}).warnings == ()


# --- rotation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation",
    [
        {"enableAutomaticRotation": True},
        {"automaticRotation": "Enabled"},
        {"automaticRotation": "Suspended"},
        {"enableAutomaticRotation": True, "automaticRotation": "Suspended"},
        {"enableAutomaticRotation": False, "automaticRotation": "Disabled"},
    ],
)
def test_agreeing_rotation_fields_are_valid(rotation: dict[str, Any]) -> None:
    assert validate_spec({**rotation, "rotationInterval": "365d"}).errors == ()


@pytest.mark.parametrize(
    "rotation",
    [
        {"enableAutomaticRotation": True, "automaticRotation": "Disabled"},
        {"enableAutomaticRotation": False, "automaticRotation": "Enabled"},
        {"enableAutomaticRotation": False, "automaticRotation": "Suspended"},
    ],
)
def test_disagreeing_rotation_fields_are_refused(rotation: dict[str, Any]) -> None:
    message = only_error({**rotation, "rotationInterval": "7d"}, "spec.automaticRotation")
    assert "spec.enableAutomaticRotation" in message
    assert "agree" in message


@pytest.mark.parametrize(
    "spec",
    [
        {"keySpec": "RSA_2048"},
        {"keySpec": "EC_P256"},
        {"keySpec": "EC_SM2"},
        {"origin": "EXTERNAL"},
        {"keySpec": "Aliyun_SM4", "origin": "EXTERNAL"},
    ],
)
def test_rotation_is_refused_unless_symmetric_and_generated_by_kms(spec: dict[str, Any]) -> None:
    message = only_error(
        {**spec, "enableAutomaticRotation": True, "rotationInterval": "30d"}, "spec.enableAutomaticRotation"
    )
    assert "only available for symmetric keys" in message
    assert "Aliyun_KMS" in message


def test_rotation_error_names_automatic_rotation_when_only_it_is_set() -> None:
    only_error(
        {"keySpec": "RSA_2048", "automaticRotation": "Enabled", "rotationInterval": "30d"},
        "spec.automaticRotation",
    )


def test_rotation_on_needs_an_interval() -> None:
    message = only_error({"enableAutomaticRotation": True}, "spec.rotationInterval")
    assert "required" in message
    assert "7d" in message


@pytest.mark.parametrize("interval", ["7d", "604800s", "168h", "10080m", "730d", "63072000s", "605800s"])
def test_intervals_within_7_to_730_days_are_valid(interval: str) -> None:
    assert validate_spec({"enableAutomaticRotation": True, "rotationInterval": interval}).allowed


@pytest.mark.parametrize("interval", ["6d", "604799s", "731d", "63072001s", "0s"])
def test_intervals_out_of_range_are_refused(interval: str) -> None:
    message = only_error(
        {"enableAutomaticRotation": True, "rotationInterval": interval}, "spec.rotationInterval"
    )
    assert "7d to 730d" in message


@pytest.mark.parametrize("interval", ["9999999999999999999999s", "1000000000000d"])
def test_an_interval_of_too_many_digits_is_out_of_range_not_malformed(interval: str) -> None:
    # The CRD's pattern (^[0-9]+[dhms]$) admits these; the message must say what the range is.
    message = only_error(
        {"enableAutomaticRotation": True, "rotationInterval": interval}, "spec.rotationInterval"
    )
    assert "between 7 and 730 days" in message
    assert "not an integer" not in message


def test_a_malformed_interval_is_refused_with_an_example() -> None:
    message = only_error({"enableAutomaticRotation": True, "rotationInterval": "1w"}, "spec.rotationInterval")
    assert "7d" in message


@pytest.mark.parametrize(
    "rotation", [{}, {"enableAutomaticRotation": False}, {"automaticRotation": "Disabled"}]
)
def test_an_interval_with_rotation_off_is_allowed_with_a_warning(rotation: dict[str, Any]) -> None:
    verdict = validate_spec({**rotation, "rotationInterval": "30d"})
    assert verdict.allowed
    assert any("spec.rotationInterval is ignored" in w for w in verdict.warnings)


# --- policy -------------------------------------------------------------------------------------------------


def test_policy_must_be_json() -> None:
    assert "not valid JSON" in only_error({"policy": "{Version: 1"}, "spec.policy")


@pytest.mark.parametrize("text", ["[]", '"x"', "1"])
def test_policy_must_be_a_json_object(text: str) -> None:
    assert "JSON object" in only_error({"policy": text}, "spec.policy")


@pytest.mark.parametrize("document", [{}, {"Version": 1}, {"Version": "2"}])
def test_policy_needs_version_1_as_a_string(document: dict[str, Any]) -> None:
    assert '"Version": "1"' in only_error({"policy": json.dumps(document)}, "spec.policy")


def test_policy_is_limited_to_32768_utf8_bytes() -> None:
    # 16385 two-byte characters: under 32768 characters, over 32768 bytes.
    policy = json.dumps({"Version": "1", "Sid": "é" * 16385}, ensure_ascii=False)
    assert len(policy) < 32768 < len(policy.encode())
    assert "32768 bytes" in only_error({"policy": policy}, "spec.policy")
    fits = json.dumps({"Version": "1", "Statement": [], "Sid": "x" * (32768 - 50)})
    assert validate_spec({"policy": fits}).allowed


@pytest.mark.parametrize(
    ("document", "path", "advice"),
    [
        ({"Version": "1", "Statement": "allow everything"}, '$.Statement is "allow everything"', "a list"),
        ({"Version": "1"}, "$.Statement is missing", '"Effect": "Allow"'),
        (
            {"Version": "1", "Statement": [{**SEED_STATEMENT, "Effect": "Maybe"}]},
            "$.Statement[0].Effect",
            "Deny",
        ),
        ({"Version": "1", "Statement": [SEED_STATEMENT, "everything"]}, "$.Statement[1] is", "an object"),
        ({"Version": "1", "Statement": [{**SEED_STATEMENT, "Action": []}]}, "$.Statement[0].Action", "kms:*"),
        (
            {"Version": "1", "Statement": [{**SEED_STATEMENT, "Action": "kms:*", "Resource": 7}]},
            ".Resource",
            '"*"',
        ),
        (
            {"Version": "1", "Statement": [{k: v for k, v in SEED_STATEMENT.items() if k != "Principal"}]},
            "$.Statement[0].Principal is missing",
            "acs:ram::",
        ),
        ({"Version": "1", "Statement": [{**SEED_STATEMENT, "Principal": {"RAM": 1}}]}, ".Principal", "RAM"),
        (
            {"Version": "1", "Statement": [{**SEED_STATEMENT, "Sid": 1, "Condition": []}]},
            ".Sid is 1",
            "string",
        ),
    ],
    ids=[
        "statement-not-a-list",
        "no-statement",
        "effect-maybe",
        "statement-not-an-object",
        "empty-action",
        "resource-not-a-string",
        "no-principal",
        "principal-not-strings",
        "sid-not-a-string",
    ],
)
def test_json_that_is_not_a_kms_policy_is_refused_naming_the_json_path(
    document: dict[str, Any], path: str, advice: str
) -> None:
    message = only_error({"policy": json.dumps(document)}, "spec.policy")
    assert message.startswith("is not a KMS key policy: ")
    assert path in message
    assert advice in message


def test_every_fault_of_a_policy_is_named_at_once() -> None:
    document = {"Version": "2", "Statement": [{"Effect": "Maybe", "Action": ["kms:*"], "Resource": ["*"]}]}
    message = only_error({"policy": json.dumps(document)}, "spec.policy")
    for path in ("$.Version", "$.Statement[0].Effect", "$.Statement[0].Principal"):
        assert path in message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_policy_with_a_number_json_cannot_hold_is_not_json(constant: str) -> None:
    text = '{"Version": "1", "Statement": [], "Sid": ' + constant + "}"
    message = only_error({"policy": text}, "spec.policy")
    assert "is not valid JSON" in message
    assert constant in message


@pytest.mark.parametrize(
    "document",
    [
        json.loads(SEED_POLICY),
        {"Version": "1", "Statement": []},
        {"Version": "1", "Statement": [{**SEED_STATEMENT, "Action": "kms:Encrypt", "Resource": "*"}]},
        {"Version": "1", "Statement": [{**SEED_STATEMENT, "Effect": "Deny", "Condition": {"Bool": {}}}]},
    ],
    ids=["seed", "no-statements", "strings", "deny-with-condition"],
)
def test_well_formed_policies_are_valid(document: dict[str, Any]) -> None:
    assert validate_spec({"policy": json.dumps(document)}).allowed


def test_policy_name_needs_a_policy() -> None:
    assert "spec.policy" in only_error({"policyName": "default"}, "spec.policyName")
    assert validate_spec({"policyName": "default", "policy": SEED_POLICY}).allowed


def test_policy_name_other_than_default_is_refused() -> None:
    assert "default" in only_error({"policyName": "custom", "policy": SEED_POLICY}, "spec.policyName")


# --- tags ---------------------------------------------------------------------------------------------------


def test_user_tags_are_counted_against_the_twenty_a_key_holds_with_the_claims_share_shown() -> None:
    assert validate_spec({"tags": {f"k{i}": "v" for i in range(16)}}).allowed
    message = only_error({"tags": {f"k{i}": "v" for i in range(17)}}, "spec.tags")
    assert "has 17 tags" in message
    assert "20 - 4 = 16" in message
    assert "remove 1" in message


def test_an_adopting_kmskey_gets_one_tag_less_because_its_claim_marks_the_key_adopted() -> None:
    assert validate_spec({"keyId": "k", "tags": {f"k{i}": "v" for i in range(15)}}).allowed
    message = only_error({"keyId": "k", "tags": {f"k{i}": "v" for i in range(16)}}, "spec.tags")
    assert "20 - 5 = 15" in message


@pytest.mark.parametrize("key", ["aliyun", "aliyun:x", "Aliyun-team", "acs:rm:rgId", "ACS:x"])
def test_tag_keys_reserved_by_kms_are_refused(key: str) -> None:
    assert "reserved by KMS" in only_error({"tags": {key: "v"}}, f"spec.tags[{key}]")


@pytest.mark.parametrize(
    "key", [names.OWNER_TAG_KEY, names.OWNER_CLUSTER_TAG_KEY, names.ADOPTED_TAG_KEY, "KMS.alicloud.dev/x"]
)
def test_every_tag_under_the_operators_prefix_is_refused(key: str) -> None:
    message = only_error({"tags": {key: "uid"}}, f"spec.tags[{key}]")
    assert "reserved for the operator's claim" in message


@pytest.mark.parametrize("key", ["", "a" * 129, "has space", "ключ", "a#b"])
def test_tag_keys_outside_the_kms_charset_or_length_are_refused(key: str) -> None:
    assert "1 to 128 characters" in only_error({"tags": {key: "v"}}, f"spec.tags[{key}]")


@pytest.mark.parametrize("value", ["a" * 129, "two words", "a,b"])
def test_tag_values_outside_the_kms_charset_or_length_are_refused(value: str) -> None:
    assert "0 to 128 characters" in only_error({"tags": {"k": value}}, "spec.tags[k]")


@pytest.mark.parametrize(
    ("key", "value"), [("team", ""), ("a" * 128, "b" * 128), ("app/x_y-z.v+1=2:3@4\\", "A0/\\_-.+=:@")]
)
def test_tags_within_the_kms_charset_and_length_are_valid(key: str, value: str) -> None:
    assert validate_spec({"tags": {key: value}}).allowed


# --- deletion and management policies ----------------------------------------------------------------------


def test_deletion_policy_delete_needs_a_pending_window() -> None:
    message = only_error({"deletionPolicy": "Delete"}, "spec.pendingWindowInDays")
    assert "7 to 366" in message
    assert validate_spec({"deletionPolicy": "Delete", "pendingWindowInDays": 7}).allowed


@pytest.mark.parametrize("days", [6, 367, 0])
def test_pending_window_out_of_range_is_refused(days: int) -> None:
    assert "7 to 366" in only_error(
        {"deletionPolicy": "Delete", "pendingWindowInDays": days}, "spec.pendingWindowInDays"
    )


def test_a_pending_window_with_retain_warns_that_it_is_unused() -> None:
    verdict = validate_spec({"pendingWindowInDays": 30})
    assert verdict.allowed
    assert any("deletionPolicy: Delete" in w for w in verdict.warnings)


def test_description_over_8192_characters_is_refused() -> None:
    assert "8192" in only_error({"description": "d" * 8193}, "spec.description")
    assert validate_spec({"description": "d" * 8192}).allowed


def test_observe_needs_a_key_id() -> None:
    message = only_error({"managementPolicy": "Observe"}, "spec.keyId")
    assert "nothing to observe" in message
    assert validate_spec({"managementPolicy": "Observe", "keyId": "key-1"}) == validation.ALLOWED


def test_observe_warns_about_fields_it_will_not_apply_and_about_delete() -> None:
    verdict = validate_spec(
        {
            "managementPolicy": "Observe",
            "keyId": "key-1",
            "description": "d",
            "deletionPolicy": "Delete",
            "pendingWindowInDays": 7,
        }
    )
    assert verdict.allowed
    assert any("only compared, not applied: description" in w for w in verdict.warnings)
    assert any("never deletes an observed key" in w for w in verdict.warnings)


def test_every_error_names_a_spec_field_and_the_summary_lists_all() -> None:
    verdict = validate_spec(
        {
            "secretName": "s",
            "status": "PendingDeletion",
            "keyUsage": "SIGN/VERIFY",
            "deletionPolicy": "Delete",
        }
    )
    assert len(verdict.errors) == 4
    for problem in verdict.errors:
        assert problem.field.startswith("spec.")
        assert f"{problem.field}: {problem.message}" in verdict.summary()


# --- key_exists and immutable_changes ----------------------------------------------------------------------


def test_a_key_is_recorded_once_status_has_an_id_whatever_the_spec_adopts() -> None:
    assert validation.key_recorded(body({}, key_id="key-1")) == "key-1"
    assert validation.key_recorded(body({"keyId": "key-2"}, key_id=None)) is None
    assert validation.key_recorded({}) is None


def test_immutable_changes_lists_added_removed_and_changed_fields() -> None:
    old = {"keySpec": "Aliyun_AES_256", "tags": {"a": "1"}, "description": "x"}
    new = {"keyUsage": "ENCRYPT/DECRYPT", "tags": {"a": "2"}, "description": "y"}
    assert validation.immutable_changes(old, new) == [
        ("keySpec", "Aliyun_AES_256", None),
        ("keyUsage", None, "ENCRYPT/DECRYPT"),
        ("tags", {"a": "1"}, {"a": "2"}),
    ]
    assert validation.immutable_changes(None, None) == []


# --- updates ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "old", "new"),
    [
        ("dkmsInstanceId", "kst-1", "kst-2"),
        ("keySpec", "Aliyun_AES_256", "Aliyun_SM4"),
        ("keyUsage", "ENCRYPT/DECRYPT", None),
        ("origin", None, "Aliyun_KMS"),
        ("protectionLevel", "SOFTWARE", "HSM"),
        ("tags", {"a": "1"}, {"a": "1", "b": "2"}),
        ("tags", {"a": "1"}, None),
    ],
)
def test_changing_a_force_new_field_of_an_existing_key_is_refused(field: str, old: Any, new: Any) -> None:
    old_spec = {field: old} if old is not None else {}
    new_spec = {field: new} if new is not None else {}
    verdict = validate_update(body(old_spec), body(new_spec))
    assert [p.field for p in verdict.errors] == [f"spec.{field}"]
    summary = verdict.summary()
    assert "cannot change once the KMS key exists" in summary
    assert "create a new KmsKey" in summary
    assert "deletionPolicy: Retain" in summary
    assert "key-1" in summary
    assert "(unset)" in summary or (old is not None and new is not None)


def test_a_refused_tags_change_names_the_seed_not_kms_and_the_keys_own_tags() -> None:
    old = body({"keyId": "key-1"})
    old["status"]["tags"] = {"team": "a"}
    message = validate_update(old, body({"keyId": "key-1", "tags": {"team": "b"}})).summary()
    assert "the seed (Terraform's alicloud_kms_key) makes tags ForceNew" in message
    assert "KMS cannot change" not in message
    assert '{"team":"a"}, and declaring exactly those is allowed' in message


def test_declaring_on_an_adopted_key_the_tags_it_already_has_is_allowed() -> None:
    old = body({"keyId": "key-1"})
    old["status"]["tags"] = {"team": "a"}
    assert validate_update(old, body({"keyId": "key-1", "tags": {"team": "a"}})).allowed
    old["status"]["tags"] = {}
    assert validate_update(old, body({"keyId": "key-1", "tags": {}})).allowed


@pytest.mark.parametrize(
    ("field", "old", "new", "says"),
    [
        ("regionId", "cn-hangzhou", "cn-shanghai", "cannot change once the operator has recorded"),
        ("regionId", "cn-hangzhou", None, "cannot change once the operator has recorded"),
        ("regionId", None, "cn-shanghai", "may only name this KmsKey's key's region (cn-hangzhou"),
        ("keyId", "key-1", "key-other", "cannot change once the operator has recorded"),
        ("keyId", "key-1", None, "cannot change once the operator has recorded"),
        ("keyId", None, "key-other", "may only name this KmsKey's key (key-1"),
    ],
)
def test_identity_cannot_change_or_be_removed_once_a_key_is_recorded(
    field: str, old: Any, new: Any, says: str
) -> None:
    old_spec = {field: old} if old is not None else {}
    new_spec = {field: new} if new is not None else {}
    verdict = validate_update(body(old_spec), body(new_spec))
    assert [p.field for p in verdict.errors] == [f"spec.{field}"]
    assert says in verdict.summary()
    assert "create a new KmsKey" in verdict.summary()


def test_a_mistyped_key_id_that_was_never_found_may_be_corrected_in_place() -> None:
    old = body({"keyId": "key-typo"}, key_id=None)
    assert validate_update(old, body({"keyId": "key-right"}, key_id=None)).allowed
    assert validate_update(old, body({}, key_id=None)).allowed


def test_the_refusal_names_every_changed_field_with_old_and_new_values() -> None:
    old = body({"keySpec": "Aliyun_AES_256", "origin": "Aliyun_KMS", "tags": {"a": "1"}, "description": "x"})
    new = body({"keySpec": "RSA_2048", "origin": "EXTERNAL", "tags": {"a": "2"}, "description": "y"})
    summary = validate_update(old, new).summary()
    assert "spec.keySpec: cannot change once the KMS key exists (Aliyun_AES_256 → RSA_2048)" in summary
    assert "spec.origin: cannot change once the KMS key exists (Aliyun_KMS → EXTERNAL)" in summary
    assert 'spec.tags: cannot change once the KMS key exists ({"a":"1"} → {"a":"2"})' in summary
    assert "description" not in summary


def test_an_adopted_key_never_recorded_may_still_have_its_force_new_fields_corrected() -> None:
    old = body({"keyId": "key-9", "keySpec": "Aliyun_AES_256"}, key_id=None)
    new = body({"keyId": "key-9", "keySpec": "RSA_2048"}, key_id=None)
    assert validate_update(old, new).allowed


def test_before_the_key_exists_every_field_may_change() -> None:
    old = body({"keySpec": "Aliyun_AES_256", "tags": {"a": "1"}}, key_id=None)
    new = body(
        {"keySpec": "RSA_2048", "keyUsage": "SIGN/VERIFY", "tags": {}, "regionId": "cn-beijing"}, key_id=None
    )
    assert validate_update(old, new) == validation.ALLOWED


def test_mutable_fields_of_an_existing_key_may_change() -> None:
    seed = without(SEED_SPEC, "protectionLevel")
    old = body(seed)
    new = body(
        {
            **seed,
            "description": "new",
            "status": "Disabled",
            "enableAutomaticRotation": False,
            "automaticRotation": "Disabled",
            "rotationInterval": None,
            "enableDeletionProtection": True,
            "policy": json.dumps({"Version": "1", "Statement": []}),
            "deletionPolicy": "Delete",
            "pendingWindowInDays": 30,
            "managementPolicy": "Manage",
        }
    )
    new["spec"] = {k: v for k, v in new["spec"].items() if v is not None}
    assert validate_update(old, new) == validation.ALLOWED


def test_writing_down_the_key_id_and_region_from_status_is_not_a_change() -> None:
    old = body({"description": "x"}, key_id="key-1")
    new = body(
        {"description": "x", "keyId": "key-1", "regionId": "cn-hangzhou", "managementPolicy": "Observe"}
    )
    verdict = validate_update(old, new)
    assert verdict.errors == ()


def test_an_update_that_breaks_a_spec_rule_is_refused_with_both_kinds_of_errors() -> None:
    old = body({"keySpec": "Aliyun_AES_256"})
    new = body({"keySpec": "EC_P256", "keyUsage": "ENCRYPT/DECRYPT"})
    fields = [p.field for p in validate_update(old, new).errors]
    assert fields == ["spec.keySpec", "spec.keyUsage", "spec.keyUsage"]


def test_an_update_keeps_the_spec_warnings() -> None:
    verdict = validate_update(body({}), body({"rotationInterval": "30d"}))
    assert verdict.allowed
    assert verdict.warnings


def test_a_metadata_only_update_passes_even_when_the_stored_spec_breaks_rules() -> None:
    bad = {"secretName": "s", "keySpec": "EC_P256", "keyUsage": "ENCRYPT/DECRYPT"}
    old = body(bad)
    new = body(bad, finalizers=[names.FINALIZER], annotations={"a": "b"}, labels={"c": "d"})
    assert validate_update(old, new) == validation.ALLOWED


def test_an_object_being_deleted_passes_a_spec_change_that_keeps_its_identity() -> None:
    old = body({"keySpec": "Aliyun_AES_256"}, finalizers=[names.FINALIZER])
    new = body({"keySpec": "RSA_2048"}, deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[])
    assert validate_update(old, new) == validation.ALLOWED


def test_a_deletion_cannot_be_pointed_at_another_key() -> None:
    """#14 scenario 4: a blocked Delete, patched to another key while being deleted, is refused."""
    old = body({"deletionPolicy": "Delete", "pendingWindowInDays": 7}, finalizers=[names.FINALIZER])
    new = body(
        {"deletionPolicy": "Delete", "pendingWindowInDays": 7, "keyId": "key-unrelated"},
        deletionTimestamp="2026-01-01T00:00:00Z",
    )
    verdict = validate_update(old, new)
    assert [p.field for p in verdict.errors] == ["spec.keyId"]


# --- property: no ForceNew change ever gets through once the key exists ------------------------------------

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "dkmsInstanceId": st.sampled_from(["kst-1", "kst-2"]),
    "keySpec": st.sampled_from(model.KEY_SPECS),
    "keyUsage": st.sampled_from(model.KEY_USAGES),
    "origin": st.sampled_from(model.ORIGINS),
    "protectionLevel": st.sampled_from(model.PROTECTION_LEVELS),
    "tags": st.dictionaries(st.sampled_from(["a", "b", "env"]), st.sampled_from(["", "1", "x"]), max_size=3),
    "regionId": st.sampled_from(["cn-hangzhou", "cn-shanghai"]),
    "keyId": st.sampled_from(["key-1", "key-2"]),
    "description": st.text(max_size=5),
    "status": st.sampled_from(["Enabled", "Disabled"]),
    "enableAutomaticRotation": st.booleans(),
    "rotationInterval": st.sampled_from(["7d", "365d", "1d"]),
    "enableDeletionProtection": st.booleans(),
    "deletionPolicy": st.sampled_from(["Retain", "Delete"]),
    "pendingWindowInDays": st.integers(7, 366),
}
specs = st.fixed_dictionaries({}, optional=_VALUES)


@settings(max_examples=400, deadline=None)
@given(old_spec=specs, new_spec=specs, status_key=st.sampled_from([None, "key-1"]))
def test_random_edits_never_let_a_force_new_or_identity_change_through(
    old_spec: dict[str, Any], new_spec: dict[str, Any], status_key: str | None
) -> None:
    old, new = body(old_spec, key_id=status_key), body(new_spec, key_id=status_key)
    for deleting in (False, True):
        if deleting:
            new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        verdict = validate_update(old, new)
        if not (verdict.allowed and validation.key_recorded(old)):
            continue
        if not deleting:
            for field in model.FORCE_NEW_FIELDS:
                assert old_spec.get(field) == new_spec.get(field), field
        status = old.get("status") or {}
        for field in model.IDENTITY_FIELDS:
            if field in old_spec:
                assert new_spec.get(field) == old_spec[field], field
            else:
                assert new_spec.get(field) in (None, status.get(field)), field


@settings(max_examples=200, deadline=None)
@given(
    spec=specs,
    status_key=st.sampled_from([None, "key-1"]),
    finalizers=st.lists(st.sampled_from([names.FINALIZER, "other/x"]), max_size=2),
    annotations=st.dictionaries(st.sampled_from(["a", names.PAUSED_ANNOTATION]), st.just("true"), max_size=2),
)
def test_metadata_only_updates_always_pass(
    spec: dict[str, Any], status_key: str | None, finalizers: list[str], annotations: dict[str, str]
) -> None:
    old = body(spec, key_id=status_key)
    new = body(dict(spec), key_id=status_key, finalizers=finalizers, annotations=annotations)
    assert validate_update(old, new) == validation.ALLOWED


@settings(max_examples=200, deadline=None)
@given(old_spec=specs, new_spec=specs, status_key=st.sampled_from([None, "key-1"]))
def test_updates_of_objects_being_deleted_pass_unless_they_change_identity(
    old_spec: dict[str, Any], new_spec: dict[str, Any], status_key: str | None
) -> None:
    old = body(old_spec, key_id=status_key)
    new = body(new_spec, key_id=status_key, deletionTimestamp="2026-01-01T00:00:00Z")
    verdict = validate_update(old, new)
    assert {p.field for p in verdict.errors} <= {"spec.keyId", "spec.regionId"}
    assert verdict.allowed == (validation.identity_problems(old, new_spec) == [])


def test_declaring_a_force_new_field_with_the_value_the_key_has_is_allowed() -> None:
    """An adopted key's spec may write down keySpec once status shows it; another value is refused."""
    old = {"metadata": {}, "spec": {"keyId": "k1"}, "status": {"keyId": "k1", "keySpec": "RSA_2048"}}
    same = {"metadata": {}, "spec": {"keyId": "k1", "keySpec": "RSA_2048"}}
    other = {"metadata": {}, "spec": {"keyId": "k1", "keySpec": "Aliyun_AES_256"}}
    assert validation.validate_update(old, same).allowed
    refused = validation.validate_update(old, other)
    assert not refused.allowed
    assert "spec.keySpec" in refused.summary()


# --- regionId and the tenancy scope -------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["not a region!", "CN-HANGZHOU", "cn", "cn_hangzhou", "-cn-x", ""])
def test_a_region_id_of_the_wrong_shape_is_refused(region: str) -> None:
    message = only_error({"regionId": region}, "spec.regionId")
    assert "is not a region ID" in message
    assert "cn-hangzhou" in message


@pytest.mark.parametrize("region", ["cn-hangzhou", "ap-southeast-1", "cn-shanghai-finance-1", "us-east-1"])
def test_real_region_ids_are_valid(region: str) -> None:
    assert validate_spec({"regionId": region}).allowed


def scope(**env: str) -> validation.Scope:
    from kmskey_operator.settings import Settings

    return validation.Scope.of(Settings.from_env(env), "team-a")


def test_a_pinned_endpoint_refuses_another_region_saying_which_it_serves() -> None:
    pinned = scope(KMS_ENDPOINT="127.0.0.1:8080", ALIBABA_CLOUD_REGION_ID="cn-hangzhou")
    assert validate_spec({"regionId": "cn-hangzhou"}, pinned).allowed
    verdict = validate_spec({"regionId": "cn-shanghai"}, pinned)
    (problem,) = verdict.errors
    assert problem.field == "spec.regionId"
    assert "KMS_ENDPOINT=127.0.0.1:8080" in problem.message
    assert "serves cn-hangzhou only" in problem.message
    assert validate_spec({"regionId": "cn-shanghai"}, scope()).allowed  # one endpoint per region


def test_adoption_is_refused_in_a_namespace_the_cluster_does_not_let_adopt() -> None:
    verdict = validate_spec({"keyId": "key-1"}, scope())
    (problem,) = verdict.errors
    assert problem.field == "spec.keyId"
    assert "namespace team-a may not adopt" in problem.message
    assert "tenancy.adoption.namespaces" in problem.message
    assert validate_spec({"keyId": "key-1"}, scope(KMSKEY_ADOPTION_NAMESPACES="team-a")).allowed
    assert validate_spec({"description": "new key"}, scope()).allowed


def test_delete_on_an_adopted_key_is_refused_unless_the_cluster_allows_it() -> None:
    spec = {"keyId": "key-1", "deletionPolicy": "Delete", "pendingWindowInDays": 7}
    adopting = scope(KMSKEY_ADOPTION_NAMESPACES="*")
    (problem,) = validate_spec(spec, adopting).errors
    assert problem.field == "spec.deletionPolicy"
    assert "tenancy.adoption.allowDelete" in problem.message
    allowed = scope(KMSKEY_ADOPTION_NAMESPACES="*", KMSKEY_ADOPTED_KEY_DELETION="true")
    assert validate_spec(spec, allowed).allowed
    observed = {**spec, "managementPolicy": "Observe"}
    assert validate_spec(observed, adopting).allowed  # Observe never deletes: only a warning


def test_delete_stays_allowed_for_a_created_key_whose_spec_wrote_its_key_id_down() -> None:
    from kmskey_operator.settings import Settings

    settings = Settings.from_env({"KMSKEY_ADOPTION_NAMESPACES": "*"})
    own = validation.Scope.of(settings, "team-a", {"keyId": "key-1", "ownership": "Created"})
    spec = {"keyId": "key-1", "deletionPolicy": "Delete", "pendingWindowInDays": 7}
    assert validate_spec(spec, own).allowed
