"""`kmskey-operator import` and `plan` against the KMS emulator: import round-trips, plans list exact calls.

Keys are set up through the emulator's backend (no KMS call logged), so the call log holds only what the
CLI did; the `cli_env` fixture asserts after every test that the CLI made no write call.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kms_emulator.backend import KmsBackend
from kms_emulator.testing import DEFAULT_INSTANCE_IDS, EmulatorHandle
from kmskey_operator import names
from kmskey_operator.kms.gateway import READ_ONLY_ACTIONS
from kmskey_operator.settings import Settings
from kmskey_operator.tools.manifests import Manifest
from kmskey_operator.tools.plan import ManifestPlan, plan_manifest
from kmskey_operator.tools.readonly import ReadOnlyGateway
from tests.harness.processes import child_environment
from tests.tools.conftest import CliRunner, cli_calls

POLICY = json.dumps(
    {
        "Version": "1",
        "Statement": [
            {
                "Sid": "team",
                "Effect": "Allow",
                "Action": ["kms:*"],
                "Resource": ["*"],
                "Principal": {"RAM": ["acs:ram::1192853035118460:*"]},
            }
        ],
    }
)
OTHER_POLICY = POLICY.replace('"team"', '"other team"')
REPO_ROOT = Path(__file__).resolve().parents[2]


def _protected(b: KmsBackend) -> str:
    key_id = b.create_key().key_id
    b.set_deletion_protection(enable=True, key_id=key_id)
    return key_id


def _disabled(b: KmsBackend, **create: Any) -> str:
    key_id = b.create_key(**create).key_id
    b.disable_key(key_id)
    return key_id


KINDS: dict[str, Callable[[KmsBackend], str]] = {
    "symmetric with rotation": lambda b: (
        b.create_key(description="orders", enable_automatic_rotation=True, rotation_interval="30d").key_id
    ),
    "RSA_2048 signing": lambda b: b.create_key(key_spec="RSA_2048", key_usage="SIGN/VERIFY").key_id,
    "EC_P256": lambda b: b.create_key(key_spec="EC_P256").key_id,
    "EXTERNAL pending import": lambda b: b.create_key(origin="EXTERNAL").key_id,
    "with policy": lambda b: b.create_key(policy=POLICY).key_id,
    "with tags": lambda b: b.create_key(tags={"team": "payments", "env": "prod"}).key_id,
    "with deletion protection": _protected,
    "disabled": _disabled,
    "disabled while rotating": lambda b: _disabled(b, enable_automatic_rotation=True, rotation_interval="7d"),
    "in a KMS instance": lambda b: (
        b.create_key(
            dkms_instance_id=DEFAULT_INSTANCE_IDS[0], enable_automatic_rotation=True, rotation_interval="7d"
        ).key_id
    ),
}


def import_manifest(cli: CliRunner, key_id: str, *args: str) -> dict[str, Any]:
    result = cli("import", key_id, *args)
    assert result.code == 0, result.err
    body: dict[str, Any] = yaml.safe_load(result.out)
    return body


def plan_json(cli: CliRunner, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = cli("plan", "-f", "-", "-o", "json", stdin=yaml.safe_dump(body))
    document = result.json()
    assert document["exitCode"] == result.code
    manifest: dict[str, Any] = document["manifests"][0]
    return result.code, manifest


def actions(manifest: dict[str, Any]) -> list[str]:
    return [call["action"] for call in manifest["calls"]]


# --- import, then plan: no changes ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_plan_of_an_imported_key_reports_no_changes(
    cli: CliRunner, emulator: EmulatorHandle, kind: str
) -> None:
    key_id = KINDS[kind](emulator.backend)
    body = import_manifest(cli, key_id, "--namespace", "prod")
    assert body["spec"]["keyId"] == key_id
    assert body["metadata"] == {"name": key_id.lower(), "namespace": "prod"}
    result = cli("plan", "-f", "-", stdin=yaml.safe_dump(body))
    assert result.code == 0, result.out
    assert f"key {key_id} in {emulator.region_id}: no changes" in result.out


def test_import_reads_the_whole_key_into_the_spec(cli: CliRunner, emulator: EmulatorHandle) -> None:
    key = emulator.backend.create_key(
        description="orders",
        enable_automatic_rotation=True,
        rotation_interval="30d",
        policy=POLICY,
        tags={"team": "payments"},
    )
    emulator.backend.set_deletion_protection(enable=True, key_id=key.key_id)
    spec = import_manifest(cli, key.key_id, "--name", "orders")["spec"]
    assert {k: v for k, v in spec.items() if k != "policy"} == {
        "keyId": key.key_id,
        "regionId": emulator.region_id,
        "keySpec": "Aliyun_AES_256",
        "keyUsage": "ENCRYPT/DECRYPT",
        "origin": "Aliyun_KMS",
        "protectionLevel": "SOFTWARE",
        "description": "orders",
        "status": "Enabled",
        "enableAutomaticRotation": True,
        "rotationInterval": "2592000s",
        "enableDeletionProtection": True,
        "tags": {"team": "payments"},
        "deletionPolicy": "Retain",
    }
    assert json.loads(spec["policy"]) == json.loads(POLICY)
    assert set(cli_calls(emulator)[-3:]) == {"DescribeKey", "ListTagResources", "GetKeyPolicy"}


def test_import_refuses_a_key_pending_deletion(cli: CliRunner, emulator: EmulatorHandle) -> None:
    key_id = emulator.backend.create_key().key_id
    emulator.backend.schedule_key_deletion(key_id, 7)
    result = cli("import", key_id)
    assert result.code == 1
    assert "pending deletion" in result.err
    assert "CancelKeyDeletion" in result.err
    assert result.out == ""


def test_import_refuses_a_key_another_kmskey_owns(cli: CliRunner, emulator: EmulatorHandle) -> None:
    key_id = emulator.backend.create_key(tags={names.OWNER_TAG_KEY: "uid-1"}).key_id
    result = cli("import", key_id)
    assert result.code == 1
    assert "already claimed by the KmsKey with UID uid-1" in result.err


def test_import_of_a_missing_key_fails(cli: CliRunner) -> None:
    result = cli("import", "key-doesnotexist0000000000")
    assert result.code == 1
    assert "does not exist" in result.err


# --- import --all -------------------------------------------------------------------------------------------


def _batch(emulator: EmulatorHandle) -> tuple[str, list[str]]:
    """Four keys with one fresh tag key: two importable, one owned by a KmsKey, one pending deletion."""
    tag = f"batch-{secrets.token_hex(4)}"
    b = emulator.backend
    plain = b.create_key(tags={tag: "1"}).key_id
    disabled = _disabled(b, tags={tag: "2"})
    b.create_key(tags={tag: "3", names.OWNER_TAG_KEY: "uid-9"})
    doomed = b.create_key(tags={tag: "4"}).key_id
    b.schedule_key_deletion(doomed, 7)
    return tag, [plain, disabled]


def test_import_all_writes_one_manifest_per_key_and_skips_owned_and_doomed_keys(
    cli: CliRunner, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    tag, importable = _batch(emulator)
    result = cli("import", "--all", "--filter", f"TagKey={tag}", "--output-dir", str(tmp_path / "keys"))
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(f"{k}.yaml" for k in importable)
    assert result.err.count("skipped:") == 2
    assert "already claimed" in result.err
    assert "pending deletion" in result.err
    (tmp_path / "keys" / "README.md").write_text("not a manifest\n")
    (tmp_path / "keys" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")
    planned = cli("plan", "-f", str(tmp_path / "keys"))
    assert planned.code == 0, planned.out
    assert "skipped ConfigMap cm" in planned.out
    assert "Plan: 0 to create, 0 to update, 2 unchanged, 0 with errors." in planned.out
    again = cli("import", "--all", "--filter", f"TagKey={tag}", "--output-dir", str(tmp_path / "keys"))
    assert again.code == 1
    assert "not overwriting" in again.err


def test_import_all_streams_documents_that_plan_reads_from_stdin(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    tag, importable = _batch(emulator)
    result = cli("import", "--all", "--filter", f"TagKey={tag}", "--filter", "KeyState=Disabled", "-n", "x")
    assert result.code == 0, result.err
    documents = list(yaml.safe_load_all(result.out))
    assert [d["spec"]["keyId"] for d in documents] == [importable[1]]
    assert documents[0]["spec"]["status"] == "Disabled"
    assert cli("plan", "-f", "-", stdin=result.out).code == 0


def test_import_all_passes_filters_to_list_keys(cli: CliRunner, emulator: EmulatorHandle) -> None:
    tag, _ = _batch(emulator)
    cli("import", "--all", "--filter", f"TagKey={tag}", "--filter", "KeySpec=Aliyun_AES_256")
    listing = [r for r in emulator.calls() if r.action == "ListKeys"][-1]
    assert json.loads(listing.params["Filters"]) == [
        {"Key": "TagKey", "Values": [tag]},
        {"Key": "KeySpec", "Values": ["Aliyun_AES_256"]},
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import"], "either KEY_ID or --all"),
        (["import", "k", "--all"], "either KEY_ID or --all"),
        (["import", "--all", "--name", "x"], "--name names one resource"),
        (["import", "k", "--filter", "KeyState=Enabled"], "go with --all"),
        (["import", "--all", "--filter", "KeyState"], "KEY=VALUE"),
    ],
)
def test_import_usage_errors_exit_1(cli: CliRunner, argv: list[str], message: str) -> None:
    result = cli(*argv)
    assert result.code == 1
    assert message in result.err


# --- plan of an edited manifest: exactly the expected calls -----------------------------------------------


def _edit(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec.update(fields)


def _drop_tag(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec["tags"].pop(key)


EDITS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], None], list[str]]] = {
    "description": ({"description": "before"}, _edit(description="after"), ["UpdateKeyDescription"]),
    "rotation interval": (
        {"enable_automatic_rotation": True, "rotation_interval": "30d"},
        _edit(rotationInterval="60d"),
        ["UpdateRotationPolicy"],
    ),
    "rotation on": (
        {},
        _edit(enableAutomaticRotation=True, rotationInterval="365d"),
        ["UpdateRotationPolicy"],
    ),
    "rotation off": (
        {"enable_automatic_rotation": True, "rotation_interval": "30d"},
        lambda spec: (spec.update(enableAutomaticRotation=False), spec.pop("rotationInterval")),
        ["UpdateRotationPolicy"],
    ),
    "disable": ({}, _edit(status="Disabled"), ["DisableKey"]),
    "deletion protection": ({}, _edit(enableDeletionProtection=True), ["SetDeletionProtection"]),
    "policy": ({"policy": POLICY}, _edit(policy=OTHER_POLICY), ["SetKeyPolicy"]),
    "tag added": ({"tags": {"a": "1"}}, _edit(tags={"a": "1", "b": "2"}), ["TagResources"]),
    "tag removed": ({"tags": {"a": "1", "b": "2"}}, _drop_tag("b"), ["UntagResources"]),
    "tag value changed": ({"tags": {"a": "1"}}, _edit(tags={"a": "2"}), ["TagResources"]),
    "several fields, in the planner's order": (
        {"description": "before"},
        _edit(description="after", status="Disabled", enableDeletionProtection=True),
        ["UpdateKeyDescription", "SetDeletionProtection", "DisableKey"],
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_plan_of_an_edited_manifest_lists_exactly_the_expected_calls(
    cli: CliRunner, emulator: EmulatorHandle, edit: str
) -> None:
    create, change, expected = EDITS[edit]
    key_id = emulator.backend.create_key(**create).key_id
    body = import_manifest(cli, key_id)
    change(body["spec"])
    code, manifest = plan_json(cli, body)
    assert code == 2
    assert manifest["action"] == "update"
    assert actions(manifest) == expected
    assert all(call["params"].get("KeyId", key_id) == key_id for call in manifest["calls"])


def test_enabling_a_disabled_key_comes_before_its_rotation_change(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key_id = _disabled(emulator.backend)
    body = import_manifest(cli, key_id)
    body["spec"].update(status="Enabled", enableAutomaticRotation=True, rotationInterval="90d")
    code, manifest = plan_json(cli, body)
    assert code == 2
    assert actions(manifest) == ["EnableKey", "UpdateRotationPolicy"]
    assert manifest["calls"][1]["params"] == {
        "KeyId": key_id,
        "EnableAutomaticRotation": True,
        "RotationInterval": "7776000s",
    }


def test_text_plan_shows_old_and_new_values_and_numbered_calls(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key_id = emulator.backend.create_key(description="before").key_id
    body = import_manifest(cli, key_id, "--name", "orders", "--namespace", "shop")
    body["spec"]["description"] = "after"
    result = cli("plan", "-f", "-", stdin=yaml.safe_dump(body))
    assert result.code == 2
    assert result.out.splitlines() == [
        "KmsKey shop/orders (<stdin>)",
        f"  key {key_id} in {emulator.region_id}: 1 field differs, 1 KMS call",
        "  ~ description: 'before' -> 'after'",
        "  KMS calls, in order:",
        f"    1. UpdateKeyDescription(KeyId='{key_id}', Description='after')",
        f"  note: applying it, the operator first claims key {key_id} for this KmsKey (TagResources "
        "kms.alicloud.dev/owner-*), before any other write",
        "",
        "Plan: 0 to create, 1 to update, 0 unchanged, 0 with errors.",
    ]


def test_a_force_new_edit_is_a_conflict_and_exit_1(cli: CliRunner, emulator: EmulatorHandle) -> None:
    key_id = emulator.backend.create_key(description="before").key_id
    body = import_manifest(cli, key_id)
    body["spec"].update(keySpec="Aliyun_SM4", description="after")
    code, manifest = plan_json(cli, body)
    assert code == 1
    assert manifest["action"] == "error"
    assert [(c["field"], c["actual"], c["desired"]) for c in manifest["conflicts"]] == [
        ("keySpec", "Aliyun_AES_256", "Aliyun_SM4")
    ]
    # The reconciler still applies what it can; the plan says so.
    assert actions(manifest) == ["UpdateKeyDescription"]
    text = cli("plan", "-f", "-", stdin=yaml.safe_dump(body)).out
    assert "ForceNew conflicts" in text
    assert "spec.keySpec is 'Aliyun_SM4' but the key has 'Aliyun_AES_256'" in text


def test_observe_mode_reports_differences_but_plans_no_calls(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key_id = emulator.backend.create_key(description="before").key_id
    body = import_manifest(cli, key_id)
    body["spec"].update(description="after", managementPolicy="Observe")
    code, manifest = plan_json(cli, body)
    assert code == 0
    assert manifest["changes"] == [{"field": "description", "old": "before", "new": "after"}]
    assert manifest["calls"] == []


def test_an_external_key_asked_to_be_enabled_waits_for_key_material(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key_id = emulator.backend.create_key(origin="EXTERNAL").key_id
    body = import_manifest(cli, key_id)
    body["spec"]["status"] = "Enabled"
    code, manifest = plan_json(cli, body)
    assert code == 2
    assert manifest["calls"] == []
    assert [b["reason"] for b in manifest["blocked"]] == ["KeyMaterialPending"]


# --- plan: create, errors --------------------------------------------------------------------------------


def test_plan_of_a_new_manifest_shows_create_key_and_its_follow_ups(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    before = len(emulator.backend.keys)
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": "fresh", "namespace": "prod"},
        "spec": {"description": "fresh", "tags": {"team": "a"}, "status": "Disabled"},
    }
    code, manifest = plan_json(cli, body)
    assert code == 2
    assert manifest["action"] == "create"
    assert actions(manifest) == ["CreateKey", "DisableKey"]
    create = manifest["calls"][0]["params"]
    assert create["Description"] == "fresh"
    assert {t["TagKey"]: t["TagValue"] for t in json.loads(create["Tags"])} == {
        names.OWNER_TAG_KEY: "<metadata.uid>",
        names.OWNER_CLUSTER_TAG_KEY: "<cluster ID>",
        names.OWNER_NAMESPACE_TAG_KEY: "prod",
        names.OWNER_NAME_TAG_KEY: "fresh",
        "team": "a",
    }
    assert len(emulator.backend.keys) == before
    text = cli("plan", "-f", "-", stdin=yaml.safe_dump(body)).out
    assert f"would create a new key in {emulator.region_id}" in text
    assert "1. CreateKey(KeySpec='Aliyun_AES_256'" in text
    assert "2. DisableKey(KeyId='<new key ID>')" in text


def test_plan_of_a_missing_key_is_an_error(cli: CliRunner) -> None:
    body = {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": {"name": "gone"}}
    body["spec"] = {"keyId": "key-doesnotexist0000000000"}
    code, manifest = plan_json(cli, body)
    assert code == 1
    assert "does not exist" in manifest["errors"][0]
    assert "never recreates" in manifest["errors"][0]


def test_plan_of_a_key_pending_deletion_is_an_error(cli: CliRunner, emulator: EmulatorHandle) -> None:
    key_id = emulator.backend.create_key().key_id
    emulator.backend.schedule_key_deletion(key_id, 7)
    body = {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": {"name": "doomed"}}
    body["spec"] = {"keyId": key_id}
    code, manifest = plan_json(cli, body)
    assert code == 1
    assert "pending deletion" in manifest["errors"][0]


def test_plan_of_an_invalid_spec_is_an_error_and_reads_nothing(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    calls_before = len(cli_calls(emulator))
    body = {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": {"name": "bad"}}
    body["spec"] = {"keySpec": "EC_P256", "keyUsage": "ENCRYPT/DECRYPT", "status": "PendingDeletion"}
    code, manifest = plan_json(cli, body)
    assert code == 1
    assert [e.split(":")[1].strip() for e in manifest["errors"]] == ["spec.status", "spec.keyUsage"]
    assert len(cli_calls(emulator)) == calls_before


def test_one_error_among_several_manifests_makes_the_exit_code_1(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    clean = import_manifest(cli, emulator.backend.create_key().key_id)
    pending = copy.deepcopy(clean)
    pending["metadata"]["name"] = "pending"
    pending["spec"]["description"] = "changed"
    broken = {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": {"name": "broken"}}
    broken["spec"] = {"keyId": "key-doesnotexist0000000000"}
    assert cli("plan", "-f", "-", stdin=yaml.safe_dump_all([clean, pending])).code == 2
    result = cli("plan", "-f", "-", "-o", "json", stdin=yaml.safe_dump_all([clean, pending, broken]))
    assert result.code == 1
    assert result.json()["summary"] == {"create": 0, "update": 1, "none": 1, "error": 1}


def test_plan_needs_a_manifest_or_a_live_resource(cli: CliRunner) -> None:
    result = cli("plan")
    assert result.code == 1
    assert "-f FILE" in result.err


def test_plan_of_a_missing_file_is_an_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("plan", "-f", str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert "nope.yaml" in result.err


# --- read-only ------------------------------------------------------------------------------------------


def test_plan_never_calls_a_write_action_even_when_everything_differs(
    cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key_id = emulator.backend.create_key(description="before", policy=POLICY, tags={"a": "1"}).key_id
    body = import_manifest(cli, key_id)
    body["spec"].update(
        description="after",
        enableDeletionProtection=True,
        policy=OTHER_POLICY,
        tags={"b": "2"},
        status="Disabled",
    )
    fresh = {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": {"name": "new"}}
    fresh["spec"] = {"description": "new", "status": "Disabled", "enableDeletionProtection": True}
    keys_before = len(emulator.backend.keys)
    start = len(cli_calls(emulator))

    result = cli("plan", "-f", "-", "-o", "json", stdin=yaml.safe_dump_all([body, fresh]))

    assert result.code == 2
    planned = [a for m in result.json()["manifests"] for a in actions(m)]
    assert planned == [
        "UpdateKeyDescription",
        "SetDeletionProtection",
        "SetKeyPolicy",
        "UntagResources",
        "TagResources",
        "DisableKey",
        "CreateKey",
        "SetDeletionProtection",
        "DisableKey",
    ]
    made = cli_calls(emulator)[start:]
    assert made == ["DescribeKey", "ListTagResources", "GetKeyPolicy"]
    assert set(made) <= READ_ONLY_ACTIONS
    key = emulator.backend.describe_key(key_id)
    assert (key.description, key.key_state, key.deletion_protection) == ("before", "Enabled", False)
    assert len(emulator.backend.keys) == keys_before


# --- as a user runs it --------------------------------------------------------------------------------------


def test_import_then_plan_as_subprocesses(cli_env: dict[str, str], emulator: EmulatorHandle) -> None:
    key_id = emulator.backend.create_key(description="cli", tags={"team": "a"}, policy=POLICY).key_id
    env = child_environment({**cli_env, "PYTHONPATH": str(REPO_ROOT / "operator")})

    def kmskey_operator(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kmskey_operator.cli", *args]
        return subprocess.run(command, input=stdin, env=env, capture_output=True, text=True, timeout=60)

    imported = kmskey_operator("import", key_id)
    assert imported.returncode == 0, imported.stderr
    planned = kmskey_operator("plan", "-f", "-", stdin=imported.stdout)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "no changes" in planned.stdout
    edited = kmskey_operator(
        "plan", "-f", "-", stdin=imported.stdout.replace("description: cli", "description: x")
    )
    assert edited.returncode == 2
    assert "UpdateKeyDescription" in edited.stdout
    assert os.environ.get("KMS_ENDPOINT") == emulator.endpoint  # the in-process env is still the fixture's


# --- a live resource (what --from-cluster reads), without a cluster -----------------------------------------


def _live(uid: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": "live", "namespace": "ns", "uid": uid},
        "spec": {"description": "live"},
        "status": status,
    }


def _plan_live(body: dict[str, Any]) -> ManifestPlan:
    settings = Settings.from_env()
    return asyncio.run(
        plan_manifest(ReadOnlyGateway(settings), settings, Manifest("cluster", body), live=body)
    )


def test_a_live_resource_without_status_key_id_finds_its_key_by_the_ownership_tag(
    cli_env: dict[str, str], emulator: EmulatorHandle
) -> None:
    uid = f"uid-{secrets.token_hex(4)}"
    key_id = emulator.backend.create_key(description="live", tags={names.OWNER_TAG_KEY: uid}).key_id
    plan = _plan_live(_live(uid, {}))
    assert plan.key_id == key_id
    assert plan.exit_code == 0
    assert "found key" in plan.notes[0]


def test_a_live_resource_without_any_key_would_create_one_tagged_with_its_uid(
    cli_env: dict[str, str], emulator: EmulatorHandle
) -> None:
    plan = _plan_live(_live("uid-never-created", {}))
    assert plan.creates
    tags = {t["TagKey"]: t["TagValue"] for t in json.loads(plan.calls[0].params["Tags"])}
    assert tags[names.OWNER_TAG_KEY] == "uid-never-created"
    assert set(tags) == {
        names.OWNER_TAG_KEY,
        names.OWNER_CLUSTER_TAG_KEY,
        names.OWNER_NAMESPACE_TAG_KEY,
        names.OWNER_NAME_TAG_KEY,
    }


def test_a_live_resource_whose_key_lacks_its_ownership_tag_is_an_error(
    cli_env: dict[str, str], emulator: EmulatorHandle
) -> None:
    key_id = emulator.backend.create_key(description="live").key_id
    plan = _plan_live(_live("uid-1", {"keyId": key_id}))
    assert plan.exit_code == 1
    assert "is not this resource's (it carries no claim)" in plan.errors[0]
