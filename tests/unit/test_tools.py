"""tools/: manifest parsing, the read-only gateway, import's filters and YAML, plan's exit codes and text."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from kmskey_operator.kms.gateway import READ_ONLY_ACTIONS
from kmskey_operator.kms.types import KmsCall
from kmskey_operator.reconcile.diff import Blocked, Conflict, FieldChange
from kmskey_operator.settings import Settings
from kmskey_operator.tools import cluster, importer, manifests
from kmskey_operator.tools.plan import ManifestPlan, exit_code, render_text
from kmskey_operator.tools.readonly import ReadOnlyGateway, WriteRefused

KMSKEY = "apiVersion: kms.alicloud.dev/v1alpha1\nkind: KmsKey\nmetadata: {name: a, namespace: ns}\nspec: {}\n"


def test_multi_document_yaml_keeps_kmskeys_and_notes_the_rest() -> None:
    notes: list[str] = []
    text = f"{KMSKEY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\n---\n---\n{KMSKEY}"
    found = manifests.parse("all.yaml", text, notes)
    assert [m.source for m in found] == ["all.yaml#1", "all.yaml#3"]
    assert found[0].namespace == "ns"
    assert found[0].name == "a"
    assert notes == ["all.yaml#2: skipped ConfigMap cm"]


def test_a_single_document_is_named_by_its_path_alone() -> None:
    assert [m.source for m in manifests.parse("a.yaml", KMSKEY, [])] == ["a.yaml"]


def test_a_kind_list_is_opened_up() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(KMSKEY)] * 2}
    assert len(manifests.parse("-", yaml.safe_dump(listing), [])) == 2


def test_a_kmskey_of_another_group_is_not_ours() -> None:
    notes: list[str] = []
    assert manifests.parse("x", KMSKEY.replace("kms.alicloud.dev", "example.com"), notes) == []
    assert notes == ["x: skipped KmsKey a"]


def test_invalid_yaml_names_its_source() -> None:
    with pytest.raises(manifests.ManifestError, match=r"bad\.yaml: not valid YAML"):
        manifests.parse("bad.yaml", "a: [", [])


@pytest.mark.parametrize("ref", ["name-only", "/name", "ns/", "a/b/c"])
def test_from_cluster_needs_namespace_slash_name(ref: str) -> None:
    with pytest.raises(cluster.ClusterError, match="NAMESPACE/NAME"):
        cluster.parse_ref(ref)


@pytest.mark.parametrize(
    "action", ["CreateKey", "UpdateKeyDescription", "ScheduleKeyDeletion", "TagResources"]
)
def test_the_read_only_gateway_refuses_writes_before_reaching_kms(action: str) -> None:
    # Port 9 on 127.0.0.1: nothing listens, so any call that got through would fail differently.
    gateway = ReadOnlyGateway(Settings(kms_endpoint="127.0.0.1:9", kms_protocol="http"))
    with pytest.raises(WriteRefused, match=action):
        asyncio.run(gateway.call("cn-hangzhou", KmsCall(action, {"KeyId": "k"})))


def test_every_read_only_action_is_a_read() -> None:
    assert all(a.startswith(("Describe", "List", "Get")) for a in READ_ONLY_ACTIONS)


def test_filters_merge_repeated_keys() -> None:
    assert importer.parse_filters(["KeyState=Enabled", "KeyState=Disabled", "TagKey=a=b"]) == {
        "KeyState": ["Enabled", "Disabled"],
        "TagKey": ["a=b"],
    }


@pytest.mark.parametrize("item", ["KeyState", "=Enabled", "KeyState="])
def test_a_filter_without_key_and_value_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        importer.parse_filters([item])


def test_yaml_keeps_field_order_and_prints_policies_as_blocks() -> None:
    body = {"kind": "KmsKey", "spec": {"keyId": "k", "policy": '{\n  "Version": "1"\n}\n', "tags": {}}}
    text = importer.to_yaml(body)
    assert text.index("kind") < text.index("spec")
    assert "policy: |" in text
    assert yaml.safe_load(text) == body


def test_exit_codes_follow_terraform_detailed_exitcode() -> None:
    clean = ManifestPlan("a")
    pending = ManifestPlan("b", calls=[KmsCall("UpdateKeyDescription", {"KeyId": "k"})])
    waiting = ManifestPlan("c", blocked=[Blocked("status", "KeyMaterialPending", "import material")])
    conflict = ManifestPlan("d", conflicts=[Conflict("keySpec", "RSA_2048", "EC_P256")])
    observed_only = ManifestPlan("e", applies=False, conflicts=[Conflict("keySpec", "a", "b")])
    assert [p.exit_code for p in (clean, pending, waiting, conflict, observed_only)] == [0, 2, 2, 1, 0]
    assert exit_code([clean, pending]) == 2
    assert exit_code([pending, conflict]) == 1
    assert exit_code([]) == 0


def test_text_lists_changes_then_numbered_calls_then_a_summary() -> None:
    plan = ManifestPlan(
        "key.yaml",
        "ns",
        "a",
        region_id="cn-hangzhou",
        key_id="key-1",
        changes=[FieldChange("description", "old", "new")],
        calls=[KmsCall("UpdateKeyDescription", {"KeyId": "key-1", "Description": "new"})],
    )
    text = render_text([plan], ["x.yaml#2: skipped ConfigMap cm"])
    assert text.splitlines() == [
        "note: x.yaml#2: skipped ConfigMap cm",
        "",
        "KmsKey ns/a (key.yaml)",
        "  key key-1 in cn-hangzhou: 1 field differs, 1 KMS call",
        "  ~ description: 'old' -> 'new'",
        "  KMS calls, in order:",
        "    1. UpdateKeyDescription(KeyId='key-1', Description='new')",
        "",
        "Plan: 0 to create, 1 to update, 0 unchanged, 0 with errors.",
    ]
