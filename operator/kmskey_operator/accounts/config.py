"""Typed views of KmsProviderConfig and ClusterKmsProviderConfig bodies, and namespace selectors (pure).

Parsing checks what the CRD schema also enforces, so a body that slipped past the schema still fails with a
message naming the field; and it enforces the one rule the schema cannot: a KmsProviderConfig reaches only
Secrets and ServiceAccounts of its own namespace (the fields to name another do not exist in its schema, and
are refused here too). Nothing here reads a Secret: a source only says where the credentials are.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kmskey_operator.accounts.refs import ConfigKind, ConfigRef

DEFAULT_AUDIENCE = "sts.aliyuncs.com"
DEFAULT_DURATION_SECONDS = 3600
DURATION_RANGE = (900, 43200)
DEFAULT_ACCESS_KEY_ID_KEY = "accessKeyId"
DEFAULT_ACCESS_KEY_SECRET_KEY = "accessKeySecret"
_ROLE_ARN = re.compile(r"^acs:ram::[0-9]+:role/.+$")
_OIDC_PROVIDER_ARN = re.compile(r"^acs:ram::[0-9]+:oidc-provider/.+$")
_SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9=,.@:/_-]{2,1224}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_REGION_ID = re.compile(r"^[a-z]{2,}(-[a-z0-9]+){1,4}$")


class ConfigError(ValueError):
    """A provider config field has a value the operator cannot use; `field` is its path under `spec`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field
        self.message = message


class SourceKind(enum.StrEnum):
    SECRET = "Secret"
    RRSA = "RRSA"
    ASSUME_ROLE = "AssumeRole"
    DEFAULT = "Default"


@dataclasses.dataclass(frozen=True)
class SecretSource:
    """An AccessKey pair (optionally with an STS token) in the data of a Secret."""

    namespace: str
    name: str
    access_key_id_key: str = DEFAULT_ACCESS_KEY_ID_KEY
    access_key_secret_key: str = DEFAULT_ACCESS_KEY_SECRET_KEY
    security_token_key: str | None = None

    @property
    def kind(self) -> SourceKind:
        return SourceKind.SECRET


@dataclasses.dataclass(frozen=True)
class RrsaSource:
    """AssumeRoleWithOIDC with a ServiceAccount token (`service_account` None: the operator's own token)."""

    role_arn: str
    oidc_provider_arn: str
    session_name: str
    service_account: tuple[str, str] | None = None  # (namespace, name)
    audience: str = DEFAULT_AUDIENCE
    duration_seconds: int = DEFAULT_DURATION_SECONDS

    @property
    def kind(self) -> SourceKind:
        return SourceKind.RRSA


@dataclasses.dataclass(frozen=True)
class DefaultSource:
    """The operator's own credential chain."""

    @property
    def kind(self) -> SourceKind:
        return SourceKind.DEFAULT


BaseSource = SecretSource | RrsaSource | DefaultSource


@dataclasses.dataclass(frozen=True)
class AssumeRoleSource:
    role_arn: str
    session_name: str
    base: BaseSource
    external_id: str | None = None
    duration_seconds: int = DEFAULT_DURATION_SECONDS

    @property
    def kind(self) -> SourceKind:
        return SourceKind.ASSUME_ROLE


@dataclasses.dataclass(frozen=True)
class InvalidSource:
    """A config whose spec cannot be parsed: it exists (so selection never skips past it), but serves no
    credentials; `message` names the field and says what to fix."""

    message: str


ParsedSource = SecretSource | RrsaSource | AssumeRoleSource | DefaultSource
Source = ParsedSource | InvalidSource


def uses_operator_credentials(source: Source) -> bool:
    """Whether the source is (or is built on) the operator's own chain: what the chart may forbid."""
    if isinstance(source, AssumeRoleSource):
        return isinstance(source.base, DefaultSource)
    return isinstance(source, DefaultSource)


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclasses.dataclass(frozen=True)
class NamespaceSelector:
    """A Kubernetes label selector on Namespaces; an empty one admits every namespace."""

    match_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    requirements: tuple[Requirement, ...] = ()

    def admits(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.holds(labels) for r in self.requirements)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.requirements:
            if r.operator in ("In", "NotIn"):
                word = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {word} ({', '.join(r.values)})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts) or "(every namespace)"


@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    ref: ConfigRef
    uid: str
    generation: int
    source: Source
    region_id: str | None = None
    endpoint: str | None = None
    sts_endpoint: str | None = None
    namespace_selector: NamespaceSelector | None = None  # cluster configs only

    def admits(self, namespace_labels: Mapping[str, str]) -> bool:
        """Whether KmsKeys of a namespace with these labels may use the config (always, for a namespaced
        config; its own namespace is checked by selection)."""
        return self.namespace_selector is None or self.namespace_selector.admits(namespace_labels)


def config_or_invalid(body: Mapping[str, Any], kind: ConfigKind) -> ProviderConfig:
    """parse_config, or for a bad spec a config with an InvalidSource (and, for a cluster config whose
    selector cannot be read, one that admits no namespace)."""
    try:
        return parse_config(body, kind)
    except ConfigError as error:
        metadata = body.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "") if kind is ConfigKind.NAMESPACED else None
        selector = None
        if kind is ConfigKind.CLUSTER:
            try:
                selector = _selector((body.get("spec") or {}).get("namespaceSelector"))
            except ConfigError:
                selector = NamespaceSelector(requirements=(Requirement("", "In", ()),))  # admits nothing
        return ProviderConfig(
            ref=ConfigRef(kind, str(metadata.get("name") or ""), namespace),
            uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 0),
            source=InvalidSource(str(error)),
            namespace_selector=selector,
        )


def parse_config(body: Mapping[str, Any], kind: ConfigKind) -> ProviderConfig:
    """A provider config from its body, or ConfigError naming the first bad field."""
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = str(metadata.get("namespace") or "") if kind is ConfigKind.NAMESPACED else None
    ref = ConfigRef(kind, name, namespace)
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise ConfigError("credentials", "the spec is missing")
    region_id = _optional_text(spec, "regionId")
    if region_id is not None and not _REGION_ID.match(region_id):
        raise ConfigError("regionId", f"{region_id!r} is not a region ID such as cn-hangzhou")
    endpoints = {}
    for field in ("endpoint", "stsEndpoint"):
        value = _optional_text(spec, field)
        if value is not None and not _HOST_PORT.match(value):
            raise ConfigError(field, f"{value!r}: give host[:port] only, without a scheme")
        endpoints[field] = value
    selector = None
    if kind is ConfigKind.CLUSTER:
        selector = _selector(spec.get("namespaceSelector"))
    default_session = f"kmskey-{namespace or name}"[:64]
    source = _source(spec.get("credentials"), "credentials", ref, default_session, nested=False)
    return ProviderConfig(
        ref=ref,
        uid=str(metadata.get("uid") or ""),
        generation=int(metadata.get("generation") or 0),
        source=source,
        region_id=region_id,
        endpoint=endpoints["endpoint"],
        sts_endpoint=endpoints["stsEndpoint"],
        namespace_selector=selector,
    )


def _source(raw: Any, where: str, ref: ConfigRef, default_session: str, *, nested: bool) -> ParsedSource:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "an object with `source` is required")
    text = raw.get("source")
    allowed = [SourceKind.SECRET, SourceKind.RRSA, SourceKind.DEFAULT]
    if not nested:
        allowed.insert(2, SourceKind.ASSUME_ROLE)
    if text not in [k.value for k in allowed]:
        raise ConfigError(f"{where}.source", f"{text!r} is not one of {', '.join(k.value for k in allowed)}")
    kind = SourceKind(text)
    if kind is SourceKind.SECRET:
        return _secret(raw.get("secretRef"), f"{where}.secretRef", ref)
    if kind is SourceKind.RRSA:
        return _rrsa(raw.get("rrsa"), f"{where}.rrsa", ref, default_session)
    if kind is SourceKind.DEFAULT:
        return DefaultSource()
    block = raw.get("assumeRole")
    where = f"{where}.assumeRole"
    if not isinstance(block, Mapping):
        raise ConfigError(where, "source AssumeRole needs this block")
    external_id = _optional_text(block, "externalId")
    if external_id is not None and not _EXTERNAL_ID.match(external_id):
        raise ConfigError(f"{where}.externalId", "2 to 1224 of letters, digits and = , . @ : / _ -")
    base = _source(
        block.get("baseCredentials"), f"{where}.baseCredentials", ref, default_session, nested=True
    )
    assert not isinstance(base, AssumeRoleSource)
    return AssumeRoleSource(
        role_arn=_arn(block, "roleArn", where, _ROLE_ARN, "acs:ram::<account>:role/<name>"),
        session_name=_session(block, where, default_session),
        base=base,
        external_id=external_id,
        duration_seconds=_duration(block, where),
    )


def _secret(raw: Any, where: str, ref: ConfigRef) -> SecretSource:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "source Secret needs this block")
    name = _required_text(raw, "name", where)
    if ref.kind is ConfigKind.NAMESPACED:
        namespace = raw.get("namespace")
        if namespace not in (None, "", ref.namespace):
            raise ConfigError(
                f"{where}.namespace",
                f"a KmsProviderConfig reads Secrets of its own namespace ({ref.namespace}) only; use a "
                "ClusterKmsProviderConfig to name another namespace's Secret",
            )
        secret_namespace = str(ref.namespace)
    else:
        secret_namespace = _required_text(raw, "namespace", where)
    return SecretSource(
        namespace=secret_namespace,
        name=name,
        access_key_id_key=_optional_text(raw, "accessKeyIdKey") or DEFAULT_ACCESS_KEY_ID_KEY,
        access_key_secret_key=_optional_text(raw, "accessKeySecretKey") or DEFAULT_ACCESS_KEY_SECRET_KEY,
        security_token_key=_optional_text(raw, "securityTokenKey"),
    )


def _rrsa(raw: Any, where: str, ref: ConfigRef, default_session: str) -> RrsaSource:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "source RRSA needs this block")
    account: tuple[str, str] | None
    if ref.kind is ConfigKind.NAMESPACED:
        if raw.get("serviceAccountRef") is not None:
            raise ConfigError(
                f"{where}.serviceAccountRef",
                f"a KmsProviderConfig uses ServiceAccounts of its own namespace ({ref.namespace}) only: "
                "set serviceAccountName",
            )
        account = (str(ref.namespace), _required_text(raw, "serviceAccountName", where))
    else:
        sa = raw.get("serviceAccountRef")
        if sa is None:
            account = None
        elif isinstance(sa, Mapping):
            account = (
                _required_text(sa, "namespace", f"{where}.serviceAccountRef"),
                _required_text(sa, "name", f"{where}.serviceAccountRef"),
            )
        else:
            raise ConfigError(f"{where}.serviceAccountRef", "an object {namespace, name} is required")
    return RrsaSource(
        role_arn=_arn(raw, "roleArn", where, _ROLE_ARN, "acs:ram::<account>:role/<name>"),
        oidc_provider_arn=_arn(
            raw, "oidcProviderArn", where, _OIDC_PROVIDER_ARN, "acs:ram::<account>:oidc-provider/<name>"
        ),
        session_name=_session(raw, where, default_session),
        service_account=account,
        audience=_optional_text(raw, "audience") or DEFAULT_AUDIENCE,
        duration_seconds=_duration(raw, where),
    )


def _selector(raw: Any) -> NamespaceSelector:
    where = "namespaceSelector"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "a label selector is required ({} admits every namespace)")
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{where}.matchLabels", "a map of label keys to values is required")
    requirements = []
    expressions: Sequence[Any] = raw.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ConfigError(f"{where}.matchExpressions", "a list is required")
    for i, entry in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(at, "an object {key, operator, values} is required")
        operator = entry.get("operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ConfigError(f"{at}.operator", f"{operator!r} is not In, NotIn, Exists or DoesNotExist")
        values = entry.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{at}.values", "a list of strings is required")
        if (operator in ("In", "NotIn")) != bool(values):
            raise ConfigError(f"{at}.values", "In and NotIn need values; Exists and DoesNotExist take none")
        requirements.append(Requirement(_required_text(entry, "key", at), operator, tuple(values)))
    return NamespaceSelector(dict(labels), tuple(requirements))


def _arn(raw: Mapping[str, Any], field: str, where: str, pattern: re.Pattern[str], shape: str) -> str:
    value = _required_text(raw, field, where)
    if not pattern.match(value):
        raise ConfigError(f"{where}.{field}", f"{value!r} is not an ARN of the form {shape}")
    return value


def _session(raw: Mapping[str, Any], where: str, default: str) -> str:
    value = _optional_text(raw, "sessionName") or _session_safe(default)
    if not _SESSION_NAME.match(value):
        raise ConfigError(f"{where}.sessionName", "2 to 64 of letters, digits and . @ _ -")
    return value


def _session_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@_-]", "-", text)[:64]


def _duration(raw: Mapping[str, Any], where: str) -> int:
    value = raw.get("durationSeconds", DEFAULT_DURATION_SECONDS)
    low, high = DURATION_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.durationSeconds", f"{low} to {high} seconds")
    return value


def _optional_text(raw: Mapping[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(field, "must be a string")
    return value


def _required_text(raw: Mapping[str, Any], field: str, where: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{field}", "is required")
    return value
