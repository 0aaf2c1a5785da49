"""Settings come from the environment, flags override them, and bad values name their variable."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kmskey_operator.settings import ENV_VARS, Settings, SettingsError, add_arguments, flags_from


def test_defaults_match_kms_quotas_and_the_documented_resync() -> None:
    settings = Settings.from_env({})
    assert (settings.create_qps, settings.read_qps, settings.write_qps) == (10.0, 20.0, 10.0)
    assert settings.resync_seconds == 600.0
    assert settings.endpoint_for("cn-shanghai") == "kms.cn-shanghai.aliyuncs.com"


def test_environment_variables_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "KMS_ENDPOINT": "127.0.0.1:9999",
            "KMS_PROTOCOL": "http",
            "KMSKEY_READ_QPS": "5",
            "WATCH_NAMESPACES": "a, b",
            "KMS_ENDPOINT_TYPE": "vpc",
        }
    )
    assert settings.endpoint_for("cn-hangzhou") == "127.0.0.1:9999"
    assert settings.read_qps == 5.0
    assert settings.namespaces == ("a", "b")


def test_vpc_endpoint_type_picks_the_vpc_host() -> None:
    assert Settings.from_env({"KMS_ENDPOINT_TYPE": "vpc"}).endpoint_for("cn-hangzhou") == (
        "kms-vpc.cn-hangzhou.aliyuncs.com"
    )


def test_a_flag_overrides_its_environment_variable() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--region-id", "cn-beijing", "--resync-seconds", "30"])
    settings = Settings.from_env({"ALIBABA_CLOUD_REGION_ID": "cn-hangzhou"}, flags=flags_from(args))
    assert settings.region_id == "cn-beijing"
    assert settings.resync_seconds == 30.0


def test_every_setting_has_an_environment_variable() -> None:
    import dataclasses

    assert {f.name for f in dataclasses.fields(Settings)} == set(ENV_VARS)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KMSKEY_CREATE_QPS": "fast"}, "KMSKEY_CREATE_QPS"),
        ({"KMS_PROTOCOL": "ftp"}, "KMS_PROTOCOL"),
        ({"KMS_ENDPOINT": "http://127.0.0.1:1"}, "KMS_ENDPOINT"),
        ({"KMSKEY_RESYNC_JITTER": "2"}, "KMSKEY_RESYNC_JITTER"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_provider_config_settings_default_to_the_single_account_behaviour() -> None:
    settings = Settings.from_env({})
    assert settings.operator_credentials_fallback is True
    assert settings.default_credentials == "cluster"
    assert settings.cluster_provider_config == ""
    assert settings.sts_endpoint_for("cn-shanghai") == "sts.cn-shanghai.aliyuncs.com"
    assert Settings.from_env({"KMS_ENDPOINT_TYPE": "vpc"}).sts_endpoint_for("cn-shanghai") == (
        "sts-vpc.cn-shanghai.aliyuncs.com"
    )
    pinned = Settings.from_env({"KMSKEY_STS_ENDPOINT": "127.0.0.1:1234"})
    assert pinned.sts_endpoint_for("cn-shanghai") == "127.0.0.1:1234"
    assert (
        Settings.from_env({"KMSKEY_OPERATOR_CREDENTIALS_FALLBACK": "false"}).operator_credentials_fallback
        is False
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KMSKEY_DEFAULT_CREDENTIALS": "everyone"}, "KMSKEY_DEFAULT_CREDENTIALS"),
        ({"KMSKEY_STS_ENDPOINT": "https://sts.aliyuncs.com"}, "KMSKEY_STS_ENDPOINT"),
        ({"KMSKEY_CREDENTIALS_RECHECK_SECONDS": "0"}, "KMSKEY_CREDENTIALS_RECHECK_SECONDS"),
    ],
)
def test_bad_provider_config_settings_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_a_ca_bundle_that_is_missing_or_holds_no_certificate_is_refused_naming_the_variable(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError, match=r"KMSKEY_KMS_CA_BUNDLE=.*no such file"):
        Settings.from_env({"KMSKEY_KMS_CA_BUNDLE": str(tmp_path / "missing.pem")})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"KMSKEY_KMS_CA_BUNDLE=.*not usable"):
        Settings.from_env({"KMSKEY_KMS_CA_BUNDLE": str(garbage)})


def test_a_pem_ca_bundle_is_accepted_from_the_environment_or_its_flag(tmp_path: Path) -> None:
    from kmskey_operator.certs import generate_self_signed

    bundle = str(generate_self_signed(tmp_path).cafile)
    assert Settings.from_env({"KMSKEY_KMS_CA_BUNDLE": bundle}).kms_ca_bundle == bundle
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = flags_from(parser.parse_args(["--kms-ca-bundle", bundle]))
    assert Settings.from_env({}, flags=flags).kms_ca_bundle == bundle


def test_the_kms_connection_count_is_at_least_one() -> None:
    assert Settings.from_env({}).kms_max_connections == 16
    assert Settings.from_env({"KMSKEY_KMS_MAX_CONNECTIONS": "4"}).kms_max_connections == 4
    with pytest.raises(SettingsError, match="KMSKEY_KMS_MAX_CONNECTIONS"):
        Settings.from_env({"KMSKEY_KMS_MAX_CONNECTIONS": "0"})


# --- tenancy ------------------------------------------------------------------------------------------------


def test_tenancy_defaults_are_the_multi_team_ones_no_adoption_and_adopted_keys_kept() -> None:
    settings = Settings.from_env({})
    assert settings.cluster_id == ""
    assert not settings.may_adopt("team-a")
    assert not settings.adopted_key_deletion


def test_adoption_is_allowed_per_namespace_or_everywhere_with_a_star() -> None:
    listed = Settings.from_env({"KMSKEY_ADOPTION_NAMESPACES": "team-a, platform"})
    assert listed.may_adopt("team-a")
    assert listed.may_adopt("platform")
    assert not listed.may_adopt("team-b")
    assert Settings.from_env({"KMSKEY_ADOPTION_NAMESPACES": "*"}).may_adopt("anything")
    assert Settings.from_env({"KMSKEY_ADOPTED_KEY_DELETION": "true"}).adopted_key_deletion


def test_a_pinned_endpoint_serves_one_region_any_other_endpoint_serves_all() -> None:
    assert Settings.from_env({}).served_regions() is None
    pinned = Settings.from_env({"KMS_ENDPOINT": "127.0.0.1:8080", "ALIBABA_CLOUD_REGION_ID": "cn-beijing"})
    assert pinned.served_regions() == ("cn-beijing",)
    named = Settings.from_env({"KMS_ENDPOINT": "kms-vpc.ap-southeast-1.aliyuncs.com"})
    assert named.served_regions() == ("ap-southeast-1",)
    assert Settings.from_env({"KMS_ENDPOINT": "kms.eu-central-1.aliyuncs.com:443"}).served_regions() == (
        "eu-central-1",
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KMSKEY_CLUSTER_ID": "prod cluster"}, "KMSKEY_CLUSTER_ID"),
        ({"KMSKEY_CLUSTER_ID": "x" * 129}, "KMSKEY_CLUSTER_ID"),
        ({"ALIBABA_CLOUD_REGION_ID": "not a region!"}, "ALIBABA_CLOUD_REGION_ID"),
    ],
)
def test_a_cluster_id_or_region_that_cannot_be_a_tag_or_region_is_refused(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
