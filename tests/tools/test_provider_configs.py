"""`plan` and `import` with a provider config: KMS as that config's account and credentials see it.

The config and its Secret are read from the real API server with the user's kubeconfig, the credentials go
through the emulator's STS, and the tools still only read KMS (the cli fixture checks the call log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.conftest import Kubectl
from tests.tools.conftest import CLI_ACCESS_KEY, OPERATOR_ACCESS_KEY, CliRunner

TEAM = "1111111111111111"
TEAM_KEY = ("ak-team", "team-secret-0123456789")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    document = {
        "accounts": [
            {
                "accountId": TEAM,
                "users": [{"name": "team", "accessKeys": [{"id": TEAM_KEY[0], "secret": TEAM_KEY[1]}]}],
            }
        ]
    }
    with run_emulator(
        access_keys=[OPERATOR_ACCESS_KEY, CLI_ACCESS_KEY], accounts=parse_document(document)
    ) as emu:
        yield emu


@pytest.fixture
def team_config(
    kubectl: Kubectl,
    namespace: str,
    crd_installed: list[str],
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorHandle,
) -> Iterator[str]:
    monkeypatch.setenv("KMSKEY_STS_ENDPOINT", emulator.endpoint)
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "kms-keys",
        f"--from-literal=accessKeyId={TEAM_KEY[0]}",
        f"--from-literal=accessKeySecret={TEAM_KEY[1]}",
    )
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"credentials": {"source": "Secret", "secretRef": {"name": "kms-keys"}}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))
    yield namespace
    kubectl("-n", namespace, "delete", "kmsproviderconfigs", "--all", check=False)


def manifest(namespace: str | None, spec: dict[str, object]) -> str:
    metadata: dict[str, object] = {"name": "orders"}
    if namespace:
        metadata["namespace"] = namespace
    return yaml.safe_dump(
        {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "metadata": metadata, "spec": spec}
    )


def test_plan_reads_the_key_in_the_configs_account(
    team_config: str, cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key = emulator.backend_for(TEAM).create_key(description="in the team's account")
    spec = {"keyId": key.key_id, "description": "in the team's account"}

    as_operator = cli("plan", "-f", "-", stdin=manifest(None, spec))
    assert as_operator.code == 1
    assert "does not exist" in as_operator.out  # not in the operator's own account

    named = cli("plan", "-f", "-", "--provider-config", f"{team_config}/default", stdin=manifest(None, spec))
    assert named.code == 0, named.out + named.err
    assert "no changes" in named.out
    assert f"KmsProviderConfig {team_config}/default (account {TEAM})" in named.out
    team_calls = [r for r in emulator.calls() if r.access_key_id == TEAM_KEY[0]]
    assert {r.account_id for r in team_calls} == {TEAM}
    assert {r.action for r in team_calls} <= {"DescribeKey", "ListTagResources", "GetKeyPolicy"}

    # A manifest naming its config is planned with it, without the flag.
    declared = cli(
        "plan",
        "-f",
        "-",
        "-o",
        "json",
        stdin=manifest(
            team_config, {**spec, "description": "changed", "providerConfigRef": {"name": "default"}}
        ),
    )
    assert declared.code == 2, declared.out + declared.err
    assert [c["action"] for c in declared.json()["manifests"][0]["calls"]] == ["UpdateKeyDescription"]


def test_import_with_a_config_writes_a_manifest_that_names_it(
    team_config: str, cli: CliRunner, emulator: EmulatorHandle
) -> None:
    key = emulator.backend_for(TEAM).create_key(description="imported")

    result = cli("import", key.key_id, "--provider-config", f"{team_config}/default", "--name", "orders")
    assert result.code == 0, result.err
    body = yaml.safe_load(result.out)
    assert body["metadata"] == {"name": "orders", "namespace": team_config}
    assert body["spec"]["keyId"] == key.key_id
    assert body["spec"]["providerConfigRef"] == {"name": "default"}
    assert body["spec"]["description"] == "imported"


def test_a_config_that_does_not_exist_is_an_error_naming_it(team_config: str, cli: CliRunner) -> None:
    result = cli("import", "some-key", "--provider-config", f"{team_config}/nope")
    assert result.code == 1
    assert f"KmsProviderConfig {team_config}/nope does not exist" in result.err
