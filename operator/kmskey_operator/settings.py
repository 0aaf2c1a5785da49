"""Operator settings: each read from an environment variable (flags override), with unit and effect.

The same settings serve the operator, `kmskey-operator plan` and `kmskey-operator import`, so a CLI
run sees KMS exactly as the operator does. Credentials are NOT settings: they come from the
`alibabacloud-credentials` default chain (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, STS token, RRSA OIDC
variables, credentials file, ECS RAM role) and are never stored, logged or printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import ssl
from collections.abc import Mapping

# A region ID: lowercase words joined by hyphens, e.g. cn-hangzhou, ap-southeast-1, cn-shanghai-finance-1.
REGION_ID = re.compile(r"^[a-z]{2,}(-[a-z0-9]+){1,4}$")
_KMS_HOST = re.compile(r"^kms(?:-vpc)?\.([a-z]{2,}(?:-[a-z0-9]+){1,4})\.aliyuncs\.com$")
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9/\\_\-.+=:@]{1,128}$")


class SettingsError(ValueError):
    """A setting has a value the operator cannot use; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    # --- KMS ---
    region_id: str = "cn-hangzhou"
    """ALIBABA_CLOUD_REGION_ID: the region of keys whose spec has no regionId."""
    kms_endpoint: str | None = None
    """KMS_ENDPOINT: host[:port] of the KMS API; default kms.<region>.aliyuncs.com (or the VPC one)."""
    kms_endpoint_type: str = "public"
    """KMS_ENDPOINT_TYPE: `public` (kms.<region>.aliyuncs.com) or `vpc` (kms-vpc.<region>.aliyuncs.com)."""
    kms_protocol: str = "https"
    """KMS_PROTOCOL: `https`, or `http` for the local emulator."""
    kms_ca_bundle: str | None = None
    """KMSKEY_KMS_CA_BUNDLE: a PEM file of CA certificates trusted for KMS in addition to the system's and the
    SDK's (certifi) roots, e.g. a TLS-inspecting proxy's CA or the emulator's; empty = only those roots."""
    kms_connect_timeout_ms: int = 5000
    """KMSKEY_KMS_CONNECT_TIMEOUT_MS: milliseconds to open a connection to KMS."""
    kms_read_timeout_ms: int = 10000
    """KMSKEY_KMS_READ_TIMEOUT_MS: milliseconds to wait for a KMS answer."""
    kms_max_connections: int = 16
    """KMSKEY_KMS_MAX_CONNECTIONS: KMS calls in flight at once, each in a worker thread on a kept-alive
    HTTPS connection (so also the connections kept per KMS endpoint)."""
    kms_call_retries: int = 2
    """KMSKEY_KMS_CALL_RETRIES: quick repeats of a KMS call after a transient failure (0 = none)."""
    create_qps: float = 10.0
    """KMSKEY_CREATE_QPS: CreateKey calls per second per region across all resources (KMS quota: 10)."""
    read_qps: float = 20.0
    """KMSKEY_READ_QPS: Describe/List/Get calls per second per region (KMS quota: 20). 0 = unlimited."""
    write_qps: float = 10.0
    """KMSKEY_WRITE_QPS: other write calls per second per region (KMS quota: 10). 0 = unlimited."""
    sts_endpoint: str | None = None
    """KMSKEY_STS_ENDPOINT: host[:port] of STS (AssumeRole, AssumeRoleWithOIDC, GetCallerIdentity) for
    provider configs that name none; default sts.<region>.aliyuncs.com (sts-vpc.<region>... with
    KMS_ENDPOINT_TYPE vpc). Reached over KMS_PROTOCOL."""
    # --- provider configs (accounts; see accounts/ and the README's "Accounts and provider configs") ---
    cluster_provider_config: str = ""
    """KMSKEY_CLUSTER_PROVIDER_CONFIG: name of the ClusterKmsProviderConfig serving KmsKeys that name no
    config and whose namespace has no `default` KmsProviderConfig (if its namespaceSelector admits them)."""
    operator_credentials_fallback: bool = True
    """KMSKEY_OPERATOR_CREDENTIALS_FALLBACK: whether KmsKeys that no provider config serves use the operator's
    own credentials (true: as before provider configs existed); false refuses them (NoProviderConfig)."""
    default_credentials: str = "cluster"
    """KMSKEY_DEFAULT_CREDENTIALS: which provider configs may use `source: Default` (the operator's own
    credentials, also as an AssumeRole base): `none`, `cluster` (ClusterKmsProviderConfigs only) or `all`."""
    cluster_provider_configs: bool = True
    """KMSKEY_CLUSTER_PROVIDER_CONFIGS: serve ClusterKmsProviderConfigs (watch them cluster-wide, read
    namespace labels); false serves only KmsProviderConfigs (for installs granted nothing cluster-scoped)."""
    credentials_recheck_seconds: float = 30.0
    """KMSKEY_CREDENTIALS_RECHECK_SECONDS: a provider config's Secret (and namespace labels) read longer ago
    is read again before its next use, so a rotated Secret takes effect within this many seconds."""
    provider_config_check_seconds: float = 300.0
    """KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS: how often each provider config's credentials are checked
    against STS for its status (Ready, account ID)."""
    provider_config_retry_seconds: float = 5.0
    """KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS: while KmsKeys wait on a provider config that is not usable, it
    is re-checked this often (its Secret read again; STS asked only when the credentials changed), and its
    KmsKeys are reconciled as soon as it is usable (accounts/waiting.py)."""
    # --- reconciling ---
    resync_seconds: float = 600.0
    """KMSKEY_RESYNC_SECONDS: how often each key is re-read to find drift (annotation overrides)."""
    resync_jitter: float = 0.1
    """KMSKEY_RESYNC_JITTER: +- fraction of the resync interval, so keys do not resync in waves."""
    resync_read_share: float = 0.5
    """KMSKEY_RESYNC_READ_SHARE: fraction of KMSKEY_READ_QPS drift checks may use; when their intervals
    ask for more, every interval of the account and region is stretched until they fit."""
    status_heartbeat_seconds: float = 21600.0
    """KMSKEY_STATUS_HEARTBEAT_SECONDS: a drift check that finds nothing new writes nothing, except
    status.lastSyncTime once it is this old (seconds)."""
    deletion_timeout_seconds: float = 1800.0
    """KMSKEY_DELETION_TIMEOUT_SECONDS: how long deletion retries on KMS outages before giving up."""
    namespaces: tuple[str, ...] = ()
    """WATCH_NAMESPACES: comma-separated namespaces to watch; empty = all namespaces."""
    # --- tenancy (see claims.py and the README's "Tenancy") ---
    cluster_id: str = ""
    """KMSKEY_CLUSTER_ID: this cluster's name in the claims it writes on keys (at most 128 characters of
    letters, digits and / \\ _ - . + = : @); empty = the UID of the kube-system namespace, read at start."""
    adoption_namespaces: tuple[str, ...] = ()
    """KMSKEY_ADOPTION_NAMESPACES: comma-separated namespaces whose KmsKeys may adopt existing keys
    (spec.keyId); `*` = every namespace; empty = none (a multi-team cluster's safe default)."""
    adopted_key_deletion: bool = False
    """KMSKEY_ADOPTED_KEY_DELETION: whether deleting a KmsKey with deletionPolicy Delete may schedule the
    deletion of a key it adopted (rather than created); false = adopted keys are always retained."""
    # --- serving ---
    health_port: int = 8081
    """KMSKEY_HEALTH_PORT: port of /healthz (liveness: the event loop is not stuck). 0 = off."""
    liveness_stall_seconds: float = 10.0
    """KMSKEY_LIVENESS_STALL_SECONDS: /healthz (and /readyz) fail once the operator's event loop has not run
    for this many seconds; a loop that is only busy runs every few hundred milliseconds at worst."""
    health_host: str = "0.0.0.0"
    """KMSKEY_HEALTH_HOST: address /healthz and /readyz listen on (0.0.0.0 = every interface)."""
    ready_port: int = 8082
    """KMSKEY_READY_PORT: port of /readyz (readiness: watching, and the webhook serving). 0 = off."""
    metrics_port: int = 8080
    """KMSKEY_METRICS_PORT: port of the Prometheus /metrics endpoint. 0 = off."""
    metrics_host: str = "0.0.0.0"
    """KMSKEY_METRICS_HOST: address /metrics listens on (0.0.0.0 = every interface)."""
    log_format: str = "text"
    """KMSKEY_LOG_FORMAT: `text` or `json`."""
    log_level: str = "INFO"
    """KMSKEY_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."""
    peering_name: str | None = None
    """KMSKEY_PEERING: kopf peering name for several replicas (one active); empty = standalone."""
    peering_priority: int = 0
    """KMSKEY_PEERING_PRIORITY: this replica's kopf peering priority (the highest live one is active);
    0 = minus the start time in milliseconds, so the oldest replica stays active, a new or restarted pod
    never takes over from a working one, and no two replicas tie (equal priorities pause each other)."""
    peering_lifetime_seconds: int = 60
    """KMSKEY_PEERING_LIFETIME_SECONDS: seconds a replica's keep-alive is valid; a killed active replica
    is replaced after at most this long (keep-alives are sent every lifetime - 5..10 s)."""

    def sts_endpoint_for(self, region_id: str) -> str:
        if self.sts_endpoint:
            return self.sts_endpoint
        infix = "sts-vpc" if self.kms_endpoint_type == "vpc" else "sts"
        return f"{infix}.{region_id}.aliyuncs.com"

    def may_adopt(self, namespace: str) -> bool:
        """Whether KmsKeys in `namespace` may adopt existing keys (KMSKEY_ADOPTION_NAMESPACES)."""
        return "*" in self.adoption_namespaces or namespace in self.adoption_namespaces

    def served_regions(self) -> tuple[str, ...] | None:
        """The regions the configured endpoint serves; None = any (one endpoint per region).

        A pinned KMS_ENDPOINT is one regional endpoint: the region in its host name when it is a KMS
        host (kms.<region>.aliyuncs.com, kms-vpc.<region>.aliyuncs.com), else ALIBABA_CLOUD_REGION_ID.
        """
        if not self.kms_endpoint:
            return None
        host = self.kms_endpoint.rsplit(":", 1)[0] if self.kms_endpoint.count(":") == 1 else self.kms_endpoint
        match = _KMS_HOST.match(host)
        return (match.group(1),) if match else (self.region_id,)

    def endpoint_for(self, region_id: str) -> str:
        if self.kms_endpoint:
            return self.kms_endpoint
        infix = "kms-vpc" if self.kms_endpoint_type == "vpc" else "kms"
        return f"{infix}.{region_id}.aliyuncs.com"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from the environment; `flags` (field name -> text, from the CLI) take precedence."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for attr, var in ENV_VARS.items():
            raw = (flags or {}).get(attr)
            source = f"--{attr.replace('_', '-')}"
            if raw is None:
                raw, source = env.get(var), var
            if raw is None or not raw.strip():
                continue
            values[attr] = _convert(attr, raw.strip(), source)
        return cls(**values).validated()  # type: ignore[arg-type]

    def validated(self) -> Settings:
        if self.kms_protocol not in ("http", "https"):
            raise SettingsError(f"KMS_PROTOCOL={self.kms_protocol!r}: use https, or http for the emulator")
        if self.kms_endpoint_type not in ("public", "vpc"):
            raise SettingsError(f"KMS_ENDPOINT_TYPE={self.kms_endpoint_type!r}: use public or vpc")
        if self.kms_ca_bundle:
            _check_ca_bundle(self.kms_ca_bundle)
        if self.kms_endpoint and "://" in self.kms_endpoint:
            raise SettingsError(
                f"KMS_ENDPOINT={self.kms_endpoint!r}: give host[:port] only; set KMS_PROTOCOL for the scheme"
            )
        if self.sts_endpoint and "://" in self.sts_endpoint:
            raise SettingsError(
                f"KMSKEY_STS_ENDPOINT={self.sts_endpoint!r}: give host[:port] only; KMS_PROTOCOL sets the "
                "scheme"
            )
        if self.default_credentials not in ("none", "cluster", "all"):
            raise SettingsError(
                f"KMSKEY_DEFAULT_CREDENTIALS={self.default_credentials!r}: use none, cluster or all"
            )
        if (
            min(
                self.credentials_recheck_seconds,
                self.provider_config_check_seconds,
                self.provider_config_retry_seconds,
            )
            <= 0
        ):
            raise SettingsError(
                "KMSKEY_CREDENTIALS_RECHECK_SECONDS, KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS and "
                "KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS must be positive"
            )
        if self.kms_max_connections < 1:
            raise SettingsError("KMSKEY_KMS_MAX_CONNECTIONS must be at least 1")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"KMSKEY_LOG_FORMAT={self.log_format!r}: use text or json")
        if self.resync_seconds <= 0:
            raise SettingsError("KMSKEY_RESYNC_SECONDS must be positive")
        if not 0 <= self.resync_jitter < 1:
            raise SettingsError("KMSKEY_RESYNC_JITTER must be in [0, 1)")
        if not 0 < self.resync_read_share <= 1:
            raise SettingsError("KMSKEY_RESYNC_READ_SHARE must be in (0, 1]: a fraction of KMSKEY_READ_QPS")
        if self.status_heartbeat_seconds <= 0:
            raise SettingsError("KMSKEY_STATUS_HEARTBEAT_SECONDS must be positive")
        if self.liveness_stall_seconds < 1:
            raise SettingsError(
                f"KMSKEY_LIVENESS_STALL_SECONDS={self.liveness_stall_seconds:g}: give at least 1 (seconds)"
            )
        if self.peering_lifetime_seconds < 1:
            raise SettingsError("KMSKEY_PEERING_LIFETIME_SECONDS must be at least 1")
        if self.cluster_id and not _CLUSTER_ID.match(self.cluster_id):
            raise SettingsError(
                f"KMSKEY_CLUSTER_ID={self.cluster_id!r}: use 1 to 128 characters of letters, digits and "
                "/ \\ _ - . + = : @ (it becomes a KMS tag value)"
            )
        if not REGION_ID.match(self.region_id):
            raise SettingsError(
                f"ALIBABA_CLOUD_REGION_ID={self.region_id!r} is not a region ID such as cn-hangzhou"
            )
        return self


# Every setting's environment variable, in one place; each also has a `--kebab-case` CLI flag.
ENV_VARS: dict[str, str] = {
    "region_id": "ALIBABA_CLOUD_REGION_ID",
    "kms_endpoint": "KMS_ENDPOINT",
    "kms_endpoint_type": "KMS_ENDPOINT_TYPE",
    "kms_protocol": "KMS_PROTOCOL",
    "kms_ca_bundle": "KMSKEY_KMS_CA_BUNDLE",
    "kms_connect_timeout_ms": "KMSKEY_KMS_CONNECT_TIMEOUT_MS",
    "kms_read_timeout_ms": "KMSKEY_KMS_READ_TIMEOUT_MS",
    "kms_max_connections": "KMSKEY_KMS_MAX_CONNECTIONS",
    "kms_call_retries": "KMSKEY_KMS_CALL_RETRIES",
    "sts_endpoint": "KMSKEY_STS_ENDPOINT",
    "cluster_provider_config": "KMSKEY_CLUSTER_PROVIDER_CONFIG",
    "operator_credentials_fallback": "KMSKEY_OPERATOR_CREDENTIALS_FALLBACK",
    "default_credentials": "KMSKEY_DEFAULT_CREDENTIALS",
    "cluster_provider_configs": "KMSKEY_CLUSTER_PROVIDER_CONFIGS",
    "credentials_recheck_seconds": "KMSKEY_CREDENTIALS_RECHECK_SECONDS",
    "provider_config_check_seconds": "KMSKEY_PROVIDER_CONFIG_CHECK_SECONDS",
    "provider_config_retry_seconds": "KMSKEY_PROVIDER_CONFIG_RETRY_SECONDS",
    "create_qps": "KMSKEY_CREATE_QPS",
    "read_qps": "KMSKEY_READ_QPS",
    "write_qps": "KMSKEY_WRITE_QPS",
    "resync_seconds": "KMSKEY_RESYNC_SECONDS",
    "resync_jitter": "KMSKEY_RESYNC_JITTER",
    "resync_read_share": "KMSKEY_RESYNC_READ_SHARE",
    "status_heartbeat_seconds": "KMSKEY_STATUS_HEARTBEAT_SECONDS",
    "deletion_timeout_seconds": "KMSKEY_DELETION_TIMEOUT_SECONDS",
    "namespaces": "WATCH_NAMESPACES",
    "cluster_id": "KMSKEY_CLUSTER_ID",
    "adoption_namespaces": "KMSKEY_ADOPTION_NAMESPACES",
    "adopted_key_deletion": "KMSKEY_ADOPTED_KEY_DELETION",
    "health_host": "KMSKEY_HEALTH_HOST",
    "health_port": "KMSKEY_HEALTH_PORT",
    "liveness_stall_seconds": "KMSKEY_LIVENESS_STALL_SECONDS",
    "ready_port": "KMSKEY_READY_PORT",
    "metrics_host": "KMSKEY_METRICS_HOST",
    "metrics_port": "KMSKEY_METRICS_PORT",
    "log_format": "KMSKEY_LOG_FORMAT",
    "log_level": "KMSKEY_LOG_LEVEL",
    "peering_name": "KMSKEY_PEERING",
    "peering_priority": "KMSKEY_PEERING_PRIORITY",
    "peering_lifetime_seconds": "KMSKEY_PEERING_LIFETIME_SECONDS",
}


def _check_ca_bundle(path: str) -> None:
    """The bundle must be a readable PEM file with at least one certificate: refuse it now, not at a call."""
    hint = "give a PEM file of CA certificates (trusted in addition to the system's roots)"
    if not os.path.isfile(path):
        raise SettingsError(f"KMSKEY_KMS_CA_BUNDLE={path!r}: no such file; {hint}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(f"KMSKEY_KMS_CA_BUNDLE={path!r}: not usable ({error}); {hint}") from None


def _convert(attr: str, raw: str, source: str) -> object:
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == attr)
    if isinstance(default, tuple):
        return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int | float):
        try:
            return type(default)(raw)
        except ValueError:
            raise SettingsError(f"{source}={raw!r} is not a number") from None
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--kebab-case` flag per setting; each overrides its environment variable."""
    group = parser.add_argument_group("settings (each flag overrides the environment variable named)")
    for attr, var in ENV_VARS.items():
        group.add_argument(
            f"--{attr.replace('_', '-')}", dest=f"setting_{attr}", metavar="VALUE", help=f"${var}"
        )


def flags_from(args: argparse.Namespace) -> dict[str, str]:
    return {
        attr: str(value) for attr in ENV_VARS if (value := getattr(args, f"setting_{attr}", None)) is not None
    }
