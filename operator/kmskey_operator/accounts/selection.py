"""Which provider config serves a KmsKey, and whether its reference may be admitted (pure).

Order (Azure Service Operator's resource -> namespace -> global scopes, Crossplane's providerConfigRef):

1. a key that exists stays where it was created: `status.providerConfig` names the config it came through
   (a key from before provider configs counts as the operator's own credentials);
2. `spec.providerConfigRef`: a KmsProviderConfig of the KmsKey's own namespace, or a
   ClusterKmsProviderConfig whose namespaceSelector admits the namespace;
3. the KmsProviderConfig named `default` in the KmsKey's namespace;
4. the cluster default ClusterKmsProviderConfig (installation setting), if it admits the namespace;
5. the operator's own credentials, if the installation allows that fallback.

Anything else is refused with a reason and a message naming the config. The same rules answer admission
(`check_reference`), so the webhook and the reconciler never disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kmskey_operator import names
from kmskey_operator.accounts.config import ProviderConfig
from kmskey_operator.accounts.refs import OPERATOR_RECORD, ConfigKind, ConfigRef, parse_record, parse_ref

NAMESPACE_DEFAULT = "default"

# Reasons of a refused selection (Synced=False carries them); names.py holds every such string.
PROVIDER_CONFIG_NOT_ALLOWED = names.REASON_PROVIDER_CONFIG_NOT_ALLOWED
PROVIDER_CONFIG_NOT_FOUND = names.REASON_PROVIDER_CONFIG_NOT_FOUND
PROVIDER_CONFIG_CHANGED = names.REASON_PROVIDER_CONFIG_CHANGED
NO_PROVIDER_CONFIG = names.REASON_NO_PROVIDER_CONFIG

Lookup = Callable[[ConfigRef], ProviderConfig | None]


@dataclasses.dataclass(frozen=True)
class Policy:
    """The installation's choices (chart values providerConfigs.*)."""

    cluster_default: str | None = None  # name of the cluster default ClusterKmsProviderConfig
    operator_fallback: bool = True  # KmsKeys no config selects use the operator's own credentials


@dataclasses.dataclass(frozen=True)
class Selected:
    """`config` None means the operator's own credentials; `how` says why, for messages."""

    config: ProviderConfig | None
    how: str

    @property
    def record(self) -> str:
        """What status.providerConfig records for the key."""
        return self.config.ref.record() if self.config is not None else OPERATOR_RECORD

    def describe(self) -> str:
        return self.config.ref.describe() if self.config is not None else "the operator's own credentials"


@dataclasses.dataclass(frozen=True)
class Refused:
    reason: str
    message: str
    waits_for: ConfigRef | None = None  # the config whose creation (or fix) would serve the key


def select(
    namespace: str,
    declared: ConfigRef | None,
    recorded: ConfigRef | str | None,
    *,
    has_recorded_key: bool,
    namespace_labels: Mapping[str, str],
    lookup: Lookup,
    policy: Policy,
) -> Selected | Refused:
    """The config serving a KmsKey of `namespace` (see the module docstring for the order).

    `recorded` is status.providerConfig (parsed), `has_recorded_key` whether status.keyId is set.
    """
    if recorded is None and has_recorded_key:
        recorded = OPERATOR_RECORD  # the key predates provider configs: it lives in the operator's account
    if recorded is not None:
        if declared is not None and (recorded == OPERATOR_RECORD or declared != recorded):
            was = _describe_record(recorded)
            return Refused(
                PROVIDER_CONFIG_CHANGED,
                f"the key was created through {was}, and a key never moves to another account; "
                f"spec.providerConfigRef now names {declared.describe()}: set it back to {was}, or create a "
                "new KmsKey for a key in the other account",
            )
        if recorded == OPERATOR_RECORD:
            if not policy.operator_fallback:
                return Refused(
                    NO_PROVIDER_CONFIG,
                    "the key was created with the operator's own credentials, which this installation no "
                    "longer allows (providerConfigs.operatorFallback); allow them again to manage this key",
                )
            return Selected(None, "the operator's own credentials (the key was created with them)")
        assert isinstance(recorded, ConfigRef)
        return _use(namespace, recorded, namespace_labels, lookup, "the config the key was created through")
    if declared is not None:
        return _use(namespace, declared, namespace_labels, lookup, "spec.providerConfigRef")
    own_default = ConfigRef(ConfigKind.NAMESPACED, NAMESPACE_DEFAULT, namespace)
    found = lookup(own_default)
    if found is not None:
        return Selected(found, f"the {NAMESPACE_DEFAULT} KmsProviderConfig of {namespace}")
    if policy.cluster_default:
        ref = ConfigRef(ConfigKind.CLUSTER, policy.cluster_default)
        config = lookup(ref)
        if config is None:
            return Refused(
                PROVIDER_CONFIG_NOT_FOUND,
                f"the cluster default {ref.describe()} does not exist; create it, or set "
                "spec.providerConfigRef",
                ref,
            )
        if config.admits(namespace_labels):
            return Selected(config, f"the cluster default {ref.describe()}")
    if policy.operator_fallback:
        return Selected(None, "the operator's own credentials (no provider config selects this KmsKey)")
    return Refused(
        NO_PROVIDER_CONFIG,
        f"no provider config serves KmsKeys of {namespace}: create a KmsProviderConfig named "
        f"{NAMESPACE_DEFAULT} there, or set spec.providerConfigRef"
        + (
            f" (the cluster default {policy.cluster_default} does not admit {namespace})"
            if policy.cluster_default
            else ""
        ),
        own_default,
    )


def _use(
    namespace: str, ref: ConfigRef, labels: Mapping[str, str], lookup: Lookup, how: str
) -> Selected | Refused:
    if ref.kind is ConfigKind.NAMESPACED and ref.namespace != namespace:
        return Refused(PROVIDER_CONFIG_NOT_ALLOWED, _other_namespace(namespace, ref))
    config = lookup(ref)
    if config is None:
        return Refused(PROVIDER_CONFIG_NOT_FOUND, f"{ref.describe()} does not exist", ref)
    if not config.admits(labels):
        return Refused(PROVIDER_CONFIG_NOT_ALLOWED, _not_admitted(namespace, config))
    return Selected(config, how)


def _describe_record(recorded: ConfigRef | str) -> str:
    return recorded.describe() if isinstance(recorded, ConfigRef) else "the operator's own credentials"


def _other_namespace(namespace: str, ref: ConfigRef) -> str:
    return (
        f"KmsKeys in {namespace} may use only KmsProviderConfigs of {namespace}, or a "
        f"ClusterKmsProviderConfig that admits {namespace}; {ref.describe()} belongs to another namespace"
    )


def _not_admitted(namespace: str, config: ProviderConfig) -> str:
    selector = config.namespace_selector.describe() if config.namespace_selector else ""
    return (
        f"{config.ref.describe()} admits only namespaces matching {selector}, and {namespace} does not; "
        "ask the platform team to admit it, or use a KmsProviderConfig of your namespace"
    )


@dataclasses.dataclass(frozen=True)
class Admission:
    """The webhook's answer about spec.providerConfigRef: errors refuse the request, warnings are shown."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def check_reference(
    namespace: str,
    raw_ref: Any,
    *,
    namespace_labels: Mapping[str, str],
    lookup: Lookup,
    old_status: Mapping[str, Any] | None = None,
) -> Admission:
    """Whether a KmsKey of `namespace` may declare `raw_ref` (spec.providerConfigRef), at CREATE or UPDATE.

    A config that does not exist yet is only a warning (manifests are often applied in any order; the
    KmsKey waits with Synced=False until it exists). With `old_status`, a reference that names another
    config than the one the existing key was created through is refused.
    """
    try:
        ref = parse_ref(raw_ref, namespace)
    except ValueError as error:
        return Admission(errors=(f"spec.providerConfigRef: {error}",))
    if ref is None:
        return Admission()
    if ref.kind is ConfigKind.NAMESPACED and ref.namespace != namespace:
        return Admission(errors=(f"spec.providerConfigRef: {_other_namespace(namespace, ref)}",))
    if old_status is not None:
        recorded = parse_record(old_status.get("providerConfig"), namespace)
        if recorded is None and old_status.get("keyId"):
            recorded = OPERATOR_RECORD
        if recorded is not None and (recorded == OPERATOR_RECORD or recorded != ref):
            return Admission(
                errors=(
                    f"spec.providerConfigRef: the key was created through {_describe_record(recorded)} and "
                    f"cannot move to {ref.describe()} (another account); create a new KmsKey instead",
                )
            )
    config = lookup(ref)
    if config is None:
        return Admission(
            warnings=(
                f"spec.providerConfigRef: {ref.describe()} does not exist yet; the KmsKey waits for it "
                f"(Synced=False, {PROVIDER_CONFIG_NOT_FOUND})",
            )
        )
    if not config.admits(namespace_labels):
        return Admission(errors=(f"spec.providerConfigRef: {_not_admitted(namespace, config)}",))
    return Admission()
