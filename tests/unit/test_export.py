"""reconcile/export.py: the spec rendered from an observed key is one that diff finds nothing to change in."""

from __future__ import annotations

import json

import pytest

from kmskey_operator import model, names, validation
from kmskey_operator.kms.types import KeyMetadata, ObservedKey
from kmskey_operator.reconcile import export
from kmskey_operator.reconcile.diff import diff

POLICY = json.dumps(
    {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Principal": {"RAM": ["*"]}, "Action": ["kms:*"], "Resource": ["*"]}
        ],
    }
)


def key(**fields: str) -> KeyMetadata:
    base = {
        "key_id": "key-abc123",
        "key_state": "Enabled",
        "key_spec": "Aliyun_AES_256",
        "key_usage": "ENCRYPT/DECRYPT",
        "origin": "Aliyun_KMS",
        "protection_level": "SOFTWARE",
        "description": "orders",
        "automatic_rotation": "Disabled",
        "deletion_protection": "Disabled",
    }
    return KeyMetadata(**{**base, **fields})


OBSERVED = {
    "symmetric with rotation": ObservedKey(
        key(automatic_rotation="Enabled", rotation_interval="2592000s"), tags={"team": "payments"}
    ),
    "symmetric, rotation suspended while disabled": ObservedKey(
        key(key_state="Disabled", automatic_rotation="Suspended", rotation_interval="604800s"), tags={}
    ),
    "RSA signing key": ObservedKey(key(key_spec="RSA_2048", key_usage="SIGN/VERIFY"), tags={}),
    "EC key": ObservedKey(key(key_spec="EC_P256", key_usage="SIGN/VERIFY"), tags={}),
    "EXTERNAL awaiting material": ObservedKey(key(origin="EXTERNAL", key_state="PendingImport"), tags={}),
    "with policy": ObservedKey(key(), tags={}, policy=POLICY),
    "with deletion protection": ObservedKey(key(deletion_protection="Enabled"), tags={}),
    "in a KMS instance": ObservedKey(key(dkms_instance_id="kst-abc", protection_level="HSM"), tags={}),
    "with reserved tags": ObservedKey(key(), tags={"acs:rm:rgId": "rg-1", "aliyunTag": "x", "env": "prod"}),
}


@pytest.mark.parametrize("observed", OBSERVED.values(), ids=OBSERVED.keys())
def test_exported_spec_is_valid_and_in_sync_with_the_key(observed: ObservedKey) -> None:
    spec = export.spec_from_observed(observed, region_id="cn-hangzhou")
    verdict = validation.validate_spec(spec)
    assert verdict.allowed, verdict.summary()
    assert diff(model.parse_spec(spec), observed, created=False).in_sync


def test_exported_spec_adopts_the_key_and_retains_it_on_deletion() -> None:
    spec = export.spec_from_observed(OBSERVED["with policy"], region_id="eu-central-1")
    assert spec["keyId"] == "key-abc123"
    assert spec["regionId"] == "eu-central-1"
    assert spec["deletionPolicy"] == "Retain"


def test_rotation_interval_is_rendered_in_seconds() -> None:
    observed = ObservedKey(key(automatic_rotation="Enabled", rotation_interval="30d"), tags={})
    spec = export.spec_from_observed(observed, region_id="cn-hangzhou")
    assert spec["enableAutomaticRotation"] is True
    assert spec["rotationInterval"] == "2592000s"


def test_keys_that_cannot_rotate_declare_no_rotation_fields() -> None:
    spec = export.spec_from_observed(OBSERVED["RSA signing key"], region_id="cn-hangzhou")
    assert "enableAutomaticRotation" not in spec
    assert "rotationInterval" not in spec


def test_pending_import_state_is_left_undeclared() -> None:
    spec = export.spec_from_observed(OBSERVED["EXTERNAL awaiting material"], region_id="cn-hangzhou")
    assert "status" not in spec


def test_reserved_and_ownership_tags_are_left_out() -> None:
    tags = {"acs:rm:rgId": "rg-1", names.OWNER_TAG_KEY: "uid-1", "env": "prod"}
    spec = export.spec_from_observed(ObservedKey(key(), tags=tags), region_id="cn-hangzhou")
    assert spec["tags"] == {"env": "prod"}


def test_instance_keys_declare_no_protection_level() -> None:
    spec = export.spec_from_observed(OBSERVED["in a KMS instance"], region_id="cn-hangzhou")
    assert spec["dkmsInstanceId"] == "kst-abc"
    assert "protectionLevel" not in spec


def test_policy_is_pretty_printed_but_equal_by_value() -> None:
    spec = export.spec_from_observed(OBSERVED["with policy"], region_id="cn-hangzhou")
    assert "\n" in spec["policy"]
    assert json.loads(spec["policy"]) == json.loads(POLICY)


def test_a_policy_that_is_not_json_is_kept_verbatim() -> None:
    assert export.readable_policy("not json") == "not json"


def test_a_key_pending_deletion_cannot_be_exported() -> None:
    observed = ObservedKey(key(key_state="PendingDeletion", delete_date="2030-01-01T00:00:00Z"), tags={})
    with pytest.raises(export.NotExportable, match="CancelKeyDeletion"):
        export.spec_from_observed(observed, region_id="cn-hangzhou")


@pytest.mark.parametrize(
    ("key_id", "name"),
    [
        ("key-hzz62ee5fe3b7ifgq5hmg", "key-hzz62ee5fe3b7ifgq5hmg"),
        ("KEY_Upper.Case", "key-upper-case"),
        ("-x-", "x"),
        ("???", "kmskey"),
        ("k" * 80, "k" * 63),
    ],
)
def test_resource_name_is_dns_1123_safe(key_id: str, name: str) -> None:
    assert export.resource_name(key_id) == name


def test_manifest_wraps_the_spec_in_a_kmskey() -> None:
    body = export.manifest({"keyId": "k"}, name="k", namespace="prod")
    assert body["apiVersion"] == "kms.alicloud.dev/v1alpha1"
    assert body["kind"] == "KmsKey"
    assert body["metadata"] == {"name": "k", "namespace": "prod"}
    assert "namespace" not in export.manifest({}, name="k")["metadata"]
