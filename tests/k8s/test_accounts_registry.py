"""The accounts registry against the real API server and the emulator's KMS and STS.

Secrets are read from the API server, ServiceAccount tokens come from its TokenRequest API (signed with its
service-account key, which the emulator's OIDC provider trusts), and every credential is checked by the
emulator's STS through the unmodified alibabacloud-credentials library.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from kms_emulator.accounts import parse_document
from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator.accounts import selection
from kmskey_operator.accounts.kube import KubeReader
from kmskey_operator.accounts.refs import ConfigKind, ConfigRef
from kmskey_operator.accounts.registry import PROVIDER_CONFIG_NOT_READY, Registry, Target, Unresolved
from kmskey_operator.kms import sts
from kmskey_operator.kms.errors import KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.provider_configs import StatusChecker
from kmskey_operator.settings import Settings
from tests.conftest import Kubectl
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.k8s

HOME = "1111111111111111"
TEAM = "2222222222222222"
OIDC_PROVIDER = f"acs:ram::{TEAM}:oidc-provider/test-cluster"


def accounts_document(control_plane: ControlPlane) -> dict[str, Any]:
    def allow(principal: dict[str, Any], condition: dict[str, Any] | None = None) -> dict[str, Any]:
        statement: dict[str, Any] = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}
        if condition:
            statement["Condition"] = condition
        return {"Version": "1", "Statement": [statement]}

    return {
        "accounts": [
            {
                "accountId": HOME,
                "users": [
                    {"name": "team-a", "accessKeys": [{"id": "ak-a1", "secret": "secret-a1-0123456789"}]},
                    {
                        "name": "team-a-next",
                        "accessKeys": [{"id": "ak-a2", "secret": "secret-a2-0123456789"}],
                    },
                ],
            },
            {
                "accountId": TEAM,
                "roles": [
                    {
                        "name": "kms-cross",
                        "trustPolicy": allow(
                            {"RAM": [f"acs:ram::{HOME}:user/team-a"]},
                            {"StringEquals": {"sts:ExternalId": "team-a"}},
                        ),
                    },
                    {
                        "name": "kms-rrsa",
                        "trustPolicy": allow(
                            {"Federated": [OIDC_PROVIDER]},
                            {"StringLike": {"oidc:sub": "system:serviceaccount:*:kms"}},
                        ),
                    },
                ],
                "oidcProviders": [
                    {
                        "name": "test-cluster",
                        "issuerUrl": control_plane.service_account_issuer,
                        "clientIds": ["sts.aliyuncs.com"],
                        "publicKeys": [control_plane.service_account_public_key.read_text()],
                    }
                ],
            },
        ]
    }


@pytest.fixture(scope="module")
def emulator(control_plane: ControlPlane) -> Iterator[EmulatorHandle]:
    with run_emulator(accounts=parse_document(accounts_document(control_plane))) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_config_left_behind(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """Later modules' operators watch the whole cluster: leave them no provider config to check."""
    yield
    kubectl("-n", namespace, "delete", "kmsproviderconfigs", "--all", check=False)


_READERS: list[KubeReader] = []
T = TypeVar("T")
R = TypeVar("R", bound=KubeReader)


def opened(reader: R) -> R:
    """A reader this module closes after each run (its session belongs to that run's event loop)."""
    _READERS.append(reader)
    return reader


def run(awaitable: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, closing the readers' API sessions on the loop that opened them."""

    async def main() -> T:
        try:
            return await awaitable
        finally:
            for reader in _READERS:
                await reader.aclose()

    return asyncio.run(main())


def make_registry(emulator: EmulatorHandle, **overrides: Any) -> Registry:
    settings = Settings(
        kms_endpoint=emulator.endpoint,
        kms_protocol="http",
        sts_endpoint=emulator.endpoint,
        credentials_recheck_seconds=overrides.pop("recheck", 0.2),
        kms_call_retries=0,
        **overrides,
    )
    operator_gateway = KmsGateway(settings, credential=None)
    return Registry(settings, reader=opened(KubeReader()), operator_gateway=operator_gateway)


def config_body(
    namespace: str, name: str, credentials: dict[str, Any], generation: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": {"credentials": credentials},
    }


def create_secret(kubectl: Kubectl, namespace: str, name: str, **data: str) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in data.items()]
    kubectl("-n", namespace, "create", "secret", "generic", name, *literals)


def replace_secret(kubectl: Kubectl, namespace: str, name: str, **data: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))


def resolve(registry: Registry, namespace: str, spec: dict[str, Any] | None = None) -> Target | Unresolved:
    return run(registry.target_for(namespace, spec or {}, {}))


async def create_key(target: Target) -> str:
    meta = await target.gateway.create_key(target.default_region, {"Description": "registry test"})
    return meta.arn


SECRET = {"source": "Secret", "secretRef": {"name": "kms-keys"}}


def test_a_namespace_default_config_serves_its_keys_in_its_account_and_rotation_takes_effect(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789")
    registry = make_registry(emulator)
    registry.upsert(config_body(namespace, "default", SECRET), ConfigKind.NAMESPACED)

    target = resolve(registry, namespace)
    assert isinstance(target, Target)
    assert target.account_id == HOME
    assert target.record == "KmsProviderConfig/default"
    assert run(create_key(target)).startswith(f"acs:kms:cn-hangzhou:{HOME}:key/")

    replace_secret(
        kubectl, namespace, "kms-keys", accessKeyId="ak-a2", accessKeySecret="secret-a2-0123456789"
    )
    time.sleep(0.3)  # past credentials_recheck_seconds: the next use reads the Secret again
    emulator.reset_calls()
    rotated = resolve(registry, namespace)
    assert isinstance(rotated, Target)
    run(create_key(rotated))
    assert set(emulator.call_counts_by_access_key()) == {"ak-a2"}


def test_a_wrong_or_incomplete_secret_gives_a_reason_naming_the_config_and_the_secret(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    registry = make_registry(emulator)
    registry.upsert(config_body(namespace, "default", SECRET), ConfigKind.NAMESPACED)

    missing = resolve(registry, namespace)
    assert isinstance(missing, Unresolved)
    assert missing.reason == PROVIDER_CONFIG_NOT_READY
    assert (
        missing.message
        == f"KmsProviderConfig {namespace}/default: Secret {namespace}/kms-keys does not exist"
    )

    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1")
    incomplete = resolve(registry, namespace)
    assert isinstance(incomplete, Unresolved)
    assert "has no key 'accessKeySecret'" in incomplete.message

    replace_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="not-the-secret")
    time.sleep(0.3)
    wrong = resolve(registry, namespace)
    assert isinstance(wrong, Unresolved)
    assert wrong.message.startswith(f"KmsProviderConfig {namespace}/default: STS refused the credentials")
    assert "SignatureDoesNotMatch" in wrong.message
    assert "not-the-secret" not in wrong.message


def test_assume_role_on_secret_credentials_reaches_the_other_account(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789")
    registry = make_registry(emulator)
    base = {"source": "Secret", "secretRef": {"name": "kms-keys"}}
    for name, external_id in (("cross", "team-a"), ("wrong-id", "team-b")):
        credentials = {
            "source": "AssumeRole",
            "assumeRole": {
                "roleArn": f"acs:ram::{TEAM}:role/kms-cross",
                "externalId": external_id,
                "baseCredentials": base,
            },
        }
        registry.upsert(config_body(namespace, name, credentials), ConfigKind.NAMESPACED)

    target = resolve(registry, namespace, {"providerConfigRef": {"name": "cross"}})
    assert isinstance(target, Target)
    assert target.account_id == TEAM
    assert run(create_key(target)).startswith(f"acs:kms:cn-hangzhou:{TEAM}:key/")
    refused = resolve(registry, namespace, {"providerConfigRef": {"name": "wrong-id"}})
    assert isinstance(refused, Unresolved)
    assert "NoPermission" in refused.message


def test_rrsa_with_a_service_account_token_of_the_configs_namespace(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    for account in ("kms", "other"):
        kubectl("-n", namespace, "create", "serviceaccount", account)
    registry = make_registry(emulator)
    for name, account in (("rrsa", "kms"), ("untrusted", "other")):
        credentials = {
            "source": "RRSA",
            "rrsa": {
                "roleArn": f"acs:ram::{TEAM}:role/kms-rrsa",
                "oidcProviderArn": OIDC_PROVIDER,
                "serviceAccountName": account,
            },
        }
        registry.upsert(config_body(namespace, name, credentials), ConfigKind.NAMESPACED)

    target = resolve(registry, namespace, {"providerConfigRef": {"name": "rrsa"}})
    assert isinstance(target, Target), target
    assert target.account_id == TEAM
    oidc_calls = [r for r in emulator.sts_calls() if r.action == "AssumeRoleWithOIDC" and r.status == 200]
    assert any(r.params.get("RoleSessionName") == f"kmskey-{namespace}" for r in oidc_calls)
    refused = resolve(registry, namespace, {"providerConfigRef": {"name": "untrusted"}})
    assert isinstance(refused, Unresolved)
    assert "AuthenticationFail.NoPermission" in refused.message


def test_the_operators_own_credentials_are_refused_in_a_namespaced_config_by_default(
    emulator: EmulatorHandle, namespace: str
) -> None:
    registry = make_registry(emulator)
    registry.upsert(config_body(namespace, "default", {"source": "Default"}), ConfigKind.NAMESPACED)

    refused = resolve(registry, namespace)
    assert isinstance(refused, Unresolved)
    assert "is not allowed in namespaced provider configs" in refused.message


def test_kms_refusing_the_credentials_names_the_config_and_forces_a_fresh_read(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789")
    registry = make_registry(emulator, recheck=3600)
    registry.upsert(config_body(namespace, "default", SECRET), ConfigKind.NAMESPACED)
    target = resolve(registry, namespace)
    assert isinstance(target, Target)

    emulator.set_fault("DescribeKey", code="InvalidAccessKeyId.NotFound", status=404, times=1)
    try:
        with pytest.raises(KmsError) as error:
            run(target.gateway.describe_key("cn-hangzhou", "whatever"))
    finally:
        emulator.clear_faults()
    assert f"[credentials of KmsProviderConfig {namespace}/default (account {HOME})]" in str(error.value)
    emulator.reset_calls()
    replace_secret(
        kubectl, namespace, "kms-keys", accessKeyId="ak-a2", accessKeySecret="secret-a2-0123456789"
    )
    fresh = resolve(registry, namespace)  # re-read at once, although the recheck interval is an hour
    assert isinstance(fresh, Target)
    run(create_key(fresh))
    assert set(emulator.call_counts_by_access_key()) == {"ak-a2"}


def test_a_cluster_config_serves_only_the_namespaces_its_selector_admits(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, "kms=shared")
    other = f"other-{secrets.token_hex(3)}"
    kubectl("create", "namespace", other)
    secret_namespace = namespace
    create_secret(
        kubectl, secret_namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789"
    )
    registry = make_registry(emulator, cluster_provider_config="shared", operator_credentials_fallback=False)
    body = {
        "metadata": {"name": "shared", "uid": "uid-shared", "generation": 1},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kms": "shared"}},
            "credentials": {
                "source": "Secret",
                "secretRef": {"name": "kms-keys", "namespace": secret_namespace},
            },
        },
    }
    registry.upsert(body, ConfigKind.CLUSTER)

    admitted = resolve(registry, namespace)
    assert isinstance(admitted, Target)
    assert admitted.record == "ClusterKmsProviderConfig/shared"
    outside = resolve(registry, other)
    assert isinstance(outside, Unresolved)
    assert outside.reason == selection.NO_PROVIDER_CONFIG
    named = resolve(
        registry, other, {"providerConfigRef": {"kind": "ClusterKmsProviderConfig", "name": "shared"}}
    )
    assert isinstance(named, Unresolved)
    assert named.reason == selection.PROVIDER_CONFIG_NOT_ALLOWED
    assert run(registry.check(ConfigRef(ConfigKind.CLUSTER, "shared"))).account_id == HOME


def test_a_config_the_watch_has_not_delivered_yet_is_read_before_falling_back(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str, crd_installed: list[str]
) -> None:
    # Applied just before its KmsKey, the config may not be in the watch-fed index yet: the registry must not
    # conclude "no config" and serve the key from the operator's own account.
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789")
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"credentials": SECRET},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))
    registry = make_registry(emulator)  # its index is empty: nothing was upserted

    target = resolve(registry, namespace)
    assert isinstance(target, Target)
    assert target.record == "KmsProviderConfig/default"
    assert target.account_id == HOME


class CountingReader(KubeReader):
    """The real reader, counting the config reads (the boundary this test is about)."""

    def __init__(self) -> None:
        super().__init__()
        self.config_reads = 0

    async def provider_config(self, ref: ConfigRef) -> Any:
        self.config_reads += 1
        return await super().provider_config(ref)


def test_one_read_that_found_no_config_answers_for_kmskeys_created_before_it_only(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str, crd_installed: list[str]
) -> None:
    settings = Settings(kms_endpoint=emulator.endpoint, kms_protocol="http", sts_endpoint=emulator.endpoint)
    reader = opened(CountingReader())
    registry = Registry(settings, reader=reader, operator_gateway=KmsGateway(settings))
    old = time.time() - 60

    async def burst() -> list[Target | Unresolved]:
        return [await registry.target_for(namespace, {}, {}, created_at=old) for _ in range(50)]

    targets = run(burst())
    assert all(isinstance(t, Target) and t.record == "Operator" for t in targets)
    assert reader.config_reads == 1  # the first read answers for the other 49 (all created before it)

    # A config applied now, and a KmsKey created after it: the stale "absent" cannot answer for that key.
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789")
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"credentials": SECRET},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))
    later = run(registry.target_for(namespace, {}, {}, created_at=time.time()))
    assert isinstance(later, Target)
    assert later.record == "KmsProviderConfig/default"
    assert reader.config_reads == 2


def test_a_config_keys_wait_on_is_rechecked_cheaply_and_wakes_them_when_it_works(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    """Quick re-checks while KmsKeys wait: STS is asked again only once the Secret changed; the check that
    finds the config usable hands its waiting keys over (provider_configs.StatusChecker, accounts/waiting)."""
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="not-the-secret")
    registry = make_registry(emulator)
    registry.upsert(config_body(namespace, "default", SECRET), ConfigKind.NAMESPACED)
    ref = ConfigRef(ConfigKind.NAMESPACED, "default", namespace)
    woken: list[str] = []
    registry.waiting.on_usable = woken.extend
    written: list[Any] = []

    async def write(_ref: ConfigRef, body: Any) -> None:
        written.append(body)

    checker = StatusChecker(registry, write, interval=300, retry=0.1, active=lambda: True)

    refused = resolve(registry, namespace)
    assert isinstance(refused, Unresolved)
    assert refused.waits_for == ref  # what the reconciler records the KmsKey as waiting on
    registry.waiting.wait("uid-waiting", ref)
    full = run(checker.check(ref))
    assert full is not None
    assert not full.ready
    emulator.reset_sts_calls()
    for _ in range(3):
        quick = run(checker.check(ref, quick=True))
        assert quick is not None
        assert not quick.ready
        assert "SignatureDoesNotMatch" in quick.message
    assert emulator.sts_calls() == []  # the same refused keys: the Secret was read, STS was not asked
    assert woken == []

    replace_secret(
        kubectl, namespace, "kms-keys", accessKeyId="ak-a1", accessKeySecret="secret-a1-0123456789"
    )
    fixed = run(checker.check(ref, quick=True))
    assert fixed is not None
    assert fixed.ready
    assert [r.action for r in emulator.sts_calls()] == ["GetCallerIdentity"]
    assert woken == ["uid-waiting"]
    assert not registry.waiting.waits_on(ref)
    assert written[-1]["status"]["accountId"] == HOME


def test_a_config_in_the_operators_own_account_shares_the_operators_rate_limiter(
    emulator: EmulatorHandle, kubectl: Kubectl, namespace: str
) -> None:
    """KMS's quota is the account's: the operator's own credentials and a config's keys in the same account
    (another RAM user of it) wait on one limiter, so together they never go over the account's rate."""
    create_secret(kubectl, namespace, "kms-keys", accessKeyId="ak-a2", accessKeySecret="secret-a2-0123456789")
    settings = Settings(
        kms_endpoint=emulator.endpoint,
        kms_protocol="http",
        sts_endpoint=emulator.endpoint,
        kms_call_retries=0,
        read_qps=10,
    )
    # The operator's own credentials: RAM user team-a of HOME; the config's: RAM user team-a-next of HOME.
    own = KmsGateway(settings, credential=sts.client(sts.static_keys("ak-a1", "secret-a1-0123456789")))
    registry = Registry(settings, reader=opened(KubeReader()), operator_gateway=own)
    registry.upsert(config_body(namespace, "default", SECRET), ConfigKind.NAMESPACED)
    target = resolve(registry, namespace)
    assert isinstance(target, Target)
    assert target.account_id == HOME
    assert target.gateway.limiter is own.limiter

    async def both() -> float:
        started = time.monotonic()
        await asyncio.gather(
            *(own.list_keys(emulator.region_id, {}) for _ in range(10)),
            *(target.gateway.list_keys(emulator.region_id, {}) for _ in range(10)),
        )
        return time.monotonic() - started

    # 20 reads at 10/s from one bucket (burst 1): at least 1.9 s; two limiters would pass them in 0.9 s.
    assert run(both()) >= 1.7
    assert emulator.call_counts(HOME)["ListKeys"] >= 20
