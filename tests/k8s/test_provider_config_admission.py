"""spec.providerConfigRef at admission, on the real kube-apiserver: the webhook, and the CRD's CEL rule.

The webhook runs alone (as in test_webhook.py), validating KmsKeys of one namespace (`team`); configs live
there and in another namespace (`other`). No reconciler runs: a test writes status.keyId and
status.providerConfig through the status subresource to stand in for "the key exists".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.k8s.test_webhook import (
    REFUSED,
    Webhook,
    apply,
    delete_configuration,
    kmskey,
    patch,
    start_webhook,
    unique,
)

pytestmark = pytest.mark.k8s

SECRET = {"source": "Secret", "secretRef": {"name": "kms-keys"}}


def config(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> str:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return json.dumps(
        {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    )


@pytest.fixture(scope="module")
def namespaces(kubectl: Kubectl, crd_installed: list[str]) -> Iterator[tuple[str, str, str]]:
    team, other = unique("team"), unique("other")
    for name in (team, other):
        kubectl("create", "namespace", name)
    kubectl("apply", "-f", "-", input=config("KmsProviderConfig", "default", {"credentials": SECRET}, other))
    kubectl("apply", "-f", "-", input=config("KmsProviderConfig", "mine", {"credentials": SECRET}, team))
    cluster = unique("shared")
    selector = {"matchLabels": {"kms.example.com/shared": "true"}}
    credentials = {"source": "Secret", "secretRef": {"name": "k", "namespace": other}}
    kubectl(
        "apply",
        "-f",
        "-",
        input=config(
            "ClusterKmsProviderConfig", cluster, {"namespaceSelector": selector, "credentials": credentials}
        ),
    )
    yield team, other, cluster
    # Later modules' operators watch the whole cluster: leave them none of these KmsKeys (no finalizer: no
    # operator ran here) and no config to check.
    for namespace in (team, other):
        kubectl("-n", namespace, "delete", "kmskeys,kmsproviderconfigs", "--all", "--wait=false", check=False)
    kubectl("delete", "ckpc", cluster, check=False)


@pytest.fixture(scope="module")
def webhook(
    kubectl: Kubectl,
    kubeconfig: Path,
    namespaces: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Webhook]:
    running = start_webhook(kubectl, kubeconfig, tmp_path_factory.mktemp("webhook"), namespaces[0])
    try:
        yield running
    finally:
        running.stop()
        delete_configuration(kubectl, running)


def test_another_namespaces_config_is_refused_naming_it(
    webhook: Webhook, kubectl: Kubectl, namespaces: Any
) -> None:
    team, other, _ = namespaces
    ref = {"name": "default", "namespace": other}
    result = apply(kubectl, team, kmskey(unique("k"), {"providerConfigRef": ref}), "create")
    assert result.returncode != 0
    assert REFUSED in result.stderr
    assert f"KmsProviderConfig {other}/default belongs to another namespace" in result.stderr


def test_a_cluster_config_is_refused_until_it_admits_the_namespace(
    webhook: Webhook, kubectl: Kubectl, namespaces: Any
) -> None:
    team, _, cluster = namespaces
    ref = {"kind": "ClusterKmsProviderConfig", "name": cluster}
    refused = apply(
        kubectl, team, kmskey(unique("k"), {"providerConfigRef": ref}), "create", "--dry-run=server"
    )
    assert refused.returncode != 0
    assert "admits only namespaces matching kms.example.com/shared=true" in refused.stderr

    kubectl("label", "namespace", team, "kms.example.com/shared=true")
    try:
        admitted = apply(
            kubectl, team, kmskey(unique("k"), {"providerConfigRef": ref}), "create", "--dry-run=server"
        )
        assert admitted.returncode == 0, admitted.stderr
    finally:
        kubectl("label", "namespace", team, "kms.example.com/shared-")


def test_a_config_that_does_not_exist_yet_is_admitted_with_a_warning(
    webhook: Webhook, kubectl: Kubectl, namespaces: Any
) -> None:
    team, _, _ = namespaces
    result = apply(kubectl, team, kmskey(unique("k"), {"providerConfigRef": {"name": "later"}}), "create")
    assert result.returncode == 0, result.stderr
    assert (
        f"KmsProviderConfig {team}/later does not exist yet" in result.stderr
    )  # kubectl prints warnings there


def record_key(kubectl: Kubectl, namespace: str, name: str, provider_config: str) -> None:
    status = {"status": {"keyId": "key-1", "providerConfig": provider_config}}
    result = patch(kubectl, namespace, name, status, "--subresource=status")
    assert result.returncode == 0, result.stderr


def test_the_reference_cannot_change_once_the_key_exists_in_the_webhook_and_in_cel(
    webhook: Webhook, kubectl: Kubectl, namespaces: Any
) -> None:
    team, _, _ = namespaces
    name = unique("k")
    created = apply(
        kubectl, team, kmskey(name, {"description": "x", "providerConfigRef": {"name": "mine"}}), "create"
    )
    assert created.returncode == 0, created.stderr
    record_key(kubectl, team, name, "KmsProviderConfig/mine")

    # The CRD's rule answers first (schema validation runs before webhooks); the webhook's own check of the
    # same rule is tested in tests/unit/test_provider_selection.py.
    moved = patch(kubectl, team, name, {"spec": {"providerConfigRef": {"name": "default"}}})
    assert moved.returncode != 0
    assert "spec.providerConfigRef cannot change once the KMS key exists" in moved.stderr
    removed = patch(kubectl, team, name, {"spec": {"providerConfigRef": None}})
    assert removed.returncode != 0
    assert "spec.providerConfigRef cannot change once the KMS key exists" in removed.stderr

    # With the webhook gone, the CRD's own rule still refuses; an edit elsewhere in the spec still passes.
    delete_configuration(kubectl, webhook)
    try:
        bypassed = patch(kubectl, team, name, {"spec": {"providerConfigRef": {"name": "default"}}})
        assert bypassed.returncode != 0
        assert "spec.providerConfigRef cannot change once the KMS key exists" in bypassed.stderr
        assert REFUSED not in bypassed.stderr
        fine = patch(kubectl, team, name, {"spec": {"description": "still editable"}})
        assert fine.returncode == 0, fine.stderr
    finally:
        webhook.process.stop()  # the next test module starts its own


def test_cel_allows_naming_the_config_the_key_came_through_and_keys_not_yet_created(
    kubectl: Kubectl, namespaces: Any
) -> None:
    team, _, _ = namespaces
    legacy = unique("k")
    assert apply(kubectl, team, kmskey(legacy, {"description": "x"}), "create").returncode == 0
    record_key(kubectl, team, legacy, "KmsProviderConfig/mine")
    same = patch(kubectl, team, legacy, {"spec": {"providerConfigRef": {"name": "mine"}}})
    assert same.returncode == 0, same.stderr
    other = unique("k")
    assert apply(kubectl, team, kmskey(other, {"description": "x"}), "create").returncode == 0
    record_key(kubectl, team, other, "KmsProviderConfig/mine")
    different = patch(kubectl, team, other, {"spec": {"providerConfigRef": {"name": "elsewhere"}}})
    assert different.returncode != 0
    # No key yet: the reference is still free to change (a typo stays fixable).
    fresh = unique("k")
    assert (
        apply(kubectl, team, kmskey(fresh, {"providerConfigRef": {"name": "typo"}}), "create").returncode == 0
    )
    fixed = patch(kubectl, team, fresh, {"spec": {"providerConfigRef": {"name": "mine"}}})
    assert fixed.returncode == 0, fixed.stderr
