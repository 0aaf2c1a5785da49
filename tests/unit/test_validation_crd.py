"""The CRD's OpenAPI schema and the typed model describe the same spec, and seed fields have no defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kmskey_operator import claims, model, names
from kmskey_operator.settings import REGION_ID

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / f"{names.CRD_NAME}.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return document


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    result: dict[str, Any] = only
    return result


def _spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_crd_names_match_the_operator_names(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == names.CRD_NAME
    assert crd["spec"]["group"] == names.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == names.KIND
    assert crd["spec"]["names"]["plural"] == names.PLURAL
    assert crd["spec"]["names"]["singular"] == names.SINGULAR
    assert crd["spec"]["names"]["shortNames"] == [names.SHORT_NAME]
    assert crd["spec"]["names"]["categories"] == ["alicloud", "kms"]
    assert version["name"] == names.VERSION
    assert version["served"]
    assert version["storage"]
    assert version["subresources"] == {"status": {}}


def test_every_model_spec_field_is_in_the_schema_and_vice_versa(version: dict[str, Any]) -> None:
    assert set(_spec_schema(version)["properties"]) == set(model.SPEC_FIELDS)


def test_every_spec_field_is_documented_for_kubectl_explain(version: dict[str, Any]) -> None:
    for field, schema in _spec_schema(version)["properties"].items():
        assert len(schema.get("description", "")) > 20, field


def test_only_the_operator_policies_have_schema_defaults(version: dict[str, Any]) -> None:
    defaults = {f: s["default"] for f, s in _spec_schema(version)["properties"].items() if "default" in s}
    assert defaults == {
        "deletionPolicy": model.DeletionPolicy.RETAIN.value,
        "managementPolicy": model.ManagementPolicy.MANAGE.value,
    }


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("automaticRotation", model.AUTOMATIC_ROTATION_VALUES),
        ("keySpec", model.KEY_SPECS),
        ("keyUsage", model.KEY_USAGES),
        ("origin", model.ORIGINS),
        ("protectionLevel", model.PROTECTION_LEVELS),
        ("status", ("Enabled", "Disabled")),  # PendingDeletion: see the next test
        ("policyName", model.POLICY_NAMES),
        ("deletionPolicy", tuple(p.value for p in model.DeletionPolicy)),
        ("managementPolicy", tuple(p.value for p in model.ManagementPolicy)),
    ],
)
def test_schema_enums_match_the_model(version: dict[str, Any], field: str, values: tuple[str, ...]) -> None:
    assert tuple(_spec_schema(version)["properties"][field]["enum"]) == values


def test_the_status_enum_leaves_out_pending_deletion_and_says_why(version: dict[str, Any]) -> None:
    field = _spec_schema(version)["properties"]["status"]
    assert "PendingDeletion" not in field["enum"]
    assert "PendingDeletion" in model.KEY_STATUS_VALUES  # the seed's value, still explained if it slips in
    description = " ".join(field["description"].split())
    assert "PendingDeletion, is not offered" in description
    assert "deletionPolicy Delete" in description


def test_a_kmskey_the_operator_has_not_seen_reads_generation_zero_observed(version: dict[str, Any]) -> None:
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == {"observedGeneration": 0}


def test_status_lists_its_fields_and_only_kopf_preserves_unknown_fields(version: dict[str, Any]) -> None:
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    assert {
        "keyId",
        "arn",
        "keyState",
        "keySpec",
        "keyUsage",
        "origin",
        "protectionLevel",
        "dkmsInstanceId",
        "creationDate",
        "creator",
        "primaryKeyVersion",
        "automaticRotation",
        "rotationInterval",
        "nextRotationDate",
        "lastRotationDate",
        "deleteDate",
        "materialExpireTime",
        "deletionProtection",
        "observedGeneration",
        "lastSyncTime",
        "regionId",
        "providerConfig",
        "accountId",
        "message",
        "conditions",
        "kopf",
        "tags",
        "ownership",
    } == set(status["properties"])
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def test_printer_columns_show_key_state_and_conditions(version: dict[str, Any]) -> None:
    columns = {c["name"].upper(): c for c in version["additionalPrinterColumns"]}
    default = [name for name, c in columns.items() if c.get("priority", 0) == 0]
    wide = [name for name, c in columns.items() if c.get("priority", 0) == 1]
    assert default == ["KEY-ID", "STATE", "SPEC", "USAGE", "READY", "SYNCED", "AGE"]
    assert wide == ["ROTATION", "PROTECTION", "LAST-SYNC", "REASON", "ACCOUNT"]
    assert columns["READY"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_the_tags_schema_leaves_room_for_the_claim(version: dict[str, Any]) -> None:
    tags = _spec_schema(version)["properties"]["tags"]
    assert tags["maxProperties"] == claims.user_tag_budget(adopted=False)


def test_the_region_pattern_is_the_one_validation_applies(version: dict[str, Any]) -> None:
    region = _spec_schema(version)["properties"]["regionId"]
    assert region["pattern"] == REGION_ID.pattern


def test_the_identity_rules_are_cel_transition_rules_on_the_root(version: dict[str, Any]) -> None:
    rules = version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert [r["fieldPath"] for r in rules] == [".spec.keyId", ".spec.regionId", ".spec.providerConfigRef"]
    for rule in rules:
        assert "oldSelf" in rule["rule"]
        assert "!has(oldSelf.status.keyId)" in rule["rule"]  # free until a key is recorded
