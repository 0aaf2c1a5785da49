"""The product as users run it: the image built from the Dockerfile, `helm install`ed with the chart's
defaults (plus only what points it at the emulator), run by a real kubelet on a real node.

The tests run in file order against one release: install → Ready through its probes (issue #16: the image
crashed on start as uid 65532 with the defaults) → the pod's identity and root filesystem → the webhook
through its Service → the seed example → a namespace deleted with KmsKeys inside → `helm test` → an upgrade
that rolls the pod → HA with two replicas → a rollout of both with admission up → `helm uninstall`.
KMS is checked through the official SDK.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.chart.helm import CHART, REPO_ROOT, helm
from tests.e2e.conftest import READ_PREFIXES, apply, get, wait_ready
from tests.harness.node import NodeCluster
from tests.node.conftest import wait_until

# Starting the node and waiting for pods on two shared cores can take minutes: far above the suite's 300 s.
pytestmark = pytest.mark.timeout(900)

SYSTEM = "kmskey-system"
RELEASE = "kms"
DEPLOYMENT = "kms-kmskey-operator"
OPERATOR_PODS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
POD_READY_SECONDS = 240.0  # a cold node on two shared cores; typically 10-20 s
measured: dict[str, float] = {}


def operator_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("-n", SYSTEM, "get", "pods", "-l", OPERATOR_PODS, "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in pod["status"].get("conditions", []) if c["type"] == kind), {})


def pod_logs(cluster: NodeCluster, pod: str, previous: bool = False) -> str:
    args = ["-n", SYSTEM, "logs", pod, "--tail=80"] + (["--previous"] if previous else [])
    result = cluster.kubectl(*args, check=False)
    return result.stdout + result.stderr


def wait_for_ready_pods(
    cluster: NodeCluster, count: int, *, exclude: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """`count` Ready operator pods (none of `exclude`), failing at once with the logs if one restarts."""
    deadline = time.monotonic() + POD_READY_SECONDS
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = [p for p in operator_pods(cluster) if p["metadata"]["name"] not in exclude]
        for pod in pods:
            for status in pod["status"].get("containerStatuses", []):
                if status["restartCount"] > 0 or status["state"].get("terminated"):
                    name = pod["metadata"]["name"]
                    time.sleep(2)  # let the kubelet finish writing the log of the container that stopped
                    log = pod_logs(cluster, name) + pod_logs(cluster, name, previous=True)
                    raise AssertionError(
                        f"operator pod {name} stopped ({json.dumps(status['state'])}, "
                        f"{status['restartCount']} restarts); its log:\n{log}"
                    )
        ready = [p for p in pods if pod_condition(p, "Ready").get("status") == "True"]
        if len(ready) == count and len(pods) == count:
            return ready
        time.sleep(1)
    raise AssertionError(
        f"{count} Ready operator pod(s) not within {POD_READY_SECONDS:.0f}s; pods:\n"
        + json.dumps([{"name": p["metadata"]["name"], "status": p["status"]} for p in pods], indent=1)[-4000:]
        + "\n"
        + cluster.kubectl("-n", SYSTEM, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout[
            -3000:
        ]
    )


def describe(kms: KmsClient, key_id: str) -> kms_models.DescribeKeyResponseBodyKeyMetadata:
    return kms.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata


def all_keys(kms: KmsClient) -> dict[str, str]:
    """Every key in KMS, as key ID -> KeyState."""
    found: dict[str, str] = {}
    page = 1
    while True:
        body = kms.list_keys(kms_models.ListKeysRequest(page_number=page, page_size=100)).body
        for key in body.keys.key:
            found[key.key_id] = describe(kms, key.key_id).key_state
        if page * 100 >= body.total_count:
            return found
        page += 1


def helm_node(cluster: NodeCluster, *args: str, check: bool = True) -> Any:
    return helm(*args, kubeconfig=cluster.kubeconfig, check=check, timeout=600)


def team_namespace(cluster: NodeCluster, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    return name


def metrics_of(cluster: NodeCluster, pod: dict[str, Any]) -> str:
    address = cluster.forward(pod["status"]["podIP"], 8080)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def active_replica(cluster: NodeCluster, pod: dict[str, Any]) -> float:
    for line in metrics_of(cluster, pod).splitlines():
        if line.startswith("kmskey_active_replica "):
            return float(line.split()[1])
    raise AssertionError(f"{pod['metadata']['name']} has no kmskey_active_replica metric")


@pytest.fixture(scope="module")
def release(node_cluster: NodeCluster, node_emulator: EmulatorHandle) -> dict[str, Any]:
    """`helm install` with the defaults: the credentials Secret they name, the emulator's address and CA."""
    kubectl = node_cluster.kubectl
    kubectl("create", "namespace", SYSTEM)
    kubectl(
        "-n",
        SYSTEM,
        "create",
        "secret",
        "generic",
        "kmskey-operator-credentials",  # the chart's default credentials.secret.name
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={node_emulator.access_key_id}",
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={node_emulator.access_key_secret}",
    )
    # HTTPS is the chart's default; the emulator's CA goes in as the chart's kms.caBundle.
    assert node_emulator.ca_file is not None
    kubectl(
        "-n", SYSTEM, "create", "configmap", "kms-emulator-ca", f"--from-file=ca.crt={node_emulator.ca_file}"
    )
    values = {"kms.endpoint": node_emulator.endpoint, "kms.caBundle.configMapName": "kms-emulator-ca"}
    began = time.monotonic()
    helm_node(
        node_cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        *[arg for key, value in values.items() for arg in ("--set", f"{key}={value}")],
    )
    measured["helm install (no --wait)"] = time.monotonic() - began
    return {"values": values, "installed_at": began}


def test_the_default_install_becomes_ready_through_its_own_probes(
    release: dict[str, Any], node_cluster: NodeCluster
) -> None:
    (pod,) = wait_for_ready_pods(node_cluster, 1)
    measured["helm install → pod Ready"] = time.monotonic() - release["installed_at"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "kmskey-operator:0.1.0"  # the chart's default image, the one built here
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    assert status["restartCount"] == 0
    started = status["state"]["running"]["startedAt"]
    ready_at = pod_condition(pod, "Ready")["lastTransitionTime"]
    print(f"\ncontainer started {started}, pod Ready {ready_at}; measured: {measured}")
    env = {e["name"] for e in container.get("env", [])}
    assert "POD_ID" not in env  # the default (no HA) is the case that crashed on start (issue #16)


def test_the_operator_runs_as_uid_65532_without_passwd_entry_on_a_read_only_root_without_pip(
    release: dict[str, Any], node_cluster: NodeCluster
) -> None:
    (pod,) = wait_for_ready_pods(node_cluster, 1)
    probe = (
        "import os, pwd\n"
        "print('ids', os.getuid(), os.getgid())\n"
        "try:\n    pwd.getpwuid(os.getuid())\n    print('passwd entry')\n"
        "except KeyError:\n    print('no passwd entry')\n"
        "try:\n    open('/opt/kmskey-operator/written', 'w')\n"
        "except OSError as e:\n    print('root', e.strerror)\n"
        "print('pid1', open('/proc/1/cmdline').read().replace(chr(0), ' '))\n"
        "print('uid1', [l for l in open('/proc/1/status') if l.startswith('Uid:')][0].split()[1])\n"
        "from importlib.util import find_spec\n"
        "print('pip', find_spec('pip'), 'setuptools', find_spec('setuptools'))\n"
    )
    out = node_cluster.kubectl(
        "-n", SYSTEM, "exec", pod["metadata"]["name"], "--", "python3", "-c", probe, timeout=60
    ).stdout
    assert "ids 65532 65532" in out, out
    assert "no passwd entry" in out, out
    assert "root Read-only file system" in out, out
    assert "kmskey-operator run" in out, out
    assert "uid1 65532" in out, out
    assert "pip None setuptools None" in out, out  # neither is in the image built on the Debian base


def test_the_webhook_through_its_service_refuses_a_forcenew_edit(
    release: dict[str, Any], node_cluster: NodeCluster, node_kms: KmsClient
) -> None:
    kubectl = node_cluster.kubectl
    configuration = json.loads(
        kubectl("get", "validatingwebhookconfiguration", DEPLOYMENT, "-o", "json").stdout
    )
    client_config = configuration["webhooks"][0]["clientConfig"]
    assert client_config["service"]["name"] == f"{DEPLOYMENT}-webhook"
    assert "url" not in client_config
    namespace = team_namespace(node_cluster, "team-a")
    apply(kubectl, namespace, "orders", {"keySpec": "Aliyun_AES_256", "description": "orders"})
    body = wait_ready(kubectl, namespace, "orders", timeout=90)
    assert describe(node_kms, body["status"]["keyId"]).key_spec == "Aliyun_AES_256"
    refused = kubectl(
        "-n",
        namespace,
        "patch",
        "kmskey",
        "orders",
        "--type=merge",
        "-p",
        '{"spec":{"keySpec":"Aliyun_SM4"}}',
        check=False,
    )
    assert refused.returncode != 0
    assert "denied the request" in refused.stderr, refused.stderr
    assert "keySpec" in refused.stderr, refused.stderr
    assert get(kubectl, namespace, "orders")["spec"]["keySpec"] == "Aliyun_AES_256"
    (pod,) = operator_pods(node_cluster)
    log = pod_logs(node_cluster, pod["metadata"]["name"])
    refusals = [line for line in log.splitlines() if "failed permanently" in line]
    assert refusals, log
    assert all('"level": "INFO"' in line for line in refusals), refusals  # an ordinary refusal, not an ERROR


def test_the_seed_example_becomes_ready(
    release: dict[str, Any], node_cluster: NodeCluster, node_kms: KmsClient
) -> None:
    kubectl = node_cluster.kubectl
    namespace = team_namespace(node_cluster, "seed")
    kubectl("-n", namespace, "apply", "-f", str(REPO_ROOT / "examples" / "seed.yaml"))
    body = wait_ready(kubectl, namespace, "seed", timeout=90)
    key = describe(node_kms, body["status"]["keyId"])
    assert key.description == "key description example"
    assert key.dkmsinstance_id == "kst-hzz62ee5fe3b7ifgq5hmg"
    assert key.automatic_rotation == "Enabled"
    assert key.rotation_interval == "604800s"


def test_deleting_a_namespace_with_kmskeys_completes_retaining_and_scheduling_as_declared(
    release: dict[str, Any], node_cluster: NodeCluster, node_kms: KmsClient
) -> None:
    kubectl = node_cluster.kubectl
    namespace = team_namespace(node_cluster, "doomed")
    apply(kubectl, namespace, "kept", {"description": "Retain"})
    apply(
        kubectl,
        namespace,
        "scheduled",
        {"description": "Delete", "deletionPolicy": "Delete", "pendingWindowInDays": 7},
    )
    kept = wait_ready(kubectl, namespace, "kept", timeout=90)["status"]["keyId"]
    scheduled = wait_ready(kubectl, namespace, "scheduled", timeout=90)["status"]["keyId"]
    began = time.monotonic()
    kubectl("delete", "namespace", namespace, "--timeout=240s", timeout=300)
    measured["namespace deletion with 2 KmsKeys"] = time.monotonic() - began
    assert kubectl("get", "namespace", namespace, check=False).returncode != 0
    assert describe(node_kms, kept).key_state == "Enabled"
    assert describe(node_kms, scheduled).key_state == "PendingDeletion"


def test_helm_test_hooks_pass(release: dict[str, Any], node_cluster: NodeCluster) -> None:
    result = helm_node(node_cluster, "test", RELEASE, "-n", SYSTEM, "--logs", "--timeout", "5m", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused as expected" in result.stdout, result.stdout
    assert "kmskey_ samples" in result.stdout, result.stdout


def test_helm_upgrade_with_a_changed_value_rolls_the_pod_and_reconciles_nothing_twice(
    release: dict[str, Any], node_cluster: NodeCluster, node_emulator: EmulatorHandle, node_kms: KmsClient
) -> None:
    kubectl = node_cluster.kubectl
    namespace = team_namespace(node_cluster, "steady")
    apply(kubectl, namespace, "steady", {"description": "survives upgrades"})
    key_id = wait_ready(kubectl, namespace, "steady", timeout=90)["status"]["keyId"]
    (old,) = wait_for_ready_pods(node_cluster, 1)
    keys_before = all_keys(node_kms)
    node_emulator.reset_calls()
    helm_node(
        node_cluster,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--reuse-values",
        "--set",
        "logging.level=DEBUG",
    )
    most_running = 0
    deadline = time.monotonic() + POD_READY_SECONDS
    while time.monotonic() < deadline:
        pods = operator_pods(node_cluster)
        most_running = max(most_running, sum(1 for p in pods if p["status"].get("phase") == "Running"))
        names = {p["metadata"]["name"] for p in pods}
        if names and old["metadata"]["name"] not in names:
            break
        time.sleep(0.5)
    (new,) = wait_for_ready_pods(node_cluster, 1, exclude=frozenset({old["metadata"]["name"]}))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["KMSKEY_LOG_LEVEL"] == "DEBUG"
    assert most_running <= 1, (
        "two operators ran at once during the rollout (the chart's strategy is Recreate)"
    )
    # The new pod resumes every KmsKey: it reads each key once, writes nothing, creates nothing.
    wait_until(lambda: node_emulator.call_counts().get("DescribeKey", 0) >= 1, 60, "the new pod's resume")
    time.sleep(5)
    writes = sorted({c.action for c in node_emulator.calls() if not c.action.startswith(READ_PREFIXES)})
    assert writes == [], f"the upgrade caused KMS writes: {writes}"
    assert all_keys(node_kms) == keys_before
    assert get(kubectl, namespace, "steady")["status"]["keyId"] == key_id


def test_ha_with_two_replicas_elects_exactly_one_active(
    release: dict[str, Any], node_cluster: NodeCluster, node_emulator: EmulatorHandle, node_kms: KmsClient
) -> None:
    helm_node(
        node_cluster,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--reuse-values",
        "--set",
        "replicaCount=2",
        "--set",
        "ha.enabled=true",
        "--set",
        "ha.peerLifetimeSeconds=20",
    )
    pods = wait_for_ready_pods(node_cluster, 2)
    states: dict[str, float] = {}

    def one_active() -> bool:
        states.clear()
        states.update({p["metadata"]["name"]: active_replica(node_cluster, p) for p in pods})
        return sorted(states.values()) == [0.0, 1.0]

    wait_until(one_active, 120, "exactly one active replica (kmskey_active_replica 1 and 0)", interval=2)
    peering = json.loads(node_cluster.kubectl("get", "clusterkopfpeering", DEPLOYMENT, "-o", "json").stdout)
    assert {p["metadata"]["name"] for p in pods} <= set(peering.get("status", {})), peering
    # A KmsKey created now is created in KMS exactly once, by the active replica only.
    kubectl = node_cluster.kubectl
    namespace = team_namespace(node_cluster, "ha")
    node_emulator.reset_calls()
    apply(kubectl, namespace, "once", {"description": "one active replica"})
    wait_ready(kubectl, namespace, "once", timeout=90)
    time.sleep(3)
    assert node_emulator.call_counts().get("CreateKey") == 1
    assert states
    assert set(states.values()) == {0.0, 1.0}


def test_every_apply_is_admitted_while_two_replicas_roll(node_cluster: NodeCluster) -> None:
    """With two replicas a rollout keeps admission up: a pod leaves the webhook Service before it stops
    serving (the chart's preStop sleep); without it an apply met a gone pod's address ("no route to
    host")."""
    before = {p["metadata"]["name"] for p in wait_for_ready_pods(node_cluster, 2)}
    namespace = team_namespace(node_cluster, "roll")
    probe = json.dumps(
        {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": "admitted", "namespace": namespace},
            "spec": {"description": "asked during a rollout"},
        }
    )
    node_cluster.kubectl("-n", SYSTEM, "rollout", "restart", "deployment", DEPLOYMENT)
    refused: list[str] = []
    attempts = 0
    deadline = time.monotonic() + POD_READY_SECONDS
    while time.monotonic() < deadline:
        answer = node_cluster.kubectl("create", "--dry-run=server", "-f", "-", input=probe, check=False)
        attempts += 1
        if answer.returncode != 0:
            refused.append(answer.stderr.strip())
        pods = operator_pods(node_cluster)
        ready = [p for p in pods if pod_condition(p, "Ready").get("status") == "True"]
        if len(pods) == 2 and len(ready) == 2 and not {p["metadata"]["name"] for p in pods} & before:
            break
    else:
        raise AssertionError(f"the rollout did not finish within {POD_READY_SECONDS:.0f}s")
    # Once more after the last old pod is gone: kube-proxy's rules may still name it for a moment.
    for _ in range(10):
        answer = node_cluster.kubectl("create", "--dry-run=server", "-f", "-", input=probe, check=False)
        attempts += 1
        if answer.returncode != 0:
            refused.append(answer.stderr.strip())
    assert attempts > 20
    assert refused == [], f"{len(refused)} of {attempts} applies refused during the rollout: {refused[:3]}"


def test_helm_uninstall_leaves_every_key_in_kms(
    release: dict[str, Any], node_cluster: NodeCluster, node_kms: KmsClient
) -> None:
    keys_before = all_keys(node_kms)
    assert len(keys_before) >= 5
    kmskeys_before = json.loads(node_cluster.kubectl("get", "kmskeys", "-A", "-o", "json").stdout)["items"]
    helm_node(node_cluster, "uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "3m")
    wait_until(lambda: not operator_pods(node_cluster), 120, "the operator pods to go")
    assert all_keys(node_kms) == keys_before  # not one key deleted or scheduled for deletion by the uninstall
    kmskeys_after = json.loads(node_cluster.kubectl("get", "kmskeys", "-A", "-o", "json").stdout)["items"]
    assert {k["metadata"]["uid"] for k in kmskeys_after} == {k["metadata"]["uid"] for k in kmskeys_before}
    print(f"\nnode tier measurements: {measured}")
