"""The Helm chart as rendered by `helm template`: secure by default, least privilege, and in step with the
operator (its env variables, its webhook rules, its CRD). No cluster is needed here."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmskey_operator import webhook
from kmskey_operator.settings import Settings, add_arguments, flags_from
from tests.chart.helm import (
    CHART,
    REPO_ROOT,
    HelmError,
    container,
    env_of,
    helm,
    of_kind,
    one,
    parse,
    template,
)

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
RBAC_KINDS = ("ClusterRole", "Role")
HA = {"replicaCount": 2, "ha.enabled": True}
NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}


def rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in of_kind(objects, kind) for rule in role.get("rules", [])]


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(HelmError) as caught:
        template(values)
    return str(caught.value.stderr)


# -- lint, files, CRDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{}, HA, NAMESPACED, {**HA, **NAMESPACED}, {"webhook.certificate.source": "certManager"}],
    ids=["defaults", "ha", "namespaced", "namespaced-ha", "cert-manager"],
)
def test_helm_lint_passes(values: dict[str, Any]) -> None:
    args = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = helm("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    repository = sorted(p.name for p in (REPO_ROOT / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    # Besides the operator's own CRDs, the chart carries only kopf's peering CRDs.
    assert chart == sorted([*repository, "kopfpeerings.kopf.dev.yaml"])
    for name in repository:
        assert (CHART / "crds" / name).read_bytes() == (REPO_ROOT / "crds" / name).read_bytes(), (
            f"{name} differs: copy crds/{name} to {CHART.relative_to(REPO_ROOT)}/crds/"
        )


@pytest.mark.parametrize("values", [{}, {**HA, **NAMESPACED}], ids=["defaults", "namespaced-ha"])
def test_each_template_file_renders_one_kind_of_object(values: dict[str, Any]) -> None:
    out = helm("template", "kms", str(CHART), *[f"--set-json={k}={json.dumps(v)}" for k, v in values.items()])
    kinds_by_source: dict[str, set[str]] = {}
    for document in out.stdout.split("\n---\n"):
        source = re.search(r"^# Source: (\S+)", document, re.MULTILINE)
        body = yaml.safe_load(document)
        if source and body:
            kinds_by_source.setdefault(source.group(1), set()).add(body["kind"])
    assert kinds_by_source
    assert {s: k for s, k in kinds_by_source.items() if len(k) != 1} == {}


# -- values and schema ---------------------------------------------------------------------------------


def _value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict) and value:
            paths |= _value_paths(value, f"{path}.")
    return paths


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if sub.get("additionalProperties") is False and "x-kubernetes-type" not in sub:
            paths |= _schema_paths(sub, f"{path}.")
    return paths


def test_schema_describes_exactly_the_keys_of_values_yaml() -> None:
    # Free-form maps ({} in values.yaml, e.g. podAnnotations) and Kubernetes types stop the descent.
    schema_paths = {p for p in _schema_paths(SCHEMA) if not p.startswith("affinity.")}
    assert _value_paths(VALUES) == schema_paths


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    def walk(node: dict[str, Any], where: str) -> list[str]:
        problems: list[str] = []
        if node.get("type") == "object" and "x-kubernetes-type" not in node:
            extra = node.get("additionalProperties")
            typed_map = isinstance(extra, dict) and extra.get("type") == "string"
            if extra is not False and not typed_map:
                problems.append(where or "(root)")
        for key, sub in node.get("properties", {}).items():
            problems += walk(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            problems += walk(node["items"], f"{where}[]")
        return problems

    assert walk(SCHEMA, "") == []


def test_every_value_has_a_prose_comment() -> None:
    """Each key has a comment; each leaf's starts with `# --`, which helm-docs puts in the README's table."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for number, line in enumerate(lines):
        key = re.match(r"^(\s*)[A-Za-z][A-Za-z0-9]*:(.*)$", line)
        if not key:
            continue
        block = number
        while block > 0 and lines[block - 1].strip().startswith("#"):
            block -= 1
        following = [n for n in lines[number + 1 :] if n.strip() and not n.strip().startswith("#")]
        parent = not key.group(2).strip() and bool(following)
        parent = parent and len(following[0]) - len(following[0].lstrip()) > len(key.group(1))
        if block == number or (not parent and not lines[block].strip().startswith("# -- ")):
            missing.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert missing == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": 2}, "replicaCont"),
        ({"kms.endpiont": "x"}, "endpiont"),
        ({"webhook.certificate.sorce": "helm"}, "sorce"),
        ({"kms.protocol": "ftp"}, "protocol"),
        ({"logging.format": "xml"}, "format"),
        ({"replicaCount": 2}, "enabled"),
        ({"webhook.timeoutSeconds": 31}, "timeoutSeconds"),
        ({"credentials.secret.name": ""}, "name"),
        ({"webhook.certificate.source": "secret"}, "secretName"),
        ({"credentials.source": "rrsa", "credentials.rrsa.mode": "manual"}, "roleArn"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"podSecurityContext.runAsUser": 0}, "runAsUser"),
        ({"securityContext.seccompProfile.type": "Off"}, "type"),
        ({"extraArgs": ["run"]}, "extraArgs"),
        ({"revisionHistoryLimit": -1}, "revisionHistoryLimit"),
    ],
    ids=[
        "misspelt-top-level",
        "misspelt-nested",
        "misspelt-deep",
        "bad-protocol",
        "bad-log-format",
        "replicas-without-ha",
        "webhook-timeout-too-long",
        "secret-credentials-without-a-name",
        "own-certificate-without-a-secret",
        "manual-rrsa-without-arns",
        "bad-namespace-name",
        "root-uid",
        "unknown-seccomp-type",
        "extra-arg-not-a-flag",
        "negative-revision-history",
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    message = refusal(values)
    assert "values don't meet the specifications of the schema" in message
    assert complaint in message


# -- the pod -------------------------------------------------------------------------------------------


def test_pod_runs_non_root_read_only_without_capabilities() -> None:
    objects = template()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert pod["automountServiceAccountToken"] is True  # kopf's in-cluster login


def test_pod_has_resources_and_probes_on_the_health_port() -> None:
    operator = container(template())
    assert operator["resources"]["requests"]["cpu"]
    assert operator["resources"]["requests"]["memory"]
    assert operator["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    env = env_of(template())
    assert ports["health"] == int(env["KMSKEY_HEALTH_PORT"]["value"])
    assert ports["ready"] == int(env["KMSKEY_READY_PORT"]["value"])
    assert ports["metrics"] == int(env["KMSKEY_METRICS_PORT"]["value"])
    assert ports["webhook"] == int(env["KMSKEY_WEBHOOK_PORT"]["value"])


def test_a_stopping_pod_keeps_serving_until_the_webhook_service_forgets_it() -> None:
    assert container(template())["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert "lifecycle" not in container(template({"preStopSleepSeconds": 0}))
    too_long = refusal({"preStopSleepSeconds": 30, "terminationGracePeriodSeconds": 30})
    assert "preStopSleepSeconds (30) must be shorter than terminationGracePeriodSeconds (30)" in too_long


def test_image_digest_wins_over_the_tag() -> None:
    digest = "sha256:" + "a" * 64
    assert container(template({"image.tag": "1.2.3"}))["image"] == "kmskey-operator:1.2.3"
    assert container(template({"image.digest": digest}))["image"] == f"kmskey-operator@{digest}"
    assert container(template())["image"] == "kmskey-operator:0.1.0"


def test_scheduling_values_reach_the_pod() -> None:
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "podAnnotations": {"example.com/team": "security"},
        "podLabels": {"pod-identity.alibabacloud.com/injection": "on"},
    }
    deployment = one(template(values), "Deployment")["spec"]["template"]
    assert deployment["spec"]["nodeSelector"] == values["nodeSelector"]
    assert deployment["spec"]["tolerations"] == values["tolerations"]
    assert deployment["spec"]["affinity"] == values["affinity"]
    assert deployment["metadata"]["annotations"]["example.com/team"] == "security"
    assert deployment["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"] == "on"


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return pod


def test_ha_replicas_prefer_different_nodes_unless_affinity_is_chosen() -> None:
    assert "affinity" not in _pod(template())  # one replica: nothing to spread
    deployment = one(template(HA), "Deployment")
    (term,) = _pod(template(HA))["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    chosen = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert _pod(template({**HA, "affinity": chosen}))["affinity"] == chosen


def test_topology_spread_constraints_select_the_operator_pods_by_default() -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    own = {**zone, "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"a": "b"}}}
    objects = template({**HA, "topologySpreadConstraints": [zone, own]})
    selector = one(objects, "Deployment")["spec"]["selector"]
    assert _pod(objects)["topologySpreadConstraints"] == [{**zone, "labelSelector": selector}, own]
    assert "topologySpreadConstraints" not in _pod(template())


def test_security_contexts_can_leave_the_ids_to_the_platform_as_openshift_needs() -> None:
    openshift = {f"podSecurityContext.{k}": None for k in ("runAsUser", "runAsGroup", "fsGroup")}
    objects = template(openshift)
    pod = _pod(objects)["securityContext"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod)
    assert pod["runAsNonRoot"] is True  # what stays: never root, seccomp
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(objects)["securityContext"] == container(template())["securityContext"]
    custom = container(template({"securityContext.seccompProfile.type": "Unconfined"}))["securityContext"]
    assert custom["seccompProfile"] == {"type": "Unconfined"}
    assert custom["capabilities"] == {"drop": ["ALL"]}


def test_the_default_security_contexts_are_the_values_file_s() -> None:
    assert _pod(template())["securityContext"] == VALUES["podSecurityContext"]
    assert container(template())["securityContext"] == VALUES["securityContext"]


def test_extra_args_are_flags_the_operator_cli_reads() -> None:
    args = container(template({"extraArgs": ["--resync-seconds=120", "--read-qps=5"]}))["args"]
    assert args[0] == "run"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = Settings.from_env({}, flags=flags_from(parser.parse_args(args[1:])))
    assert (settings.resync_seconds, settings.read_qps) == (120, 5)
    assert container(template())["args"] == ["run"]


def test_extra_volumes_and_mounts_come_beside_the_chart_s_own() -> None:
    volume = {"name": "corp-ca", "configMap": {"name": "corp-ca"}}
    mount = {"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}
    objects = template({"extraVolumes": [volume], "extraVolumeMounts": [mount]})
    assert _pod(objects)["volumes"][-1] == volume
    assert container(objects)["volumeMounts"][-1] == mount
    assert {v["name"] for v in _pod(objects)["volumes"]} >= {"tmp", "webhook-tls", "corp-ca"}


def test_revision_history_limit_is_set_and_overridable() -> None:
    assert one(template(), "Deployment")["spec"]["revisionHistoryLimit"] == 10
    assert one(template({"revisionHistoryLimit": 2}), "Deployment")["spec"]["revisionHistoryLimit"] == 2


def test_chart_metadata_names_home_sources_and_icon() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://")
    assert chart["sources"]
    assert all(source.startswith("https://") for source in chart["sources"])
    assert chart["icon"].startswith("https://")
    assert chart["icon"].endswith("/deploy/helm/kmskey-operator/icon.svg")
    assert (CHART / "icon.svg").read_text().lstrip().startswith("<svg")


# -- the chart's env is the operator's settings ----------------------------------------------------------


def _plain_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env_of(objects).items() if "value" in entry}


def test_values_become_the_settings_the_operator_reads() -> None:
    values = {
        "kms.regionId": "cn-shanghai",
        "kms.endpointType": "vpc",
        "kms.connectTimeoutMs": 3000,
        "kms.readTimeoutMs": 7000,
        "kms.maxConnections": 4,
        "kms.rateLimits.createQps": 4,
        "kms.rateLimits.readQps": 0,
        "kms.rateLimits.writeQps": 2.5,
        "reconcile.resyncSeconds": 120,
        "reconcile.resyncJitter": 0.2,
        "reconcile.resyncReadShare": 0.25,
        "reconcile.statusHeartbeatSeconds": 3600,
        "reconcile.deletionTimeoutSeconds": 900,
        "watchNamespaces": ["team-a", "team-b"],
        "logging.format": "text",
        "logging.level": "DEBUG",
        "health.port": 9000,
        "metrics.port": 9001,
        "health.readyPort": 9002,
        "ha.peerLifetimeSeconds": 30,
        "ha.enabled": True,
        "replicaCount": 2,
        "tenancy.clusterId": "prod-eu",
        "tenancy.adoption.namespaces": ["team-a", "platform"],
        "tenancy.adoption.allowDelete": True,
    }
    env = _plain_env(template(values))
    settings = Settings.from_env(env)
    assert settings.region_id == "cn-shanghai"
    assert settings.endpoint_for("cn-shanghai") == "kms-vpc.cn-shanghai.aliyuncs.com"
    assert settings.kms_protocol == "https"
    assert (settings.kms_connect_timeout_ms, settings.kms_read_timeout_ms) == (3000, 7000)
    assert settings.kms_max_connections == 4
    assert (settings.create_qps, settings.read_qps, settings.write_qps) == (4, 0, 2.5)
    assert (settings.resync_seconds, settings.resync_jitter) == (120, 0.2)
    assert (settings.resync_read_share, settings.status_heartbeat_seconds) == (0.25, 3600)
    assert settings.deletion_timeout_seconds == 900
    assert settings.namespaces == ("team-a", "team-b")
    assert (settings.log_format, settings.log_level) == ("text", "DEBUG")
    assert (settings.health_port, settings.metrics_port) == (9000, 9001)
    assert settings.ready_port == 9002
    assert settings.peering_name == "kms-kmskey-operator"
    assert settings.peering_lifetime_seconds == 30
    assert settings.peering_priority == 0  # each replica's own: its start time
    assert settings.cluster_id == "prod-eu"
    assert settings.adoption_namespaces == ("team-a", "platform")
    assert settings.adopted_key_deletion


def test_default_values_are_the_operator_defaults() -> None:
    settings = Settings.from_env(_plain_env(template()))
    defaults = Settings()
    for field in (
        "region_id",
        "kms_endpoint",
        "kms_endpoint_type",
        "kms_protocol",
        "kms_connect_timeout_ms",
        "kms_read_timeout_ms",
        "kms_max_connections",
        "create_qps",
        "read_qps",
        "write_qps",
        "resync_seconds",
        "resync_jitter",
        "resync_read_share",
        "status_heartbeat_seconds",
        "deletion_timeout_seconds",
        "namespaces",
        "health_host",
        "health_port",
        "ready_port",
        "liveness_stall_seconds",
        "metrics_host",
        "metrics_port",
        "peering_name",
        "cluster_id",
        "adoption_namespaces",
        "adopted_key_deletion",
    ):
        assert getattr(settings, field) == getattr(defaults, field), field
    assert settings.log_format == "json"  # the one deliberate difference: log collectors read JSON


def test_emulator_endpoint_value_reaches_the_operator() -> None:
    env = _plain_env(template({"kms.endpoint": "kms-emulator.kms.svc:8080", "kms.protocol": "http"}))
    settings = Settings.from_env(env)
    assert settings.endpoint_for("cn-hangzhou") == "kms-emulator.kms.svc:8080"
    assert settings.kms_protocol == "http"


def test_webhook_env_serves_the_mounted_secret_on_the_container_port() -> None:
    objects = template()
    hook = webhook.WebhookSettings.from_env(_plain_env(objects))
    assert hook.port == 9443
    assert hook.listen_host == "0.0.0.0"
    assert hook.configuration_name is None  # the chart owns the configuration
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert str(hook.secret_dir) == mounts["webhook-tls"]
    assert _plain_env(objects)["KMSKEY_WEBHOOK_ENABLED"] == "true"
    assert _plain_env(template({"webhook.enabled": False}))["KMSKEY_WEBHOOK_ENABLED"] == "false"


def test_every_env_variable_the_chart_sets_is_read_by_the_operator() -> None:
    source = "\n".join(
        p.read_text() for p in (REPO_ROOT / "operator" / "kmskey_operator").rglob("*.py")
    )  # settings.py, cli.py, webhook.py
    webhook_suffixes = set(re.findall(r'get\("([A-Z_]+)"\)', source)) | set(
        re.findall(r'split\("([A-Z_]+)"', source)
    )
    sdk_variables = {  # read by alibabacloud-credentials, not by our code
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
        "POD_ID",  # kopf's peer identity
    }
    every = {
        **env_of(
            template(
                {
                    **HA,
                    **NAMESPACED,
                    "credentials.ecsMetadataDisabled": True,
                    "kms.caBundle.configMapName": "ca",
                }
            )
        ),
        **env_of(template({"credentials.source": "rrsa", "credentials.rrsa.mode": "manual", **_RRSA_ARNS})),
    }
    unread = []
    for name in every:
        if name in sdk_variables:
            continue
        if name.startswith("KMSKEY_WEBHOOK_") and name != "KMSKEY_WEBHOOK_ENABLED":
            if name.removeprefix("KMSKEY_WEBHOOK_") not in webhook_suffixes:
                unread.append(name)
        elif not re.search(f"[\"']{name}[\"']", source):
            unread.append(name)
    assert unread == []


# -- credentials -------------------------------------------------------------------------------------------

_RRSA_ARNS = {
    "credentials.rrsa.roleArn": "acs:ram::1234567890:role/kmskey-operator",
    "credentials.rrsa.oidcProviderArn": "acs:ram::1234567890:oidc-provider/ack-rrsa-c123",
}


def test_secret_credentials_are_secret_key_references() -> None:
    env = env_of(template({"credentials.secret.name": "my-keys"}))
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "my-keys", "key": name}
        assert "value" not in env[name]


def test_ecs_metadata_is_not_disabled_unless_asked() -> None:
    assert "ALIBABA_CLOUD_ECS_METADATA_DISABLED" not in env_of(template())
    env = env_of(template({"credentials.ecsMetadataDisabled": True}))
    assert env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"]["value"] == "true"


def test_rrsa_through_the_pod_identity_webhook_annotates_the_service_account_only() -> None:
    objects = template({"credentials.source": "rrsa", "credentials.rrsa.roleName": "kmskey-operator"})
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"] == "kmskey-operator"
    env = env_of(objects)
    assert not {
        n for n in env if n.startswith(("ALIBABA_CLOUD_ACCESS", "ALIBABA_CLOUD_ROLE", "ALIBABA_CLOUD_OIDC"))
    }


def test_manual_rrsa_sets_the_role_variables_and_projects_a_token() -> None:
    objects = template({"credentials.source": "rrsa", "credentials.rrsa.mode": "manual", **_RRSA_ARNS})
    env = _plain_env(objects)
    assert env["ALIBABA_CLOUD_ROLE_ARN"] == _RRSA_ARNS["credentials.rrsa.roleArn"]
    assert env["ALIBABA_CLOUD_OIDC_PROVIDER_ARN"] == _RRSA_ARNS["credentials.rrsa.oidcProviderArn"]
    token_file = Path(env["ALIBABA_CLOUD_OIDC_TOKEN_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert str(token_file.parent) == mounts["rrsa-oidc-token"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "rrsa-oidc-token")
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"path": token_file.name, "audience": "sts.aliyuncs.com", "expirationSeconds": 3600}
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" not in env_of(objects)


def test_chain_credentials_configure_nothing() -> None:
    env = env_of(template({"credentials.source": "chain"}))
    assert not {n for n in env if n.startswith("ALIBABA_CLOUD_") and n != "ALIBABA_CLOUD_REGION_ID"}


# -- RBAC ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{}, HA, NAMESPACED, {**HA, **NAMESPACED}, {**NAMESPACED, "rbac.clusterScanning": False}],
    ids=["defaults", "ha", "namespaced", "namespaced-ha", "namespaced-no-scanning"],
)
def test_rbac_has_no_wildcards(values: dict[str, Any]) -> None:
    objects = template(values)
    for kind in RBAC_KINDS:
        for rule in rules(objects, kind):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), (kind, rule)
            assert "nonResourceURLs" not in rule


PROVIDER_CONFIG_RULES = {
    ("kms.alicloud.dev", "kmsproviderconfigs", "get"),
    ("kms.alicloud.dev", "kmsproviderconfigs", "list"),
    ("kms.alicloud.dev", "kmsproviderconfigs", "watch"),
    ("kms.alicloud.dev", "kmsproviderconfigs/status", "patch"),
}
CLUSTER_PROVIDER_CONFIG_RULES = {
    ("kms.alicloud.dev", "clusterkmsproviderconfigs", "get"),
    ("kms.alicloud.dev", "clusterkmsproviderconfigs", "list"),
    ("kms.alicloud.dev", "clusterkmsproviderconfigs", "watch"),
    ("kms.alicloud.dev", "clusterkmsproviderconfigs/status", "patch"),
    ("", "namespaces", "get"),
}
SECRET_RULES = {("", "secrets", "get"), ("", "serviceaccounts/token", "create")}


def operator_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Roles for KmsKeys (namespaced mode), not the provider-config Roles for Secrets."""
    return [r for r in of_kind(objects, "Role") if not r["metadata"]["name"].endswith("-provider-configs")]


def secret_roles(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    return {
        r["metadata"]["namespace"]: granted(r)
        for r in of_kind(objects, "Role")
        if r["metadata"]["name"].endswith("-provider-configs")
    }


def test_clusterwide_rbac_is_exactly_what_the_operator_uses() -> None:
    objects = template()
    assert granted(one(objects, "ClusterRole")) == {
        ("kms.alicloud.dev", "kmskeys", "get"),
        ("kms.alicloud.dev", "kmskeys", "list"),
        ("kms.alicloud.dev", "kmskeys", "watch"),
        ("kms.alicloud.dev", "kmskeys", "patch"),
        ("kms.alicloud.dev", "kmskeys/status", "patch"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        *PROVIDER_CONFIG_RULES,
        *CLUSTER_PROVIDER_CONFIG_RULES,
    }
    # namespaces get: the cluster's UID for claims (kube-system), and namespace labels for cluster configs.
    assert operator_roles(objects) == []
    # Secrets: only in the release namespace unless providerConfigs.namespaces names more.
    assert secret_roles(objects) == {"kmskey-system": SECRET_RULES}
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kms-kmskey-operator", "namespace": "kmskey-system"}
    ]


def test_namespaced_mode_renders_a_role_and_binding_per_watched_namespace() -> None:
    objects = template(NAMESPACED)
    roles = operator_roles(objects)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in of_kind(objects, "RoleBinding") if not b["metadata"]["name"].endswith("-configs")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert ("kms.alicloud.dev", "kmskeys", "patch") in granted(roles[0])
    assert granted(roles[0]) >= PROVIDER_CONFIG_RULES
    assert secret_roles(objects) == {ns: SECRET_RULES for ns in ("kmskey-system", "team-a", "team-b")}
    # What stays cluster-wide is kopf's scanning and ClusterKmsProviderConfigs: no access to any KmsKey or
    # Secret outside the namespaces.
    assert granted(one(objects, "ClusterRole")) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        *CLUSTER_PROVIDER_CONFIG_RULES,
    }
    without_scanning = template(
        {**NAMESPACED, "rbac.clusterScanning": False, "providerConfigs.clusterConfigs": False}
    )
    assert granted(one(without_scanning, "ClusterRole")) == {("", "namespaces", "get")}  # kube-system only
    assert env_of(without_scanning)["KMSKEY_CLUSTER_PROVIDER_CONFIGS"]["value"] == "false"
    named = template(
        {
            **NAMESPACED,
            "rbac.clusterScanning": False,
            "tenancy.clusterId": "prod-eu",
            "providerConfigs.clusterConfigs": False,
        }
    )
    assert of_kind(named, "ClusterRole") == []
    assert of_kind(named, "ClusterRoleBinding") == []


def test_secrets_are_readable_only_by_name_and_only_where_provider_configs_live() -> None:
    objects = template({"providerConfigs.namespaces": ["team-a", "team-b", "kmskey-system"]})
    assert secret_roles(objects) == {ns: SECRET_RULES for ns in ("kmskey-system", "team-a", "team-b")}
    bindings = {
        b["metadata"]["namespace"]: b
        for b in of_kind(objects, "RoleBinding")
        if b["metadata"]["name"].endswith("-provider-configs")
    }
    assert set(bindings) == {"kmskey-system", "team-a", "team-b"}
    assert bindings["team-a"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "kms-kmskey-operator", "namespace": "kmskey-system"}
    ]
    # Nowhere else, and never list or watch: a Secret is only ever read by name.
    for kind in RBAC_KINDS:
        for role in of_kind(objects, kind):
            secrets = {v for group, resource, v in granted(role) if resource == "secrets"}
            assert secrets <= {"get"}, role["metadata"]["name"]
            if secrets:
                assert kind == "Role"


def test_provider_config_values_become_the_operators_settings() -> None:
    env = env_of(
        template(
            {
                "providerConfigs.clusterDefault": "shared",
                "providerConfigs.operatorFallback": False,
                "providerConfigs.defaultCredentials": "none",
                "providerConfigs.recheckSeconds": 10,
                "providerConfigs.retrySeconds": 2,
                "providerConfigs.stsEndpoint": "sts-vpc.cn-hangzhou.aliyuncs.com",
            }
        )
    )
    assert {k: v["value"] for k, v in env.items() if "PROVIDER" in k or "CREDENTIALS" in k or "STS" in k} == {
        "KMSKEY_CLUSTER_PROVIDER_CONFIG": "shared",
        "KMSKEY_OPERATOR_CREDENTIALS_FALLBACK": "false",
        "KMSKEY_DEFAULT_CREDENTIALS": "none",
        "KMSKEY_CLUSTER_PROVIDER_CONFIGS": "true",
        "KMSKEY_CREDENTIALS_RECHECK_SECONDS": "10",
        "KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS": "300",
        "KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS": "2",
        "KMSKEY_STS_ENDPOINT": "sts-vpc.cn-hangzhou.aliyuncs.com",
    }
    assert "KMSKEY_STS_ENDPOINT" not in env_of(template())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"providerConfigs.defaultCredentials": "everyone"}, "defaultCredentials"),
        ({"providerConfigs.stsEndpoint": "https://sts.aliyuncs.com"}, "stsEndpoint"),
        ({"providerConfigs.clusterDefault": "Not A Name"}, "clusterDefault"),
    ],
)
def test_bad_provider_config_values_are_refused(values: dict[str, Any], message: str) -> None:
    args = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    result = helm("template", "kms", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


# -- HA ----------------------------------------------------------------------------------------------------


def test_single_replica_has_no_disruption_budget_or_peering() -> None:
    objects = template()
    assert of_kind(objects, "PodDisruptionBudget") == []
    assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev")]
    assert "POD_ID" not in env_of(objects)
    assert one(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_ha_renders_a_disruption_budget_peering_and_pod_identity() -> None:
    objects = template(HA)
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]
    peering = one(objects, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    peering_crds = {
        d["spec"]["names"]["kind"]: d
        for d in parse((CHART / "crds" / "kopfpeerings.kopf.dev.yaml").read_text())
    }
    crd = peering_crds["ClusterKopfPeering"]
    assert crd["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    assert "subresources" not in crd["spec"]["versions"][0]  # kopf patches status through the main resource
    env = env_of(objects)
    assert env["KMSKEY_PEERING"]["value"] == peering["metadata"]["name"]
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role = granted(one(objects, "ClusterRole"))
    assert {("kopf.dev", "clusterkopfpeerings", v) for v in ("list", "watch", "patch")} <= role
    patch_rule = next(r for r in one(objects, "ClusterRole")["rules"] if r.get("resourceNames"))
    assert patch_rule["resourceNames"] == [peering["metadata"]["name"]]
    assert patch_rule["verbs"] == ["patch"]


def test_namespaced_ha_peers_through_a_kopf_peering_per_namespace() -> None:
    objects = template({**HA, **NAMESPACED})
    assert sorted(p["metadata"]["namespace"] for p in of_kind(objects, "KopfPeering")) == ["team-a", "team-b"]
    assert of_kind(objects, "ClusterKopfPeering") == []
    for role in operator_roles(objects):
        assert ("kopf.dev", "kopfpeerings", "patch") in granted(role)


# -- the webhook -----------------------------------------------------------------------------------------


def _entry(objects: list[dict[str, Any]]) -> dict[str, Any]:
    configuration = one(objects, "ValidatingWebhookConfiguration")
    entries: list[dict[str, Any]] = configuration["webhooks"]
    assert len(entries) == 1
    return entries[0]


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["clusterwide", "namespaced"])
def test_webhook_configuration_matches_the_operators_own(values: dict[str, Any]) -> None:
    """The same rules, matchConditions and namespaceSelector as webhook.build_configuration writes."""
    entry = _entry(template(values))
    settings = webhook.WebhookSettings(namespaces=tuple(values.get("watchNamespaces", ())))
    expected = webhook.build_configuration(settings, {"url": "https://unused"})["webhooks"][0]
    for field in (
        "name",
        "rules",
        "matchConditions",
        "failurePolicy",
        "sideEffects",
        "matchPolicy",
        "timeoutSeconds",
        "admissionReviewVersions",
    ):
        assert entry[field] == expected[field], field
    assert entry.get("namespaceSelector") == expected.get("namespaceSelector")


def test_webhook_calls_the_chart_service_on_the_handler_path() -> None:
    objects = template()
    client = _entry(objects)["clientConfig"]
    service = next(
        s for s in of_kind(objects, "Service") if s["metadata"]["name"] == client["service"]["name"]
    )
    assert client["service"]["namespace"] == "kmskey-system"
    assert client["service"]["path"] == f"/{webhook.HANDLER_ID}"
    port = next(p for p in service["spec"]["ports"] if p["port"] == client["service"]["port"])
    assert port["targetPort"] == "webhook"
    assert _entry(objects)["failurePolicy"] == "Fail"
    assert _entry(objects)["timeoutSeconds"] <= 10


def test_generated_certificate_is_shared_by_the_secret_and_the_ca_bundle() -> None:
    objects = template()
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert _entry(objects)["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_cert_manager_issues_the_certificate_and_injects_the_ca() -> None:
    objects = template({"webhook.certificate.source": "certManager"})
    certificate = one(objects, "Certificate")
    assert certificate["spec"]["dnsNames"][0] == "kms-kmskey-operator-webhook.kmskey-system.svc"
    assert certificate["spec"]["issuerRef"]["name"] == one(objects, "Issuer")["metadata"]["name"]
    configuration = one(objects, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"kmskey-system/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in _entry(objects)["clientConfig"]
    assert of_kind(objects, "Secret") == []
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    named = template(
        {
            "webhook.certificate.source": "certManager",
            "webhook.certificate.certManager.issuerRef.name": "corp-ca",
        }
    )
    assert of_kind(named, "Issuer") == []
    assert one(named, "Certificate")["spec"]["issuerRef"]["name"] == "corp-ca"


def test_own_secret_and_ca_bundle_are_used_as_given() -> None:
    objects = template(
        {
            "webhook.certificate.source": "secret",
            "webhook.certificate.secretName": "tls",
            "webhook.certificate.caBundle": "Q0E=",
        }
    )
    assert of_kind(objects, "Secret") == []
    assert _entry(objects)["clientConfig"]["caBundle"] == "Q0E="
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "webhook-tls")["secret"]["secretName"] == "tls"


def test_webhook_off_renders_no_webhook_objects() -> None:
    objects = template({"webhook.enabled": False})
    assert of_kind(objects, "ValidatingWebhookConfiguration") == []
    assert of_kind(objects, "Secret") == []
    assert [s["metadata"]["name"] for s in of_kind(objects, "Service")] == ["kms-kmskey-operator-metrics"]
    assert container(objects)["readinessProbe"]["httpGet"]["path"] == "/readyz"


# -- the extra KMS CA bundle -------------------------------------------------------------------------------


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("source", ["configMap", "secret"])
def test_a_kms_ca_bundle_is_mounted_read_only_and_passed_to_the_operator(source: str) -> None:
    name_value = "kms.caBundle.configMapName" if source == "configMap" else "kms.caBundle.secretName"
    objects = template({name_value: "corporate-ca", "kms.caBundle.key": "bundle.pem"})
    bundle = Path(_plain_env(objects)["KMSKEY_KMS_CA_BUNDLE"])
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    assert str(bundle.parent) == mounts["kms-ca-bundle"]["mountPath"]
    assert mounts["kms-ca-bundle"]["readOnly"] is True
    volume = next(v for v in _pod(objects)["volumes"] if v["name"] == "kms-ca-bundle")
    assert volume[source]["items"] == [{"key": "bundle.pem", "path": bundle.name}]
    assert volume[source].get("name", volume[source].get("secretName")) == "corporate-ca"


def test_no_kms_ca_bundle_by_default_and_not_two_sources() -> None:
    objects = template()
    assert "KMSKEY_KMS_CA_BUNDLE" not in env_of(objects)
    assert all(v["name"] != "kms-ca-bundle" for v in _pod(objects)["volumes"])
    message = refusal({"kms.caBundle.configMapName": "a", "kms.caBundle.secretName": "b"})
    assert "kms.caBundle: set configMapName or secretName, not both" in message


# -- metrics and notes -------------------------------------------------------------------------------------


def test_metrics_service_and_optional_service_monitor() -> None:
    objects = template({"metrics.serviceMonitor.enabled": True})
    monitor = one(objects, "ServiceMonitor")
    service = next(s for s in of_kind(objects, "Service") if s["metadata"]["name"].endswith("-metrics"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    off = template({"metrics.enabled": False})
    assert _plain_env(off)["KMSKEY_METRICS_PORT"] == "0"
    assert not [s for s in of_kind(off, "Service") if s["metadata"]["name"].endswith("-metrics")]


def test_notes_show_how_to_list_kmskeys() -> None:
    # tests/e2e/test_helm.py applies the example as printed and waits for it in a watched namespace.
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "get kmskeys" in notes
    assert "namespace: {{ $exampleNamespace }}" in notes


# -- helm test -----------------------------------------------------------------------------------------


def _test_pod(values: dict[str, Any] | None = None) -> dict[str, Any]:
    pods = [
        o
        for o in of_kind(template(values or {}), "Pod")
        if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    assert len(pods) == 1
    return pods[0]


def test_helm_test_pod_checks_the_webhook_and_metrics_services_as_a_non_root_read_only_pod() -> None:
    pod = _test_pod()
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    (test,) = spec["containers"]
    assert test["image"] == container(template())["image"]
    assert test["securityContext"]["readOnlyRootFilesystem"] is True
    assert test["securityContext"]["capabilities"]["drop"] == ["ALL"]
    script = test["args"][0]
    compile(script, "helm-test", "exec")  # the inline check is valid Python
    env = {e["name"]: e["value"] for e in test["env"]}
    assert env["WEBHOOK_SERVICE"] == "kms-kmskey-operator-webhook"
    assert env["METRICS_SERVICE"] == "kms-kmskey-operator-metrics"
    assert env["WEBHOOK_PATH"] == "/validate-kmskey"
    assert spec["volumes"][0]["secret"]["secretName"] == "kms-kmskey-operator-webhook-tls"


def test_helm_test_pod_follows_the_webhook_and_metrics_settings() -> None:
    without = _test_pod({"webhook.enabled": False, "metrics.enabled": False})
    env = {e["name"]: e["value"] for e in without["spec"]["containers"][0]["env"]}
    assert env["WEBHOOK_ENABLED"] == "false"
    assert env["METRICS_ENABLED"] == "false"
    assert "volumes" not in without["spec"]
    own = _test_pod(
        {
            "webhook.certificate.source": "secret",
            "webhook.certificate.secretName": "mine",
            "webhook.certificate.caBundle": "Q0E=",
        }
    )
    own_env = {e["name"]: e["value"] for e in own["spec"]["containers"][0]["env"]}
    assert own_env["CA_BUNDLE"] == "Q0E="


def test_helm_test_pod_takes_the_operators_security_contexts() -> None:
    openshift = {"podSecurityContext.runAsUser": None, "podSecurityContext.runAsGroup": None}
    pod = _test_pod(openshift)
    assert (
        pod["spec"]["securityContext"]
        == one(template(openshift), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    )
    assert "runAsUser" not in pod["spec"]["securityContext"]
    assert pod["spec"]["containers"][0]["securityContext"] == container(template())["securityContext"]
