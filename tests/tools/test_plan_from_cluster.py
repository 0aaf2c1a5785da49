"""`kmskey-operator plan --from-cluster`: plan a live KmsKey that the real operator reconciled."""

from __future__ import annotations

import yaml

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, wait_ready
from tests.harness.operator import OperatorProcess
from tests.tools.conftest import CliRunner


def edited(namespace: str, name: str, spec: dict[str, object]) -> str:
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return yaml.safe_dump(body)


def test_plan_of_a_reconciled_resource_reports_no_changes(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, cli: CliRunner, emulator: EmulatorHandle
) -> None:
    spec = {"description": "live", "tags": {"team": "a"}}
    apply(kubectl, namespace, "live", spec)
    key_id = wait_ready(kubectl, namespace, "live")["status"]["keyId"]

    result = cli("plan", "--from-cluster", f"{namespace}/live")
    assert result.code == 0, result.out + result.err
    assert f"KmsKey {namespace}/live (cluster {namespace}/live)" in result.out
    assert f"key {key_id} in {emulator.region_id}: no changes" in result.out

    # The same resource, edited in a file: the plan is the edit's, checked against admission's rules.
    changed = cli(
        "plan",
        "-f",
        "-",
        "--from-cluster",
        f"{namespace}/live",
        "-o",
        "json",
        stdin=edited(namespace, "live", {**spec, "description": "edited"}),
    )
    assert changed.code == 2
    assert [c["action"] for c in changed.json()["manifests"][0]["calls"]] == ["UpdateKeyDescription"]

    refused = cli(
        "plan",
        "-f",
        "-",
        "--from-cluster",
        f"{namespace}/live",
        stdin=edited(namespace, "live", {**spec, "keySpec": "Aliyun_SM4"}),
    )
    assert refused.code == 1
    assert "admission would refuse this update" in refused.out
    assert "spec.keySpec: cannot change once the KMS key exists" in refused.out


def test_plan_from_cluster_of_a_missing_resource_fails(
    operator: OperatorProcess, namespace: str, cli: CliRunner
) -> None:
    result = cli("plan", "--from-cluster", f"{namespace}/nothing-here")
    assert result.code == 1
    assert f"KmsKey {namespace}/nothing-here not found" in result.err


def test_plan_from_cluster_refuses_a_file_for_another_resource(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, cli: CliRunner
) -> None:
    apply(kubectl, namespace, "one", {"description": "one"})
    wait_ready(kubectl, namespace, "one")
    result = cli("plan", "-f", "-", "--from-cluster", f"{namespace}/one", stdin=edited(namespace, "two", {}))
    assert result.code == 1
    assert "not " + f"{namespace}/one" in result.err
