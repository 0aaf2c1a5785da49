"""Provider configs for the read-only tools: `plan` and `import` see KMS with a config's credentials.

They resolve exactly as the operator does (accounts.registry, reading the config and its Secret from the
cluster with the user's own kubeconfig), but every gateway is a ReadOnlyGateway, so a config's credentials
never write either. Without a config the tools use the operator's own credentials, as before.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from kmskey_operator.accounts.kube import KubeReader
from kmskey_operator.accounts.refs import OPERATOR_RECORD, ConfigKind, ConfigRef
from kmskey_operator.accounts.registry import Registry, Target, Unresolved
from kmskey_operator.kms import sts
from kmskey_operator.settings import Settings
from kmskey_operator.tools.readonly import ReadOnlyGateway


class ConfigProblem(RuntimeError):
    """The named provider config cannot serve the tool; the message names it and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--provider-config",
        metavar="NAMESPACE/NAME",
        help="use this KmsProviderConfig's account and credentials (read from the cluster)",
    )
    group.add_argument(
        "--cluster-provider-config",
        metavar="NAME",
        help="use this ClusterKmsProviderConfig's account and credentials (read from the cluster)",
    )


def ref_from(args: argparse.Namespace) -> ConfigRef | None:
    """The config the flags name, or None."""
    if getattr(args, "cluster_provider_config", None):
        return ConfigRef(ConfigKind.CLUSTER, str(args.cluster_provider_config))
    text = getattr(args, "provider_config", None)
    if not text:
        return None
    namespace, _, name = str(text).partition("/")
    if not namespace or not name or "/" in name:
        raise ConfigProblem(f"--provider-config {text!r}: write NAMESPACE/NAME, for example team-a/default")
    return ConfigRef(ConfigKind.NAMESPACED, name, namespace)


def reference(ref: ConfigRef) -> dict[str, str]:
    """spec.providerConfigRef naming `ref` (from a KmsKey in the config's namespace)."""
    if ref.kind is ConfigKind.CLUSTER:
        return {"kind": ref.kind.value, "name": ref.name}
    return {"name": ref.name}


class ToolAccounts:
    """Targets for the tools, built on first need (no cluster is contacted for a plan without configs)."""

    def __init__(self, settings: Settings, operator_gateway: ReadOnlyGateway) -> None:
        self.settings = settings
        self.operator_gateway = operator_gateway
        self._registry: Registry | None = None
        self._reader = KubeReader()

    async def aclose(self) -> None:
        await self._reader.aclose()

    def _accounts(self) -> Registry:
        if self._registry is None:
            sts.trust_extra_ca(self.settings.kms_ca_bundle)
            self._registry = Registry(
                self.settings,
                reader=self._reader,
                operator_gateway=self.operator_gateway,
                gateway_class=ReadOnlyGateway,
            )
        return self._registry

    async def named(self, ref: ConfigRef) -> Target:
        return _target(await self._accounts().target_for_ref(ref))

    async def for_kmskey(self, namespace: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> Target:
        """The target the operator would use for this KmsKey (reference, recorded config, defaults)."""
        return _target(await self._accounts().target_for(namespace, spec, status))


def _target(found: Target | Unresolved) -> Target:
    if isinstance(found, Unresolved):
        raise ConfigProblem(f"{found.reason}: {found.message}")
    return found


def involves_configs(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether a KmsKey names a config, or its key came through one (the operator's credentials otherwise)."""
    recorded = status.get("providerConfig")
    return spec.get("providerConfigRef") is not None or bool(recorded and recorded != OPERATOR_RECORD)
