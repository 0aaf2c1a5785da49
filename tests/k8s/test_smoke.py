"""Smoke tests against the real kube-apiserver: the CRD, kubectl, and the local-only network rule."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from tests.conftest import Kubectl
from tests.harness.controlplane import ControlPlane, run_kubectl

pytestmark = pytest.mark.k8s

CRD_NAME = "kmskeys.kms.alicloud.dev"


def minimal_kmskey(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": name},
            "spec": {"keySpec": "Aliyun_AES_256", "description": "smoke"},
        }
    )


def test_api_server_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    assert control_plane.get_json("/version")["gitVersion"] == "v1.34.4"


def test_kubectl_is_the_pinned_client_and_sees_the_server(kubectl: Kubectl) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == "v1.34.5"
    assert versions["serverVersion"]["gitVersion"] == "v1.34.4"


def test_crd_becomes_established(crd_installed: list[str], kubectl: Kubectl) -> None:
    assert CRD_NAME in crd_installed
    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    assert version["subresources"] == {"status": {}}


def test_kubectl_apply_creates_a_kmskey_that_get_lists(
    crd_installed: list[str], kubectl: Kubectl, namespace: str
) -> None:
    applied = kubectl("apply", "-n", namespace, "-f", "-", input=minimal_kmskey("smoke"))
    assert "kmskey.kms.alicloud.dev/smoke created" in applied.stdout

    listed = json.loads(kubectl("get", "kmskeys", "-n", namespace, "-o", "json").stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["smoke"]
    assert listed["items"][0]["spec"]["description"] == "smoke"

    table = kubectl("get", "kmskeys", "-n", namespace).stdout
    assert table.splitlines()[1].startswith("smoke ")


def test_kubectl_explain_describes_the_spec(crd_installed: list[str], kubectl: Kubectl) -> None:
    explained = kubectl("explain", "kmskey.spec").stdout
    assert "KIND:" in explained
    assert "KmsKey" in explained
    assert "keySpec" in explained


def test_token_request_gives_a_service_account_kubeconfig(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl("create", "serviceaccount", "smoke", "-n", namespace)
    sa_config = control_plane.service_account_kubeconfig(namespace, "smoke", tmp_path / "sa.kubeconfig")

    whoami = json.loads(run_kubectl(sa_config, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:smoke"
    # RBAC is on: a fresh ServiceAccount may not list namespaces.
    denied = run_kubectl(sa_config, "get", "namespaces", check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr


def test_control_plane_talks_only_to_loopback(control_plane: ControlPlane) -> None:
    peers = {record.name: tcp_peers(record.pid) for record in control_plane.records}
    assert peers["kube-apiserver"], "expected at least the apiserver's connections to etcd"
    outside = {name: [p for p in addresses if not p.is_loopback] for name, addresses in peers.items()}
    assert outside == {"etcd": [], "kube-apiserver": []}


def tcp_peers(pid: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Remote addresses of the connected TCP sockets (IPv4 and IPv6) that `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    peers: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_hex, inode = fields[2].split(":")[0], fields[9]
            if inode not in inodes:
                continue
            # /proc/net/tcp{,6}: the address as little-endian 32-bit words in hex.
            raw = b"".join(bytes.fromhex(remote_hex[i : i + 8])[::-1] for i in range(0, len(remote_hex), 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if not address.is_unspecified:  # a listening socket has no peer
                peers.append(address)
    return peers
