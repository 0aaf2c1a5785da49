"""Several accounts, one operator: provider configs end to end, as users run it.

The chart is installed on the real API server and the operator runs as the chart's ServiceAccount (so the
Secrets it reads are exactly those the chart's RBAC grants), against one KMS emulator serving four accounts
and an STS that the unmodified alibabacloud-credentials library talks to:

    operator's own    1234567890123456   the emulator's default key (the chart's credentials Secret)
    team A            1111111111111111   RAM users team-a, team-a-next (rotation), bridge (AssumeRole base)
    team B            2222222222222222   RAM user team-b
    shared            3333333333333333   roles kms-from-a (trusts A's bridge with an ExternalId) and kms-rrsa
                                         (trusts the API server's ServiceAccount tokens for team-d's `kms`)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator import names
from tests.chart.helm import helm
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, condition, get, wait_for, wait_ready
from tests.e2e.test_helm import (
    create_credentials,
    emulator_values,
    forbidden_lines,
    install,
    operator_as_chart_configures_it,
)
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess

ACCOUNT_A = "1111111111111111"
ACCOUNT_B = "2222222222222222"
SHARED = "3333333333333333"
KEYS = {
    "team-a": ("ak-team-a", "team-a-secret-0123456789"),
    "team-a-next": ("ak-team-a-next", "team-a-next-secret-0123456789"),
    "bridge": ("ak-bridge", "bridge-secret-0123456789"),
    "team-b": ("ak-team-b", "team-b-secret-0123456789"),
}
OIDC_PROVIDER = f"acs:ram::{SHARED}:oidc-provider/e2e-cluster"


@dataclass
class Teams:
    a: str
    b: str
    c: str  # AssumeRole into the shared account
    d: str  # RRSA into the shared account
    system: str


def user(name: str) -> dict[str, Any]:
    key_id, secret = KEYS[name]
    return {"name": name, "accessKeys": [{"id": key_id, "secret": secret}]}


def trust(principal: dict[str, Any], condition: dict[str, Any]) -> dict[str, Any]:
    statement = {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Principal": principal,
        "Condition": condition,
    }
    return {"Version": "1", "Statement": [statement]}


@pytest.fixture(scope="module")
def teams(kubectl: Kubectl) -> Teams:
    suffix = secrets.token_hex(3)
    names = Teams(*(f"{n}-{suffix}" for n in ("team-a", "team-b", "team-c", "team-d", "kms-system")))
    for namespace in (names.a, names.b, names.c, names.d, names.system):
        kubectl("create", "namespace", namespace)
    kubectl("-n", names.d, "create", "serviceaccount", "kms")
    return names


@pytest.fixture(scope="module")
def emulator(control_plane: ControlPlane, teams: Teams) -> Iterator[EmulatorHandle]:
    document = {
        "accounts": [
            {"accountId": ACCOUNT_A, "users": [user("team-a"), user("team-a-next"), user("bridge")]},
            {"accountId": ACCOUNT_B, "users": [user("team-b")]},
            {
                "accountId": SHARED,
                "roles": [
                    {
                        "name": "kms-from-a",
                        "trustPolicy": trust(
                            {"RAM": [f"acs:ram::{ACCOUNT_A}:user/bridge"]},
                            {"StringEquals": {"sts:ExternalId": "team-c"}},
                        ),
                    },
                    {
                        "name": "kms-rrsa",
                        "trustPolicy": trust(
                            {"Federated": [OIDC_PROVIDER]},
                            {"StringEquals": {"oidc:sub": f"system:serviceaccount:{teams.d}:kms"}},
                        ),
                    },
                ],
                "oidcProviders": [
                    {
                        "name": "e2e-cluster",
                        "issuerUrl": control_plane.service_account_issuer,
                        "clientIds": ["sts.aliyuncs.com"],
                        "publicKeys": [control_plane.service_account_public_key.read_text()],
                    }
                ],
            },
        ]
    }
    # HTTPS, as real KMS and STS: the operator trusts the emulator's CA the way the chart makes it
    # (kms.caBundle), also for the credentials library's AssumeRole calls (kms/sts.trust_extra_ca).
    with run_emulator(accounts=parse_document(document), tls=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane,
    kubeconfig: Path,
    kubectl: Kubectl,
    crd_installed: list[str],
    emulator: EmulatorHandle,
    teams: Teams,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    create_credentials(kubectl, teams.system, emulator)
    values = emulator_values(
        emulator,
        **{
            "webhook.enabled": False,
            "providerConfigs.namespaces": [teams.a, teams.b, teams.c, teams.d],
            "providerConfigs.stsEndpoint": emulator.endpoint,
            "providerConfigs.recheckSeconds": 1,
            "providerConfigs.checkSeconds": 3,
            # Adoption is this file's way to ask another account for a key (tenancy's setting, #14).
            "extraEnv": [{"name": "KMSKEY_ADOPTION_NAMESPACES", "value": "*"}],
        },
    )
    release = install(kubeconfig, teams.system, values, name="acct")
    process = operator_as_chart_configures_it(
        release, control_plane, kubectl, emulator, tmp_path_factory.mktemp("accounts")
    )
    process.start()
    yield process
    # Later modules' operators watch the whole cluster: leave them no KmsKey or provider config of ours
    # (deletion with Retain releases each KmsKey without a KMS call).
    for namespace in (teams.a, teams.b, teams.c, teams.d):
        kubectl("-n", namespace, "delete", "kmskeys", "--all", "--timeout=60s", check=False)
        kubectl("-n", namespace, "delete", "kmsproviderconfigs", "--all", check=False)
    process.stop()
    helm("uninstall", "acct", "-n", teams.system, kubeconfig=kubeconfig, check=False)


def secret(kubectl: Kubectl, namespace: str, name: str, **data: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))


def keys_of(team_user: str) -> dict[str, str]:
    key_id, key_secret = KEYS[team_user]
    return {"accessKeyId": key_id, "accessKeySecret": key_secret}


def provider_config(kubectl: Kubectl, namespace: str, name: str, credentials: dict[str, Any]) -> None:
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"credentials": credentials},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))


def config_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    body = json.loads(kubectl("-n", namespace, "get", "kmsproviderconfig", name, "-o", "json").stdout)
    return dict(body.get("status") or {})


def wait_config(
    kubectl: Kubectl, namespace: str, name: str, ready: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = config_status(kubectl, namespace, name)
        found = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
        if found and found[0]["status"] == ready:
            return status
        time.sleep(0.3)
    raise AssertionError(f"KmsProviderConfig {namespace}/{name} never Ready={ready}: {status}")


def synced_false(
    kubectl: Kubectl, namespace: str, name: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    return wait_for(
        kubectl,
        namespace,
        name,
        lambda b: (
            condition(b, "Synced").get("status") == "False" and condition(b, "Synced").get("reason") == reason
        ),
        timeout,
        f"Synced=False {reason}",
    )


SECRET_SOURCE = {"source": "Secret", "secretRef": {"name": "kms-keys"}}


@pytest.fixture(scope="module")
def team_keys(operator: OperatorProcess, kubectl: Kubectl, teams: Teams) -> dict[str, dict[str, Any]]:
    """Team A and B each with a `default` KmsProviderConfig over its own Secret, and one KmsKey each."""
    secret(kubectl, teams.a, "kms-keys", **keys_of("team-a"))
    secret(kubectl, teams.b, "kms-keys", **keys_of("team-b"))
    for namespace in (teams.a, teams.b):
        provider_config(kubectl, namespace, "default", SECRET_SOURCE)
        apply(kubectl, namespace, "orders", {"description": f"orders of {namespace}"})
    return {ns: wait_ready(kubectl, ns, "orders", timeout=60) for ns in (teams.a, teams.b)}


def test_each_teams_key_lands_in_its_own_account(
    team_keys: dict[str, dict[str, Any]], kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    for namespace, account in ((teams.a, ACCOUNT_A), (teams.b, ACCOUNT_B)):
        status = team_keys[namespace]["status"]
        assert status["arn"] == f"acs:kms:{emulator.region_id}:{account}:key/{status['keyId']}"
        assert status["accountId"] == account
        assert status["providerConfig"] == "KmsProviderConfig/default"
        assert status["keyId"] in emulator.backend_for(account).keys
        config = wait_config(kubectl, namespace, "default", "True")
        assert config["accountId"] == account
        assert config["identityArn"] == f"acs:ram::{account}:user/{namespace.rsplit('-', 1)[0]}"
    # Nothing of these teams in the operator's own account. (The cluster-wide operator may meanwhile create
    # KmsKeys other modules left in other namespaces there: count only keys claimed from these namespaces.)
    ours = {teams.a, teams.b, teams.c, teams.d}
    claimed = {k: key.tags.get(names.OWNER_NAMESPACE_TAG_KEY) for k, key in emulator.backend.keys.items()}
    assert {k: ns for k, ns in claimed.items() if ns in ours} == {}
    table = kubectl("-n", teams.a, "get", "kpc").stdout
    assert ACCOUNT_A in table.splitlines()[1]


def test_team_b_cannot_see_or_adopt_team_as_key(
    team_keys: dict[str, dict[str, Any]], kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    victim = team_keys[teams.a]["status"]["keyId"]
    before = emulator.backend_for(ACCOUNT_A).keys[victim].description
    apply(kubectl, teams.b, "thief", {"keyId": victim, "description": "mine now"})

    body = wait_for(
        kubectl,
        teams.b,
        "thief",
        lambda b: condition(b, "Ready").get("reason") == "KeyNotFound",
        60,
        "Ready=False KeyNotFound",
    )
    assert ACCOUNT_B not in json.dumps(body["status"].get("arn") or "")
    # KMS answered "not found" in account B; account A's key saw no call from team B.
    assert emulator.backend_for(ACCOUNT_A).keys[victim].description == before
    from_b = [
        r for r in emulator.calls() if r.access_key_id == KEYS["team-b"][0] and victim in json.dumps(r.params)
    ]
    assert from_b
    assert {r.account_id for r in from_b} == {ACCOUNT_B}
    assert {r.code for r in from_b if r.action == "DescribeKey"} == {"Forbidden.KeyNotFound"}


def test_a_namespace_cannot_use_another_namespaces_config(
    team_keys: dict[str, dict[str, Any]], kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    calls_in_a = sum(emulator.call_counts(ACCOUNT_A).values())
    apply(
        kubectl,
        teams.b,
        "borrower",
        {"description": "x", "providerConfigRef": {"name": "default", "namespace": teams.a}},
    )
    body = synced_false(kubectl, teams.b, "borrower", "ProviderConfigNotAllowed")
    message = condition(body, "Synced")["message"]
    assert f"KmsProviderConfig {teams.a}/default belongs to another namespace" in message
    assert "keyId" not in body["status"]
    time.sleep(1)
    assert sum(emulator.call_counts(ACCOUNT_A).values()) - calls_in_a < 10  # only team A's own resyncs
    assert not [r for r in emulator.calls() if r.action == "CreateKey" and r.params.get("Description") == "x"]


def test_assume_role_on_a_secret_reaches_a_third_account(
    operator: OperatorProcess, kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    secret(kubectl, teams.c, "bridge-keys", **keys_of("bridge"))
    provider_config(
        kubectl,
        teams.c,
        "shared",
        {
            "source": "AssumeRole",
            "assumeRole": {
                "roleArn": f"acs:ram::{SHARED}:role/kms-from-a",
                "externalId": "team-c",
                "baseCredentials": {"source": "Secret", "secretRef": {"name": "bridge-keys"}},
            },
        },
    )
    apply(kubectl, teams.c, "reports", {"description": "via a role", "providerConfigRef": {"name": "shared"}})

    status = wait_ready(kubectl, teams.c, "reports", timeout=60)["status"]
    assert status["accountId"] == SHARED
    assert status["keyId"] in emulator.backend_for(SHARED).keys
    config = wait_config(kubectl, teams.c, "shared", "True")
    assert config["identityArn"] == f"acs:ram::{SHARED}:assumed-role/kms-from-a/kmskey-{teams.c}"
    assumed = [r for r in emulator.sts_calls() if r.action == "AssumeRole" and r.status == 200]
    assert {r.access_key_id for r in assumed} == {KEYS["bridge"][0]}


def test_rrsa_with_a_service_account_token_reaches_the_roles_account(
    operator: OperatorProcess, kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    rrsa = {
        "roleArn": f"acs:ram::{SHARED}:role/kms-rrsa",
        "oidcProviderArn": OIDC_PROVIDER,
        "serviceAccountName": "kms",
    }
    provider_config(kubectl, teams.d, "default", {"source": "RRSA", "rrsa": rrsa})
    apply(kubectl, teams.d, "tokens", {"description": "via RRSA"})

    status = wait_ready(kubectl, teams.d, "tokens", timeout=60)["status"]
    assert status["accountId"] == SHARED
    assert status["keyId"] in emulator.backend_for(SHARED).keys
    oidc = [r for r in emulator.sts_calls() if r.action == "AssumeRoleWithOIDC" and r.status == 200]
    assert oidc
    # Another team's config naming the same role is refused by the role's trust policy (its token's
    # subject is system:serviceaccount:<team-b>:kms).
    kubectl("-n", teams.b, "create", "serviceaccount", "kms")
    provider_config(kubectl, teams.b, "borrowed-role", {"source": "RRSA", "rrsa": rrsa})
    refused = wait_config(kubectl, teams.b, "borrowed-role", "False")
    assert "AuthenticationFail.NoPermission" in refused["lastError"]


def test_a_rotated_secret_is_used_without_a_restart(
    team_keys: dict[str, dict[str, Any]],
    operator: OperatorProcess,
    kubectl: Kubectl,
    emulator: EmulatorHandle,
    teams: Teams,
) -> None:
    pid = operator.process.pid if operator.process else None
    secret(kubectl, teams.a, "kms-keys", **keys_of("team-a-next"))
    time.sleep(1.5)  # past providerConfigs.recheckSeconds
    apply(kubectl, teams.a, "orders", {"description": "after rotation"})

    wait_for(
        kubectl,
        teams.a,
        "orders",
        lambda b: (
            b["status"].get("observedGeneration") == b["metadata"]["generation"]
            and condition(b, "Synced").get("status") == "True"
        ),
        60,
        "the description update",
    )
    updates = [r for r in emulator.calls() if r.action == "UpdateKeyDescription" and r.status == 200]
    assert updates[-1].access_key_id == KEYS["team-a-next"][0]
    assert updates[-1].account_id == ACCOUNT_A
    assert operator.process is not None
    assert operator.process.pid == pid


def test_a_wrong_or_expired_credential_fails_only_its_configs_keys(
    team_keys: dict[str, dict[str, Any]], kubectl: Kubectl, emulator: EmulatorHandle, teams: Teams
) -> None:
    key_id, _ = KEYS["team-b"]
    secret(kubectl, teams.b, "kms-keys", accessKeyId=key_id, accessKeySecret="a-wrong-secret-0123456789")
    time.sleep(1.5)
    apply(kubectl, teams.b, "orders", {"description": "while broken"})
    apply(kubectl, teams.a, "orders", {"description": "unaffected"})

    broken = synced_false(kubectl, teams.b, "orders", "ProviderConfigNotReady")
    message = condition(broken, "Synced")["message"]
    assert message.startswith(f"KmsProviderConfig {teams.b}/default: STS refused the credentials")
    assert "SignatureDoesNotMatch" in message
    assert condition(broken, "Ready")["status"] == "True"  # the key is still there, unchanged
    fine = wait_ready(kubectl, teams.a, "orders")
    assert emulator.backend_for(ACCOUNT_A).keys[fine["status"]["keyId"]].description == "unaffected"
    status = wait_config(kubectl, teams.b, "default", "False")
    assert "SignatureDoesNotMatch" in status["lastError"]

    # An expiring STS triple in a Secret: it works, then its keys (only) report the expiry.
    token = emulator.issue_sts_token(duration_seconds=8)
    secret(
        kubectl,
        teams.c,
        "sts-keys",
        accessKeyId=token.access_key_id,
        accessKeySecret=token.access_key_secret,
        securityToken=token.security_token or "",
    )
    sts_source = dict(SECRET_SOURCE, secretRef={"name": "sts-keys", "securityTokenKey": "securityToken"})
    provider_config(kubectl, teams.c, "expiring", sts_source)
    apply(kubectl, teams.c, "short", {"description": "x", "providerConfigRef": {"name": "expiring"}})
    wait_ready(kubectl, teams.c, "short", timeout=30)
    time.sleep(9)
    apply(
        kubectl, teams.c, "short", {"description": "after expiry", "providerConfigRef": {"name": "expiring"}}
    )
    # KMS refuses the expired triple (AccessDenied, naming the config); the config is then re-checked, and
    # the next reconcile finds STS refusing it too (ProviderConfigNotReady). Either names the config.
    expired = wait_for(
        kubectl,
        teams.c,
        "short",
        lambda b: condition(b, "Synced").get("reason") in ("AccessDenied", "ProviderConfigNotReady"),
        60,
        "Synced=False for the expired token",
    )
    message = condition(expired, "Synced")["message"]
    assert "InvalidAccessKeyId.NotFound" in message
    assert f"KmsProviderConfig {teams.c}/expiring" in message
    assert "InvalidAccessKeyId.NotFound" in wait_config(kubectl, teams.c, "expiring", "False")["lastError"]
    assert condition(get(kubectl, teams.c, "reports"), "Synced")["status"] == "True"

    # Fixed: team B's key recovers by itself.
    secret(kubectl, teams.b, "kms-keys", **keys_of("team-b"))
    recovered = wait_ready(kubectl, teams.b, "orders", timeout=180)
    assert emulator.backend_for(ACCOUNT_B).keys[recovered["status"]["keyId"]].description == "while broken"


def test_credentials_never_appear_in_logs_events_or_status(
    team_keys: dict[str, dict[str, Any]], operator: OperatorProcess, kubectl: Kubectl, teams: Teams
) -> None:
    leaks = [s for _, s in KEYS.values()] + ["a-wrong-secret-0123456789"]
    log = operator.log()
    events = kubectl("get", "events", "-A", "-o", "json").stdout
    statuses = kubectl("get", "kmskeys,kmsproviderconfigs", "-A", "-o", "json").stdout
    for value in leaks:
        assert value not in log
        assert value not in events
        assert value not in statuses
    assert not forbidden_lines(log), "\n".join(forbidden_lines(log))
