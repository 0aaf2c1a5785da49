"""`spec.providerConfigRef` of a KmsKey, and the record of the config a key was created with.

A reference is `{kind: KmsProviderConfig | ClusterKmsProviderConfig, name}` (kind defaults to
KmsProviderConfig). `namespace` may be written but only as the KmsKey's own namespace, which admission and
the reconciler check (a KmsKey can never use another namespace's config). Once a key exists, its status
records which config it came through (`status.providerConfig`: `KmsProviderConfig/<name>`,
`ClusterKmsProviderConfig/<name>` or `Operator` for the operator's own credentials), so that a later
`default` config or a changed cluster default never moves an existing key to another account.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class ConfigKind(enum.StrEnum):
    NAMESPACED = "KmsProviderConfig"
    CLUSTER = "ClusterKmsProviderConfig"


# What status.providerConfig holds for a key served by the operator's own credentials.
OPERATOR_RECORD = "Operator"


@dataclasses.dataclass(frozen=True)
class ConfigRef:
    """A provider config: `namespace` is set for a KmsProviderConfig and None for a cluster one."""

    kind: ConfigKind
    name: str
    namespace: str | None = None

    def describe(self) -> str:
        """`KmsProviderConfig team-a/default` or `ClusterKmsProviderConfig shared`: how messages name it."""
        if self.kind is ConfigKind.NAMESPACED:
            return f"{self.kind.value} {self.namespace}/{self.name}"
        return f"{self.kind.value} {self.name}"

    def record(self) -> str:
        """The status.providerConfig value: `<kind>/<name>` (the namespace is the KmsKey's own)."""
        return f"{self.kind.value}/{self.name}"


def parse_ref(raw: Any, key_namespace: str) -> ConfigRef | None:
    """spec.providerConfigRef as a ConfigRef (namespace filled in for the namespaced kind).

    Raises ValueError with a message for `spec.providerConfigRef`; a namespace other than the KmsKey's is
    kept as written, so that selection can refuse it with its reason.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("must be an object {kind, name}")
    unknown = sorted(set(raw) - {"kind", "name", "namespace"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; known fields are kind, name, namespace")
    kind_text = raw.get("kind", ConfigKind.NAMESPACED.value)
    try:
        kind = ConfigKind(kind_text)
    except ValueError:
        raise ValueError(
            f"kind {kind_text!r} is not one of {ConfigKind.NAMESPACED.value}, {ConfigKind.CLUSTER.value}"
        ) from None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name {name!r} is not the name of a Kubernetes object")
    namespace = raw.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ValueError("namespace must be a string")
    if kind is ConfigKind.CLUSTER:
        if namespace:
            raise ValueError(
                "a ClusterKmsProviderConfig has no namespace; remove providerConfigRef.namespace"
            )
        return ConfigRef(kind, name)
    return ConfigRef(kind, name, namespace or key_namespace)


def parse_record(text: Any, key_namespace: str) -> ConfigRef | str | None:
    """status.providerConfig: a ConfigRef, OPERATOR_RECORD, or None when nothing (valid) is recorded."""
    if not isinstance(text, str) or not text:
        return None
    if text == OPERATOR_RECORD:
        return OPERATOR_RECORD
    kind_text, _, name = text.partition("/")
    try:
        kind = ConfigKind(kind_text)
    except ValueError:
        return None
    if not _NAME.match(name):
        return None
    return ConfigRef(kind, name, key_namespace if kind is ConfigKind.NAMESPACED else None)
