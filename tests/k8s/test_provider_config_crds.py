"""The KmsProviderConfig and ClusterKmsProviderConfig CRDs on the real kube-apiserver: schema, CEL."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl

pytestmark = pytest.mark.k8s

CRDS = Path(__file__).resolve().parents[2] / "crds"
ROLE = "acs:ram::2222222222222222:role/kms"
OIDC = "acs:ram::2222222222222222:oidc-provider/cluster"


def config(kind: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def apply(kubectl: Kubectl, namespace: str | None, document: str) -> Any:
    flags = ["-n", namespace] if namespace else []
    return kubectl("apply", *flags, "-f", "-", input=document, check=False)


@pytest.mark.parametrize(
    "path", ["kmsproviderconfigs.kms.alicloud.dev.yaml", "clusterkmsproviderconfigs.kms.alicloud.dev.yaml"]
)
def test_every_field_is_documented_for_kubectl_explain(path: str) -> None:
    document = yaml.safe_load((CRDS / path).read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], where: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            if name not in ("apiVersion", "kind", "metadata") and len(child.get("description", "")) < 10:
                missing.append(f"{where}.{name}")
            walk(child, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    walk(schema, "")
    assert missing == []


def test_a_namespaced_config_is_stored_with_defaults_and_listed_with_its_columns(
    crd_installed: list[str], kubectl: Kubectl, namespace: str
) -> None:
    name = f"c-{secrets.token_hex(3)}"
    result = apply(
        kubectl,
        namespace,
        config(
            "KmsProviderConfig",
            name,
            {"regionId": "cn-shanghai", "credentials": {"source": "Secret", "secretRef": {"name": "keys"}}},
        ),
    )
    assert result.returncode == 0, result.stderr

    stored = json.loads(kubectl("get", "kpc", name, "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["credentials"]["secretRef"] == {
        "name": "keys",
        "accessKeyIdKey": "accessKeyId",
        "accessKeySecretKey": "accessKeySecret",
    }
    header = kubectl("get", "kmsproviderconfigs", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "SOURCE", "ACCOUNT", "REGION", "READY", "AGE"]
    wide = kubectl("get", "kpc", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-2:] == ["IDENTITY", "REASON"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"credentials": {"source": "Secret"}}, "source Secret needs credentials.secretRef"),
        ({"credentials": {"source": "RRSA"}}, "source RRSA needs credentials.rrsa"),
        ({"credentials": {"source": "AssumeRole"}}, "source AssumeRole needs credentials.assumeRole"),
        (
            {
                "credentials": {
                    "source": "AssumeRole",
                    "assumeRole": {"roleArn": ROLE, "baseCredentials": {"source": "Secret"}},
                }
            },
            "baseCredentials source Secret needs baseCredentials.secretRef",
        ),
        ({"credentials": {"source": "Vault"}}, "Unsupported value"),
        (
            {"credentials": {"source": "RRSA", "rrsa": {"roleArn": "role/kms", "oidcProviderArn": OIDC}}},
            "roleArn",
        ),
        # A namespaced config has no way to name another namespace's Secret.
        (
            {"credentials": {"source": "Secret", "secretRef": {"name": "keys", "namespace": "other"}}},
            'unknown field "spec.credentials.secretRef.namespace"',
        ),
    ],
)
def test_the_schema_refuses_incomplete_or_foreign_credentials(
    crd_installed: list[str], kubectl: Kubectl, namespace: str, spec: dict[str, Any], message: str
) -> None:
    result = apply(kubectl, namespace, config("KmsProviderConfig", "bad", spec))
    assert result.returncode != 0
    assert message in result.stderr


def test_a_cluster_config_needs_a_namespace_selector_and_may_name_a_secrets_namespace(
    crd_installed: list[str], kubectl: Kubectl
) -> None:
    name = f"shared-{secrets.token_hex(3)}"
    credentials = {"source": "Secret", "secretRef": {"name": "keys", "namespace": "kms-system"}}
    refused = apply(kubectl, None, config("ClusterKmsProviderConfig", name, {"credentials": credentials}))
    assert refused.returncode != 0
    assert "namespaceSelector" in refused.stderr

    spec = {"namespaceSelector": {"matchLabels": {"kms": "shared"}}, "credentials": credentials}
    accepted = apply(kubectl, None, config("ClusterKmsProviderConfig", name, spec))
    assert accepted.returncode == 0, accepted.stderr
    try:
        explained = kubectl("explain", "clusterkmsproviderconfig.spec.credentials.rrsa").stdout
        assert "serviceAccountRef" in explained
        assert "operator's own" in explained
    finally:
        kubectl("delete", "ckpc", name)
