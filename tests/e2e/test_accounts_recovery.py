"""A KmsKey waiting on a broken provider config reconciles within seconds of the fix, not at its backoff.

The chart's defaults for provider configs (credentials checked every 300 s, re-checked every
`providerConfigs.retrySeconds` = 5 s while KmsKeys wait) and drift checks every 600 s, so nothing but the
fix can wake the keys early. Each key is left failing until kopf's own retry of it is at least
MIN_BACKOFF_LEFT seconds away (the annotation kopf keeps its retry in says when), then its config is fixed:

    missing-secret   the config names a Secret that does not exist yet     -> the Secret is created
    bad-keys         the Secret holds keys STS refuses                     -> the Secret is fixed
    no-config        spec.providerConfigRef names a config that is absent  -> the config is created

Each must be Ready well before kopf's retry would have come (and within FIX_TO_READY seconds).
"""

from __future__ import annotations

import datetime
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator import names
from tests.chart.helm import helm
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, condition, get, wait_ready
from tests.e2e.test_accounts import ACCOUNT_A, KEYS, keys_of, provider_config, secret, user
from tests.e2e.test_helm import (
    create_credentials,
    emulator_values,
    install,
    operator_as_chart_configures_it,
)
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess

MIN_BACKOFF_LEFT = 15.0  # seconds until kopf's retry, at the fix
FIX_TO_READY = 15.0  # seconds from the fix to Ready (the re-check every 5 s, then one reconcile)
RETRY_ANNOTATION = f"{names.GROUP}/reconcile-create"  # kopf's progress record of the create handler


@pytest.fixture(scope="module")
def team(kubectl: Kubectl) -> tuple[str, str]:
    suffix = secrets.token_hex(3)
    namespace, system = f"recover-{suffix}", f"recover-system-{suffix}"
    for name in (namespace, system):
        kubectl("create", "namespace", name)
    return namespace, system


@pytest.fixture(scope="module")
def emulator(control_plane: ControlPlane) -> Iterator[EmulatorHandle]:
    document = {"accounts": [{"accountId": ACCOUNT_A, "users": [user("team-a")]}]}
    with run_emulator(accounts=parse_document(document), tls=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane,
    kubeconfig: Path,
    kubectl: Kubectl,
    crd_installed: list[str],
    emulator: EmulatorHandle,
    team: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    namespace, system = team
    create_credentials(kubectl, system, emulator)
    values = emulator_values(
        emulator,
        **{
            "webhook.enabled": False,
            "providerConfigs.namespaces": [namespace],
            "providerConfigs.stsEndpoint": emulator.endpoint,
            # The chart's defaults (emulator_values makes drift checks every 3 s for other modules).
            "reconcile.resyncSeconds": 600,
        },
    )
    release = install(kubeconfig, system, values, name="recover")
    env = release.manifest()
    deployment = next(o for o in env if o["kind"] == "Deployment")
    chart_env = {
        e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert chart_env["KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS"] == "300"
    assert chart_env["KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS"] == "5"
    process = operator_as_chart_configures_it(
        release, control_plane, kubectl, emulator, tmp_path_factory.mktemp("recover")
    )
    process.start()
    yield process
    kubectl("-n", namespace, "delete", "kmskeys", "--all", "--timeout=60s", check=False)
    kubectl("-n", namespace, "delete", "kmsproviderconfigs", "--all", check=False)
    process.stop()
    helm("uninstall", "recover", "-n", system, kubeconfig=kubeconfig, check=False)


def retry_due(body: dict[str, Any]) -> float | None:
    """Seconds until kopf retries the key's create handler (None: no retry pending)."""
    raw = (body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    if not raw:
        return None
    delayed = json.loads(raw).get("delayed")
    if not delayed:
        return None
    at = datetime.datetime.fromisoformat(delayed)
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)  # kopf writes UTC without an offset
    return (at - datetime.datetime.now(datetime.UTC)).total_seconds()


def test_keys_on_a_broken_config_are_ready_within_seconds_of_the_fix(
    operator: OperatorProcess, kubectl: Kubectl, emulator: EmulatorHandle, team: tuple[str, str]
) -> None:
    namespace, _ = team
    key_id, _secret = KEYS["team-a"]
    secret(kubectl, namespace, "bad-keys", accessKeyId=key_id, accessKeySecret="a-wrong-secret-0123456789")
    source = {"source": "Secret", "secretRef": {"name": "later"}}
    provider_config(kubectl, namespace, "missing-secret", source)
    provider_config(kubectl, namespace, "bad", {"source": "Secret", "secretRef": {"name": "bad-keys"}})
    broken = {
        "missing-secret": ("missing-secret", "ProviderConfigNotReady", "Secret"),
        "bad-keys": ("bad", "ProviderConfigNotReady", "SignatureDoesNotMatch"),
        "no-config": ("later-config", "ProviderConfigNotFound", "does not exist"),
    }
    for name, (config, _, _) in broken.items():
        apply(kubectl, namespace, name, {"description": name, "providerConfigRef": {"name": config}})

    # Failing, and backing off: until kopf's next retry of every key is at least MIN_BACKOFF_LEFT away.
    deadline = time.monotonic() + 240
    due: dict[str, float] = {}
    while len(due) < len(broken):
        assert time.monotonic() < deadline, f"the keys never all backed off {MIN_BACKOFF_LEFT}s at once"
        due = {}
        for name, (config, reason, words) in broken.items():
            body = get(kubectl, namespace, name)
            synced = condition(body, "Synced")
            left = retry_due(body)
            if synced.get("status") == "False" and left is not None and left >= MIN_BACKOFF_LEFT:
                assert synced["reason"] == reason, synced
                assert words in synced["message"], synced
                assert config in synced["message"], synced
                due[name] = time.monotonic() + left
        time.sleep(0.5)
    assert all(condition(get(kubectl, namespace, n), "Ready")["status"] == "False" for n in broken)

    fixed_at = time.monotonic()
    secret(kubectl, namespace, "later", **keys_of("team-a"))
    secret(kubectl, namespace, "bad-keys", **keys_of("team-a"))
    secret(kubectl, namespace, "good-keys", **keys_of("team-a"))
    provider_config(
        kubectl, namespace, "later-config", {"source": "Secret", "secretRef": {"name": "good-keys"}}
    )

    took: dict[str, float] = {}
    for name in broken:
        body = wait_ready(kubectl, namespace, name, timeout=max(1.0, min(due.values()) - time.monotonic()))
        took[name] = time.monotonic() - fixed_at
        assert emulator.backend_for(ACCOUNT_A).keys[body["status"]["keyId"]].description == name
    print(
        f"fix to Ready: {took}; kopf's retries were due in {[round(d - fixed_at, 1) for d in due.values()]}"
    )
    for name, seconds in took.items():
        assert seconds <= FIX_TO_READY, f"{name}: Ready {seconds:.1f}s after the fix"
        assert fixed_at + seconds < due[name] - 3, f"{name}: Ready only around its own retry"
