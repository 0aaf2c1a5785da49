"""The Helm chart against the real kube-apiserver: install, run the operator as the chart's ServiceAccount.

There is no kubelet, so no pod ever starts (`helm install` runs without --wait). Instead the operator runs
out of cluster exactly as the chart configures it: its environment is the rendered Deployment's env (Secret
references resolved, the webhook Secret written to a directory), and its identity is a TokenRequest token
of the chart's ServiceAccount. If the chart's RBAC missed a verb the operator needs, a KmsKey would not get
to Ready or back through deletion, and the operator's log would show a 403.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.chart.helm import CHART, helm, parse, set_args
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, get, wait_for, wait_ready
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess

RELEASE = "kms"
SA_NAME = "kms-kmskey-operator"  # the chart's full name for release "kms"
FINALIZER = "kms.alicloud.dev/finalizer"
# Words in an operator log line that mean the API server refused it something.
# (kopf's APIForbiddenError carries the API server's "Forbidden" status; a bare "403" could be a number.)
FORBIDDEN_MARKERS = ("Forbidden", "forbidden", "Not enough permissions")
KMS_CA_CONFIG_MAP = "kms-emulator-ca"


@dataclass
class Release:
    name: str
    namespace: str
    values: dict[str, Any]
    kubeconfig: Path

    def manifest(self) -> list[dict[str, Any]]:
        out = helm("get", "manifest", self.name, "-n", self.namespace, kubeconfig=self.kubeconfig)
        return parse(out.stdout)

    def upgrade(self, values: dict[str, Any]) -> None:
        self.values = values
        helm(
            "upgrade",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            *set_args(values),
            kubeconfig=self.kubeconfig,
        )


def install(kubeconfig: Path, namespace: str, values: dict[str, Any], name: str = RELEASE) -> Release:
    helm("install", name, str(CHART), "-n", namespace, *set_args(values), kubeconfig=kubeconfig)
    return Release(name, namespace, dict(values), kubeconfig)


def emulator_values(emulator: EmulatorHandle, **extra: Any) -> dict[str, Any]:
    return {
        "kms.endpoint": emulator.endpoint,
        "kms.protocol": emulator.protocol,
        # Over HTTPS the operator trusts the emulator's CA the way a user adds a proxy's CA: a ConfigMap.
        **({"kms.caBundle.configMapName": KMS_CA_CONFIG_MAP} if emulator.ca_file else {}),
        "kms.regionId": emulator.region_id,
        "credentials.source": "secret",
        "credentials.secret.name": "kms-credentials",
        "reconcile.resyncSeconds": 3,
        "reconcile.resyncJitter": 0,
        # The chart's webhook points at a Service that has no endpoints here; Ignore keeps it from blocking
        # other tests' KmsKeys while this release exists (test_webhook_configuration... covers Fail).
        "webhook.failurePolicy": "Ignore",
        "logging.format": "text",
        **extra,
    }


def create_credentials(kubectl: Kubectl, namespace: str, emulator: EmulatorHandle) -> None:
    """What the release reads from its namespace: the access keys and, over HTTPS, the emulator's CA."""
    if emulator.ca_file:
        kubectl(
            "-n",
            namespace,
            "create",
            "configmap",
            KMS_CA_CONFIG_MAP,
            f"--from-file=ca.crt={emulator.ca_file}",
        )
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "kms-credentials",
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={emulator.access_key_id}",
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={emulator.access_key_secret}",
    )


def operator_as_chart_configures_it(
    release: Release,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    emulator: EmulatorHandle,
    workdir: Path,
    name: str = "operator",
) -> OperatorProcess:
    """The operator with the chart's env and the chart's ServiceAccount token; listening on 127.0.0.1 only."""
    objects = release.manifest()
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env: dict[str, str] = {}
    for entry in pod["containers"][0]["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = json.loads(
                kubectl("-n", release.namespace, "get", "secret", ref["name"], "-o", "json").stdout
            )
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = f"{name}-pod"
        else:
            raise AssertionError(f"the test cannot resolve env {entry}")
    if env.get("KMSKEY_WEBHOOK_SECRET_DIR"):
        # The chart mounts the webhook Secret there; here it is written to a directory of the same shape.
        volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
        secret = json.loads(
            kubectl(
                "-n", release.namespace, "get", "secret", volume["secret"]["secretName"], "-o", "json"
            ).stdout
        )
        secret_dir = workdir / f"{name}-webhook-tls"
        secret_dir.mkdir(parents=True, exist_ok=True)
        for key, data in secret["data"].items():
            (secret_dir / key).write_bytes(base64.b64decode(data))
        env["KMSKEY_WEBHOOK_SECRET_DIR"] = str(secret_dir)
    if env.get("KMSKEY_KMS_CA_BUNDLE"):
        # The chart mounts the CA ConfigMap there; here its items are written to a directory of that shape.
        source = next(v for v in pod["volumes"] if v["name"] == "kms-ca-bundle")["configMap"]
        data = json.loads(
            kubectl("-n", release.namespace, "get", "configmap", source["name"], "-o", "json").stdout
        )["data"]
        ca_dir = workdir / f"{name}-kms-ca"
        ca_dir.mkdir(parents=True, exist_ok=True)
        for item in source["items"]:
            (ca_dir / item["path"]).write_text(data[item["key"]])
        env["KMSKEY_KMS_CA_BUNDLE"] = str(ca_dir / Path(env["KMSKEY_KMS_CA_BUNDLE"]).name)
    # Everything listens on 127.0.0.1 at ports OperatorProcess picks, never on the chart's 0.0.0.0.
    # (OperatorProcess sets its own KMSKEY_*_HOST = 127.0.0.1 and free KMSKEY_*_PORT values.)
    for variable in [v for v in env if v.startswith("KMSKEY_") and v.endswith(("_HOST", "_PORT"))]:
        env.pop(variable)
    assert env["KMS_ENDPOINT"] == emulator.endpoint  # the chart's value, an address on 127.0.0.1
    sa_kubeconfig = control_plane.service_account_kubeconfig(
        release.namespace, pod["serviceAccountName"], workdir / f"{name}.kubeconfig"
    )
    return OperatorProcess(
        kubeconfig=sa_kubeconfig,
        kms_endpoint=env["KMS_ENDPOINT"],
        access_key_id=env["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        log_dir=workdir,
        region_id=env["ALIBABA_CLOUD_REGION_ID"],
        extra_env=env,
        name=name,
    )


def forbidden_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(marker in line for marker in FORBIDDEN_MARKERS)]


def describe(kms: KmsClient, key_id: str) -> kms_models.DescribeKeyResponseBodyKeyMetadata:
    return kms.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata


def live_release_objects(kubectl: Kubectl, release: str) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every object of the kinds the chart creates that carries its labels."""
    kinds = (
        "deployments.apps,services,serviceaccounts,secrets,roles.rbac.authorization.k8s.io,"
        "rolebindings.rbac.authorization.k8s.io,poddisruptionbudgets.policy"
    )
    cluster_kinds = (
        "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,"
        "validatingwebhookconfigurations.admissionregistration.k8s.io,"
        "customresourcedefinitions.apiextensions.k8s.io"
    )
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of=kmskey-operator"
    found: set[tuple[str, str, str]] = set()
    for kind_list, flags in ((kinds, ["-A"]), (cluster_kinds, [])):
        out = kubectl("get", kind_list, *flags, "-l", selector, "-o", "json").stdout
        for item in json.loads(out)["items"]:
            meta = item["metadata"]
            found.add((item["kind"], meta.get("namespace", ""), meta["name"]))
    peering_kinds = kubectl("api-resources", "--api-group=kopf.dev", "-o", "name").stdout.split()
    for kind in peering_kinds:
        out = kubectl("get", kind, "-A", "-l", selector, "-o", "json").stdout
        for item in json.loads(out)["items"]:
            meta = item["metadata"]
            found.add((item["kind"], meta.get("namespace", ""), meta["name"]))
    return found


def manifest_objects(objects: list[dict[str, Any]], default_namespace: str) -> set[tuple[str, str, str]]:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "CustomResourceDefinition",
        "ClusterKopfPeering",
    }
    return {
        (
            o["kind"],
            "" if o["kind"] in cluster_scoped else o["metadata"].get("namespace", default_namespace),
            o["metadata"]["name"],
        )
        for o in objects
    }


# -- the cluster-wide release ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(
    kubeconfig: Path, kubectl: Kubectl, crd_installed: list[str], emulator: EmulatorHandle
) -> Iterator[Release]:
    namespace = f"kmskey-system-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    create_credentials(kubectl, namespace, emulator)
    began = time.monotonic()
    installed = install(kubeconfig, namespace, emulator_values(emulator))
    print(f"helm install took {time.monotonic() - began:.1f}s")
    yield installed
    helm("uninstall", installed.name, "-n", namespace, kubeconfig=kubeconfig, check=False)


def test_helm_install_creates_exactly_the_rendered_objects(release: Release, kubectl: Kubectl) -> None:
    rendered = manifest_objects(release.manifest(), release.namespace)
    assert {kind for kind, _, _ in rendered} >= {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Secret",
        "ValidatingWebhookConfiguration",
    }
    assert live_release_objects(kubectl, release.name) == rendered


def test_webhook_secret_serves_tls_for_the_service_name_the_configuration_calls(
    release: Release, kubectl: Kubectl, tmp_path: Path
) -> None:
    """The generated certificate verifies against the caBundle for the Service's DNS name (no network)."""
    vwc = json.loads(
        kubectl("get", "validatingwebhookconfiguration", "kms-kmskey-operator", "-o", "json").stdout
    )
    hook = vwc["webhooks"][0]
    service = hook["clientConfig"]["service"]
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(base64.b64decode(hook["clientConfig"]["caBundle"]))
    secret = json.loads(
        kubectl(
            "-n", release.namespace, "get", "secret", "kms-kmskey-operator-webhook-tls", "-o", "json"
        ).stdout
    )
    cert = tmp_path / "tls.crt"
    cert.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    # openssl verifies the chain and the DNS name the API server will ask for.
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca_file),
            "-verify_hostname",
            f"{service['name']}.{service['namespace']}.svc",
            str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ssl.PEM_cert_to_DER_cert(cert.read_text())  # a well-formed PEM certificate


def test_operator_as_the_chart_service_account_reconciles_to_ready_and_through_deletion(
    release: Release,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    emulator: EmulatorHandle,
    kms: KmsClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    operator = operator_as_chart_configures_it(release, control_plane, kubectl, emulator, tmp_path)
    operator.start()
    try:
        began = time.monotonic()
        apply(kubectl, namespace, "rbac-retain", {"description": "via chart RBAC"})
        apply(
            kubectl,
            namespace,
            "rbac-delete",
            {"description": "gone", "deletionPolicy": "Delete", "pendingWindowInDays": 7},
        )
        retained = wait_ready(kubectl, namespace, "rbac-retain")
        deleted = wait_ready(kubectl, namespace, "rbac-delete")
        print(f"two KmsKeys Ready in {time.monotonic() - began:.1f}s as the ServiceAccount")
        assert FINALIZER in retained["metadata"]["finalizers"]
        # Events are posted with the ServiceAccount's create permission.
        events = json.loads(
            kubectl("-n", namespace, "get", "events", "--field-selector=reason=Created", "-o", "json").stdout
        )
        assert events["items"], "no Created event was posted"
        kubectl("-n", namespace, "delete", "kmskey", "rbac-retain", "rbac-delete", "--timeout=30s")
        assert describe(kms, retained["status"]["keyId"]).key_state == "Enabled"
        assert describe(kms, deleted["status"]["keyId"]).key_state == "PendingDeletion"
        log = operator.log()
        assert not forbidden_lines(log), "\n".join(forbidden_lines(log))
    finally:
        operator.stop()


def can_i_list(kubectl: Kubectl, service_account: str, namespace: str) -> set[tuple[str, str, str]]:
    """`kubectl auth can-i --list` for a ServiceAccount in a namespace, as (resource.group, names, verb)."""
    out = kubectl(
        "auth", "can-i", "--list", f"--as={service_account}", "-n", namespace, "--no-headers"
    ).stdout
    granted: set[tuple[str, str, str]] = set()
    for line in out.splitlines():
        match = CAN_I_LINE.match(line)
        assert match, f"unexpected `kubectl auth can-i --list` line: {line!r}"
        resource, urls, names, verbs = match.groups()
        if not resource:  # a non-resource URL rule (discovery, /version): the API server's defaults
            assert urls != "[]"
            continue
        for verb in verbs.strip("[]").split():
            granted.add((resource, names, verb))
    return granted


# Every authenticated user may review its own access (the API server's bootstrap ClusterRoles).
SELF_REVIEWS = {
    ("selfsubjectreviews.authentication.k8s.io", "[]", "create"),
    ("selfsubjectaccessreviews.authorization.k8s.io", "[]", "create"),
    ("selfsubjectrulesreviews.authorization.k8s.io", "[]", "create"),
}
CAN_I_LINE = re.compile(r"^(\S*)\s+(\[.*?\])\s+(\[.*?\])\s+(\[.*?\])\s*$")
# Provider configs: KmsProviderConfigs where KmsKeys are served; ClusterKmsProviderConfigs and namespace
# labels (their selectors) cluster-wide; Secrets and ServiceAccount tokens only where configs live.
PROVIDER_CONFIGS = {
    ("kmsproviderconfigs.kms.alicloud.dev", "[]", "get"),
    ("kmsproviderconfigs.kms.alicloud.dev", "[]", "list"),
    ("kmsproviderconfigs.kms.alicloud.dev", "[]", "watch"),
    ("kmsproviderconfigs.kms.alicloud.dev/status", "[]", "patch"),
}
CLUSTER_PROVIDER_CONFIGS = {
    ("clusterkmsproviderconfigs.kms.alicloud.dev", "[]", "get"),
    ("clusterkmsproviderconfigs.kms.alicloud.dev", "[]", "list"),
    ("clusterkmsproviderconfigs.kms.alicloud.dev", "[]", "watch"),
    ("clusterkmsproviderconfigs.kms.alicloud.dev/status", "[]", "patch"),
    ("namespaces", "[]", "get"),
}
SECRETS = {("secrets", "[]", "get"), ("serviceaccounts/token", "[]", "create")}


def test_service_account_can_do_only_what_the_operator_needs(
    release: Release, kubectl: Kubectl, namespace: str
) -> None:
    account = f"system:serviceaccount:{release.namespace}:{SA_NAME}"
    granted = can_i_list(kubectl, account, namespace)
    print("can-i --list:", sorted(granted))
    assert granted - SELF_REVIEWS == {
        ("kmskeys.kms.alicloud.dev", "[]", "get"),
        ("kmskeys.kms.alicloud.dev", "[]", "list"),
        ("kmskeys.kms.alicloud.dev", "[]", "watch"),
        ("kmskeys.kms.alicloud.dev", "[]", "patch"),
        ("kmskeys.kms.alicloud.dev/status", "[]", "patch"),
        ("events", "[]", "create"),
        ("customresourcedefinitions.apiextensions.k8s.io", "[]", "list"),
        ("customresourcedefinitions.apiextensions.k8s.io", "[]", "watch"),
        ("namespaces", "[kube-system]", "get"),  # the cluster's UID for the claims on keys
        *PROVIDER_CONFIGS,
        *CLUSTER_PROVIDER_CONFIGS,
    }
    assert not any("*" in resource or verb == "*" for resource, _, verb in granted)
    # Secrets only where provider configs live: the release namespace (providerConfigs.namespaces is empty).
    assert can_i_list(kubectl, account, release.namespace) >= SECRETS


def test_finalizer_semantics_hold_through_an_operator_upgrade(
    release: Release,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    emulator: EmulatorHandle,
    kms: KmsClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    before = operator_as_chart_configures_it(release, control_plane, kubectl, emulator, tmp_path, "before")
    before.start()
    try:
        apply(kubectl, namespace, "survivor", {"description": "kept through upgrades"})
        key_id = wait_ready(kubectl, namespace, "survivor")["status"]["keyId"]
    finally:
        before.stop()
    # The operator is down: the KmsKey keeps its finalizer; the upgrade changes the operator's settings.
    upgraded = {**release.values, "logging.format": "json", "reconcile.resyncSeconds": 5, "replicaCount": 1}
    began = time.monotonic()
    release.upgrade(upgraded)
    print(f"helm upgrade took {time.monotonic() - began:.1f}s")
    assert FINALIZER in get(kubectl, namespace, "survivor")["metadata"]["finalizers"]
    assert live_release_objects(kubectl, release.name) == manifest_objects(
        release.manifest(), release.namespace
    )
    after = operator_as_chart_configures_it(release, control_plane, kubectl, emulator, tmp_path, "after")
    assert after.env["KMSKEY_LOG_FORMAT"] == "json"
    after.start()
    try:
        wait_for(
            kubectl,
            namespace,
            "survivor",
            lambda b: b["status"].get("keyId") == key_id,
            what="the same key after the upgrade",
        )
        emulator.reset_calls()
        kubectl("-n", namespace, "delete", "kmskey", "survivor", "--timeout=30s")
        assert describe(kms, key_id).key_state == "Enabled"  # Retain: the key outlives its resource
        assert emulator.call_counts().get("ScheduleKeyDeletion", 0) == 0
        assert not forbidden_lines(after.log()), "\n".join(forbidden_lines(after.log()))
    finally:
        after.stop()


# -- a namespaced HA release: its webhook, its Roles, its peering, then upgrade and uninstall ------------


def kmskey_manifest(namespace: str, name: str, **meta: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": {"description": name},
        }
    )


def test_every_chart_convention_value_passes_the_api_servers_own_validation(
    kubeconfig: Path, kubectl: Kubectl, crd_installed: list[str], emulator: EmulatorHandle
) -> None:
    """HA spreading, OpenShift-style security contexts and the extra* values, sent to the real API server."""
    namespace = f"kmskey-conventions-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    # A dry run skips crds/: kopf's peering CRDs must exist for the HA objects (a real install makes them).
    kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopfpeerings.kopf.dev.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=30s")
    values = emulator_values(
        emulator,
        **{
            "replicaCount": 2,
            "ha.enabled": True,
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                }
            ],
            "podSecurityContext.runAsUser": None,
            "podSecurityContext.runAsGroup": None,
            "podSecurityContext.fsGroup": None,
            "extraArgs": ["--resync-seconds=300"],
            "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca", "optional": True}}],
            "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
            "revisionHistoryLimit": 3,
        },
    )
    # --dry-run=server: every object goes through the API server's validation and admission, nothing is kept.
    out = helm(
        "install",
        "conventions",
        str(CHART),
        "-n",
        namespace,
        "--dry-run=server",
        *set_args(values),
        kubeconfig=kubeconfig,
    )
    manifest = out.stdout.split("MANIFEST:", 1)[1].split("\nNOTES:", 1)[0]
    deployment = next(o for o in parse(manifest) if o.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == deployment["spec"]["selector"]
    assert kubectl("-n", namespace, "get", "deployments", "-o", "name").stdout.strip() == ""


def notes_example(notes: str) -> dict[str, Any]:
    """The KmsKey of NOTES.txt's `cat <<YAML | kubectl apply -f -` example."""
    heredoc = re.search(r"cat <<YAML \| kubectl apply -f -\n(.*?)\n\s*YAML\n", notes, re.DOTALL)
    assert heredoc, notes
    example: dict[str, Any] = yaml.safe_load(textwrap.dedent(heredoc.group(1)))
    return example


def test_namespaced_ha_release_from_install_to_uninstall(
    control_plane: ControlPlane,
    kubeconfig: Path,
    kubectl: Kubectl,
    crd_installed: list[str],
    emulator: EmulatorHandle,
    tmp_path: Path,
) -> None:
    suffix = secrets.token_hex(3)
    system, watched, other = f"kmskey-ha-{suffix}", f"watched-{suffix}", f"other-{suffix}"
    for name in (system, watched, other):
        kubectl("create", "namespace", name)
    create_credentials(kubectl, system, emulator)
    # A KmsKey with the operator's finalizer from before the install: the operator is down, as after a crash.
    kubectl("create", "-f", "-", input=kmskey_manifest(watched, "before", finalizers=[FINALIZER]))
    values = emulator_values(
        emulator,
        **{
            "watchNamespaces": [watched],
            "replicaCount": 2,
            "ha.enabled": True,
            "webhook.failurePolicy": "Fail",  # the default, scoped to `watched` by its namespaceSelector
        },
    )
    ha = install(kubeconfig, system, values, name="ha")
    sa = f"system:serviceaccount:{system}:ha-kmskey-operator"

    # The webhook (no endpoints here) refuses new KmsKeys in the watched namespace: failurePolicy Fail...
    refused = kubectl("create", "-f", "-", input=kmskey_manifest(watched, "refused"), check=False)
    assert refused.returncode != 0
    assert "validate-kmskey.kms.alicloud.dev" in refused.stderr
    # ... but not elsewhere (namespaceSelector), nor metadata-only updates, deletion or finalizer removal
    # (matchConditions), so a stopped operator never blocks deletion.
    kubectl("create", "-f", "-", input=kmskey_manifest(other, "elsewhere"))
    kubectl("-n", watched, "annotate", "kmskey", "before", "example.com/touched=yes")
    kubectl("-n", watched, "delete", "kmskey", "before", "--wait=false")
    kubectl(
        "-n", watched, "patch", "kmskey", "before", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    assert kubectl("-n", watched, "get", "kmskey", "before", check=False).returncode != 0

    # RBAC: KmsKeys and events only in the watched namespace, kopf's peering object there, scanning.
    in_watched = can_i_list(kubectl, sa, watched) - SELF_REVIEWS
    assert in_watched == {
        ("kmskeys.kms.alicloud.dev", "[]", "get"),
        ("kmskeys.kms.alicloud.dev", "[]", "list"),
        ("kmskeys.kms.alicloud.dev", "[]", "watch"),
        ("kmskeys.kms.alicloud.dev", "[]", "patch"),
        ("kmskeys.kms.alicloud.dev/status", "[]", "patch"),
        ("events", "[]", "create"),
        ("kopfpeerings.kopf.dev", "[]", "list"),
        ("kopfpeerings.kopf.dev", "[]", "watch"),
        ("kopfpeerings.kopf.dev", "[ha-kmskey-operator]", "patch"),
        ("customresourcedefinitions.apiextensions.k8s.io", "[]", "list"),
        ("customresourcedefinitions.apiextensions.k8s.io", "[]", "watch"),
        ("namespaces", "[]", "list"),
        ("namespaces", "[]", "watch"),
        ("namespaces", "[kube-system]", "get"),
        *PROVIDER_CONFIGS,
        *CLUSTER_PROVIDER_CONFIGS,
        *SECRETS,
    }
    assert can_i_list(kubectl, sa, other) - SELF_REVIEWS == {
        entry
        for entry in in_watched
        if entry[0].startswith(("customresourcedefinitions", "namespaces", "clusterkmsproviderconfigs"))
    }

    # The operator as this release's ServiceAccount, peering through the chart's KopfPeering (mandatory).
    ha.upgrade({**values, "webhook.failurePolicy": "Ignore"})
    operator = operator_as_chart_configures_it(ha, control_plane, kubectl, emulator, tmp_path, "ha")
    assert operator.env["KMSKEY_PEERING"] == "ha-kmskey-operator"
    assert operator.env["WATCH_NAMESPACES"] == watched
    operator.start()
    try:
        apply(kubectl, watched, "peered", {"description": "reconciled by the active peer"})
        wait_ready(kubectl, watched, "peered")
        peering = json.loads(
            kubectl("-n", watched, "get", "kopfpeering", "ha-kmskey-operator", "-o", "json").stdout
        )
        assert "ha-pod" in peering.get("status", {}), peering  # the keep-alive, under POD_ID
        kubectl("-n", watched, "delete", "kmskey", "peered", "--timeout=30s")
        # NOTES.txt's example, applied as printed, lands in the watched namespace and becomes Ready.
        example = notes_example(helm("get", "notes", "ha", "-n", system, kubeconfig=kubeconfig).stdout)
        assert example["metadata"]["namespace"] == watched
        kubectl("apply", "-f", "-", input=json.dumps(example))
        wait_ready(kubectl, watched, example["metadata"]["name"])
        kubectl("-n", watched, "delete", "kmskey", example["metadata"]["name"], "--timeout=30s")
        assert not forbidden_lines(operator.log()), "\n".join(forbidden_lines(operator.log()))
    finally:
        operator.stop()

    # Back to one replica without HA: the budget and the peering object go, nothing else is left behind.
    ha.upgrade({**values, "replicaCount": 1, "ha.enabled": False, "webhook.failurePolicy": "Ignore"})
    live = live_release_objects(kubectl, "ha")
    assert live == manifest_objects(ha.manifest(), system)
    assert not {kind for kind, _, _ in live} & {"PodDisruptionBudget", "KopfPeering"}

    began = time.monotonic()
    helm("uninstall", "ha", "-n", system, kubeconfig=kubeconfig)
    print(f"helm uninstall took {time.monotonic() - began:.1f}s")
    assert live_release_objects(kubectl, "ha") == set()
    # CRDs stay (Helm never deletes crds/), and so do KmsKeys and their keys.
    assert kubectl("get", "crd", "kmskeys.kms.alicloud.dev", check=False).returncode == 0


@pytest.mark.parametrize(
    ("resource", "symptom"),
    [
        ("kmskeys/status", "Forbidden"),
        ("events", "Forbidden"),
        ("customresourcedefinitions", "Forbidden"),  # kopf retries the CRD watch, then gives up on it
    ],
    ids=["status", "events", "crd-scanning"],
)
def test_each_granted_rule_is_one_the_operator_uses(
    resource: str,
    symptom: str,
    release: Release,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    emulator: EmulatorHandle,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Without the rule, the operator (as the chart's ServiceAccount) is refused something: none is spare."""
    role_name = f"{release.name}-kmskey-operator"
    original = json.loads(kubectl("get", "clusterrole", role_name, "-o", "json").stdout)
    reduced = json.loads(json.dumps(original))
    reduced["rules"] = [r for r in original["rules"] if resource not in r["resources"]]
    assert len(reduced["rules"]) == len(original["rules"]) - 1
    kubectl("replace", "-f", "-", input=json.dumps(reduced))
    operator = operator_as_chart_configures_it(release, control_plane, kubectl, emulator, tmp_path, "reduced")
    try:
        operator.start()
        apply(kubectl, namespace, "needs-it", {"description": f"without {resource}"})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and symptom not in operator.log():
            time.sleep(0.2)
        assert symptom in operator.log(), operator.log()[-3000:]
    finally:
        operator.stop()
        current = json.loads(kubectl("get", "clusterrole", role_name, "-o", "json").stdout)
        original["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kubectl("replace", "-f", "-", input=json.dumps(original))
        kubectl(
            "-n",
            namespace,
            "patch",
            "kmskey",
            "needs-it",
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
