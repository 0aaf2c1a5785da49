"""Provider configs (pure): parsing, the selection order, and the admission rules for providerConfigRef."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmskey_operator.accounts import selection
from kmskey_operator.accounts.config import (
    AssumeRoleSource,
    ConfigError,
    DefaultSource,
    ProviderConfig,
    RrsaSource,
    SecretSource,
    parse_config,
    uses_operator_credentials,
)
from kmskey_operator.accounts.refs import OPERATOR_RECORD, ConfigKind, ConfigRef, parse_record, parse_ref
from kmskey_operator.accounts.selection import Policy, Refused, Selected, check_reference, select

ROLE = "acs:ram::2222222222222222:role/kms"
OIDC = "acs:ram::2222222222222222:oidc-provider/cluster"


def body(kind: ConfigKind, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "generation": 1}
    if namespace:
        metadata["namespace"] = namespace
    return {"kind": kind.value, "metadata": metadata, "spec": spec}


def namespaced(name: str, namespace: str, credentials: dict[str, Any] | None = None) -> ProviderConfig:
    spec = {"credentials": credentials or {"source": "Secret", "secretRef": {"name": "keys"}}}
    return parse_config(body(ConfigKind.NAMESPACED, name, spec, namespace), ConfigKind.NAMESPACED)


def cluster(name: str, selector: dict[str, Any], credentials: dict[str, Any] | None = None) -> ProviderConfig:
    spec = {
        "namespaceSelector": selector,
        "credentials": credentials or {"source": "Secret", "secretRef": {"name": "k", "namespace": "ops"}},
    }
    return parse_config(body(ConfigKind.CLUSTER, name, spec), ConfigKind.CLUSTER)


# -- parsing ----------------------------------------------------------------------------------------------


def test_a_namespaced_secret_source_reads_its_own_namespace_with_default_keys() -> None:
    config = namespaced("default", "team-a")

    assert config.ref == ConfigRef(ConfigKind.NAMESPACED, "default", "team-a")
    assert config.source == SecretSource("team-a", "keys", "accessKeyId", "accessKeySecret", None)


def test_a_namespaced_config_cannot_name_another_namespaces_secret_or_service_account() -> None:
    with pytest.raises(ConfigError, match="reads Secrets of its own namespace"):
        namespaced("x", "team-a", {"source": "Secret", "secretRef": {"name": "k", "namespace": "team-b"}})
    with pytest.raises(ConfigError, match="ServiceAccounts of its own namespace"):
        namespaced(
            "x",
            "team-a",
            {
                "source": "RRSA",
                "rrsa": {
                    "roleArn": ROLE,
                    "oidcProviderArn": OIDC,
                    "serviceAccountRef": {"namespace": "team-b", "name": "kms"},
                },
            },
        )


def test_rrsa_in_a_namespace_uses_a_service_account_of_that_namespace() -> None:
    config = namespaced(
        "x",
        "team-a",
        {"source": "RRSA", "rrsa": {"roleArn": ROLE, "oidcProviderArn": OIDC, "serviceAccountName": "kms"}},
    )
    assert config.source == RrsaSource(ROLE, OIDC, "kmskey-team-a", ("team-a", "kms"))


def test_cluster_rrsa_without_a_service_account_uses_the_operators_own_token() -> None:
    config = cluster("shared", {}, {"source": "RRSA", "rrsa": {"roleArn": ROLE, "oidcProviderArn": OIDC}})
    assert isinstance(config.source, RrsaSource)
    assert config.source.service_account is None
    assert config.source.session_name == "kmskey-shared"


def test_assume_role_on_a_base_source_and_which_sources_use_the_operators_credentials() -> None:
    config = namespaced(
        "x",
        "team-a",
        {
            "source": "AssumeRole",
            "assumeRole": {
                "roleArn": ROLE,
                "externalId": "team-a",
                "durationSeconds": 900,
                "baseCredentials": {"source": "Default"},
            },
        },
    )
    assert config.source == AssumeRoleSource(ROLE, "kmskey-team-a", DefaultSource(), "team-a", 900)
    assert uses_operator_credentials(config.source)
    assert not uses_operator_credentials(namespaced("y", "team-a").source)


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"source": "Vault"}, "credentials.source"),
        ({"source": "Secret"}, "credentials.secretRef"),
        (
            {
                "source": "RRSA",
                "rrsa": {"roleArn": "role/x", "oidcProviderArn": OIDC, "serviceAccountName": "s"},
            },
            "credentials.rrsa.roleArn",
        ),
        (
            {
                "source": "AssumeRole",
                "assumeRole": {"roleArn": ROLE, "baseCredentials": {"source": "AssumeRole"}},
            },
            "credentials.assumeRole.baseCredentials.source",
        ),
        (
            {
                "source": "AssumeRole",
                "assumeRole": {
                    "roleArn": ROLE,
                    "durationSeconds": 60,
                    "baseCredentials": {"source": "Default"},
                },
            },
            "credentials.assumeRole.durationSeconds",
        ),
    ],
)
def test_a_bad_config_names_the_field(credentials: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        namespaced("x", "team-a", credentials)
    assert error.value.field == field


def test_a_cluster_config_needs_a_namespace_selector() -> None:
    spec = {"credentials": {"source": "Default"}}
    with pytest.raises(ConfigError, match="namespaceSelector"):
        parse_config(body(ConfigKind.CLUSTER, "c", spec), ConfigKind.CLUSTER)


def test_namespace_selectors_match_labels_and_expressions() -> None:
    config = cluster(
        "c",
        {
            "matchLabels": {"tier": "prod"},
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["a", "b"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ],
        },
    )
    assert config.admits({"tier": "prod", "team": "a"})
    assert not config.admits({"tier": "prod", "team": "c"})
    assert not config.admits({"tier": "prod", "team": "a", "frozen": "yes"})
    assert not config.admits({"team": "a"})
    assert cluster("all", {}).admits({})


# -- references -------------------------------------------------------------------------------------------


def test_a_reference_defaults_to_the_keys_namespace_and_kind() -> None:
    assert parse_ref({"name": "x"}, "team-a") == ConfigRef(ConfigKind.NAMESPACED, "x", "team-a")
    assert parse_ref({"kind": "ClusterKmsProviderConfig", "name": "x"}, "team-a") == ConfigRef(
        ConfigKind.CLUSTER, "x"
    )
    assert parse_ref({"name": "x", "namespace": "team-b"}, "team-a") == ConfigRef(
        ConfigKind.NAMESPACED, "x", "team-b"
    )
    with pytest.raises(ValueError, match="has no namespace"):
        parse_ref({"kind": "ClusterKmsProviderConfig", "name": "x", "namespace": "a"}, "team-a")
    with pytest.raises(ValueError, match="kind"):
        parse_ref({"kind": "ProviderConfig", "name": "x"}, "team-a")


def test_the_record_round_trips() -> None:
    ref = ConfigRef(ConfigKind.NAMESPACED, "default", "team-a")
    assert parse_record(ref.record(), "team-a") == ref
    assert parse_record(OPERATOR_RECORD, "team-a") == OPERATOR_RECORD
    assert parse_record("bogus", "team-a") is None


# -- selection --------------------------------------------------------------------------------------------


def lookup_from(*configs: ProviderConfig) -> selection.Lookup:
    index = {c.ref: c for c in configs}
    return index.get


def choose(
    namespace: str = "team-a",
    declared: ConfigRef | None = None,
    recorded: ConfigRef | str | None = None,
    *,
    has_recorded_key: bool = False,
    labels: dict[str, str] | None = None,
    configs: tuple[ProviderConfig, ...] = (),
    policy: Policy | None = None,
) -> Selected | Refused:
    return select(
        namespace,
        declared,
        recorded,
        has_recorded_key=has_recorded_key,
        namespace_labels=labels or {},
        lookup=lookup_from(*configs),
        policy=policy or Policy(),
    )


def test_the_declared_reference_wins_over_the_namespace_default() -> None:
    chosen = choose(
        declared=ConfigRef(ConfigKind.NAMESPACED, "mine", "team-a"),
        configs=(namespaced("mine", "team-a"), namespaced("default", "team-a")),
    )
    assert isinstance(chosen, Selected)
    assert chosen.config is not None
    assert chosen.config.ref.name == "mine"
    assert chosen.record == "KmsProviderConfig/mine"


def test_without_a_reference_the_namespace_default_then_the_cluster_default_then_the_operator() -> None:
    shared = cluster("shared", {"matchLabels": {"kms": "shared"}})
    policy = Policy(cluster_default="shared")

    own = choose(configs=(namespaced("default", "team-a"), shared), labels={"kms": "shared"}, policy=policy)
    assert isinstance(own, Selected)
    assert own.record == "KmsProviderConfig/default"
    clustered = choose(configs=(shared,), labels={"kms": "shared"}, policy=policy)
    assert isinstance(clustered, Selected)
    assert clustered.record == "ClusterKmsProviderConfig/shared"
    # The cluster default does not admit this namespace: the operator's credentials, if allowed.
    fallback = choose(configs=(shared,), policy=policy)
    assert isinstance(fallback, Selected)
    assert fallback.record == OPERATOR_RECORD
    refused = choose(configs=(shared,), policy=Policy(cluster_default="shared", operator_fallback=False))
    assert isinstance(refused, Refused)
    assert refused.reason == selection.NO_PROVIDER_CONFIG
    assert "create a KmsProviderConfig named default" in refused.message


def test_a_missing_cluster_default_is_refused_rather_than_falling_back_to_another_account() -> None:
    chosen = choose(policy=Policy(cluster_default="shared"))
    assert isinstance(chosen, Refused)
    assert chosen.reason == selection.PROVIDER_CONFIG_NOT_FOUND
    assert "ClusterKmsProviderConfig shared" in chosen.message


def test_another_namespaces_config_is_refused_naming_it() -> None:
    chosen = choose(
        "team-b",
        declared=ConfigRef(ConfigKind.NAMESPACED, "default", "team-a"),
        configs=(namespaced("default", "team-a"),),
    )
    assert isinstance(chosen, Refused)
    assert chosen.reason == selection.PROVIDER_CONFIG_NOT_ALLOWED
    assert "KmsProviderConfig team-a/default belongs to another namespace" in chosen.message


def test_a_cluster_config_that_does_not_admit_the_namespace_is_refused() -> None:
    chosen = choose(
        declared=ConfigRef(ConfigKind.CLUSTER, "prod"),
        configs=(cluster("prod", {"matchLabels": {"tier": "prod"}}),),
        labels={"tier": "dev"},
    )
    assert isinstance(chosen, Refused)
    assert chosen.reason == selection.PROVIDER_CONFIG_NOT_ALLOWED
    assert "admits only namespaces matching tier=prod" in chosen.message


def test_an_existing_key_stays_with_the_config_it_was_created_through() -> None:
    recorded = ConfigRef(ConfigKind.CLUSTER, "shared")
    configs = (cluster("shared", {}), namespaced("default", "team-a"))
    chosen = choose(recorded=recorded, has_recorded_key=True, configs=configs)
    assert isinstance(chosen, Selected)
    assert chosen.record == "ClusterKmsProviderConfig/shared"
    # A key from before provider configs stays with the operator's credentials, even with a default now.
    legacy = choose(has_recorded_key=True, configs=configs)
    assert isinstance(legacy, Selected)
    assert legacy.config is None
    moved = choose(
        declared=ConfigRef(ConfigKind.NAMESPACED, "default", "team-a"),
        recorded=recorded,
        has_recorded_key=True,
        configs=configs,
    )
    assert isinstance(moved, Refused)
    assert moved.reason == selection.PROVIDER_CONFIG_CHANGED


def test_a_recorded_cluster_config_that_no_longer_admits_the_namespace_is_refused() -> None:
    chosen = choose(
        recorded=ConfigRef(ConfigKind.CLUSTER, "shared"),
        has_recorded_key=True,
        configs=(cluster("shared", {"matchLabels": {"kms": "yes"}}),),
    )
    assert isinstance(chosen, Refused)
    assert chosen.reason == selection.PROVIDER_CONFIG_NOT_ALLOWED


# -- admission --------------------------------------------------------------------------------------------


def test_admission_refuses_another_namespaces_config_and_an_unadmitted_cluster_config() -> None:
    lookup = lookup_from(namespaced("default", "team-a"), cluster("prod", {"matchLabels": {"tier": "prod"}}))

    other = check_reference(
        "team-b", {"name": "default", "namespace": "team-a"}, namespace_labels={}, lookup=lookup
    )
    assert other.errors
    assert "belongs to another namespace" in other.errors[0]
    unadmitted = check_reference(
        "team-b", {"kind": "ClusterKmsProviderConfig", "name": "prod"}, namespace_labels={}, lookup=lookup
    )
    assert unadmitted.errors
    assert "admits only namespaces matching tier=prod" in unadmitted.errors[0]
    fine = check_reference("team-a", {"name": "default"}, namespace_labels={}, lookup=lookup)
    assert fine == selection.Admission()


def test_admission_warns_about_a_config_that_does_not_exist_yet() -> None:
    verdict = check_reference("team-a", {"name": "later"}, namespace_labels={}, lookup=lookup_from())
    assert not verdict.errors
    assert verdict.warnings
    assert "does not exist yet" in verdict.warnings[0]


def test_admission_refuses_a_reference_that_would_move_an_existing_key() -> None:
    lookup = lookup_from(namespaced("default", "team-a"), namespaced("other", "team-a"))
    status = {"keyId": "k", "providerConfig": "KmsProviderConfig/default"}

    same = check_reference(
        "team-a", {"name": "default"}, namespace_labels={}, lookup=lookup, old_status=status
    )
    moved = check_reference(
        "team-a", {"name": "other"}, namespace_labels={}, lookup=lookup, old_status=status
    )
    legacy = check_reference(
        "team-a", {"name": "default"}, namespace_labels={}, lookup=lookup, old_status={"keyId": "k"}
    )
    assert same.errors == ()
    assert moved.errors
    assert "cannot move to KmsProviderConfig team-a/other" in moved.errors[0]
    assert legacy.errors
    assert "the operator's own credentials" in legacy.errors[0]


# -- the documented examples ------------------------------------------------------------------------------


def test_the_per_team_examples_are_valid_configs_and_kmskeys() -> None:
    import yaml

    from kmskey_operator import validation

    examples = Path(__file__).resolve().parents[2] / "examples" / "accounts"
    documents = [d for p in sorted(examples.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    kinds = {ConfigKind.NAMESPACED.value: ConfigKind.NAMESPACED, ConfigKind.CLUSTER.value: ConfigKind.CLUSTER}
    configs = [parse_config(d, kinds[d["kind"]]) for d in documents if d["kind"] in kinds]
    keys = [d for d in documents if d["kind"] == "KmsKey"]
    assert len(configs) == 3
    assert len(keys) == 3
    for key in keys:
        assert validation.validate_spec(key["spec"]).allowed, key
    lookup = lookup_from(*configs)
    shared = next(c for c in configs if c.ref.kind is ConfigKind.CLUSTER)
    assert shared.admits({"kms.example.com/shared": "true"})
    for key in keys:
        namespace = key["metadata"]["namespace"]
        labels = {"kms.example.com/shared": "true"} if namespace == "team-c" else {}
        chosen = select(
            namespace,
            parse_ref(key["spec"].get("providerConfigRef"), namespace),
            None,
            has_recorded_key=False,
            namespace_labels=labels,
            lookup=lookup,
            policy=Policy(operator_fallback=False),
        )
        assert isinstance(chosen, Selected), chosen


class FakeReader:
    """The API server as admission sees it: configs by reference, namespace labels."""

    def __init__(self, configs: dict[ConfigRef, dict[str, Any]], labels: dict[str, str]) -> None:
        self.configs = configs
        self.labels = labels

    async def provider_config(self, ref: ConfigRef) -> dict[str, Any] | None:
        return self.configs.get(ref)

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self.labels

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        raise AssertionError("admission never reads a Secret")

    async def service_account_token(self, namespace: str, name: str, *, audience: str, seconds: int) -> Any:
        raise AssertionError("admission never requests a token")


def test_the_webhook_refuses_moving_or_removing_the_reference_of_an_existing_key() -> None:
    import asyncio

    from kmskey_operator.accounts import admission

    mine = body(ConfigKind.NAMESPACED, "mine", {"credentials": {"source": "Default"}}, "team-a")
    other = body(ConfigKind.NAMESPACED, "other", {"credentials": {"source": "Default"}}, "team-a")
    reader = FakeReader(
        {
            ConfigRef(ConfigKind.NAMESPACED, "mine", "team-a"): mine,
            ConfigRef(ConfigKind.NAMESPACED, "other", "team-a"): other,
        },
        {},
    )
    old = {
        "spec": {"providerConfigRef": {"name": "mine"}},
        "status": {"keyId": "k", "providerConfig": "KmsProviderConfig/mine"},
    }

    def review(spec: dict[str, Any]) -> selection.Admission:
        return asyncio.run(admission.review("team-a", spec, old, reader))  # type: ignore[arg-type]

    assert review({"providerConfigRef": {"name": "mine"}}) == selection.Admission()
    assert (
        "cannot move to KmsProviderConfig team-a/other"
        in review({"providerConfigRef": {"name": "other"}}).errors[0]
    )
    assert "cannot be removed" in review({}).errors[0]
