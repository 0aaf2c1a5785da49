"""Typed views of a `KmsKey` resource: the spec as the user declared it, parsed from the body.

Parsing only checks shapes (types and enums that the CRD schema also enforces), so that a body that
slipped past the schema still fails with a message naming the field. Cross-field rules live in
`validation.py`; comparison with KMS lives in `reconcile/`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, TypeVar

from kmskey_operator.accounts.refs import parse_ref

_E = TypeVar("_E", bound=enum.StrEnum)


class SpecError(ValueError):
    """A spec field has the wrong type or value; `field` is its camelCase path under `spec`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field
        self.message = message


class DeletionPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class ManagementPolicy(enum.StrEnum):
    MANAGE = "Manage"
    OBSERVE = "Observe"


KEY_SPECS = (
    "Aliyun_AES_256",
    "Aliyun_AES_128",
    "Aliyun_AES_192",
    "Aliyun_SM4",
    "RSA_2048",
    "RSA_3072",
    "EC_P256",
    "EC_P256K",
    "EC_SM2",
)
SYMMETRIC_KEY_SPECS = ("Aliyun_AES_256", "Aliyun_AES_128", "Aliyun_AES_192", "Aliyun_SM4")
KEY_USAGES = ("ENCRYPT/DECRYPT", "SIGN/VERIFY")
ORIGINS = ("Aliyun_KMS", "EXTERNAL")
PROTECTION_LEVELS = ("SOFTWARE", "HSM")
AUTOMATIC_ROTATION_VALUES = ("Enabled", "Disabled", "Suspended")
KEY_STATUS_VALUES = ("Enabled", "Disabled", "PendingDeletion")
POLICY_NAMES = ("default",)

# Values KMS (and Terraform) apply when a create leaves a field out.
DEFAULT_KEY_SPEC = "Aliyun_AES_256"
DEFAULT_ORIGIN = "Aliyun_KMS"
DEFAULT_PROTECTION_LEVEL = "SOFTWARE"


def default_key_usage(key_spec: str) -> str:
    """KMS's default usage for a spec: signing for EC keys that cannot encrypt, else encryption."""
    return "SIGN/VERIFY" if key_spec in ("EC_P256", "EC_P256K") else "ENCRYPT/DECRYPT"


@dataclasses.dataclass(frozen=True)
class KmsKeySpec:
    """`spec` of a KmsKey. `None` means "not declared": the operator neither sets nor changes it."""

    automatic_rotation: str | None = None
    certificate_id: str | None = None
    description: str | None = None
    dkms_instance_id: str | None = None
    enable_automatic_rotation: bool | None = None
    enable_deletion_protection: bool | None = None
    key_spec: str | None = None
    key_usage: str | None = None
    origin: str | None = None
    pending_window_in_days: int | None = None
    policy: str | None = None
    policy_name: str | None = None
    protection_level: str | None = None
    rotation_interval: str | None = None
    secret_name: str | None = None
    status: str | None = None
    tags: Mapping[str, str] | None = None
    key_id: str | None = None
    region_id: str | None = None
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    management_policy: ManagementPolicy = ManagementPolicy.MANAGE
    # As written (kind, name, namespace); accounts.selection decides what it may name.
    provider_config_ref: Mapping[str, str] | None = None

    @property
    def adopts_existing_key(self) -> bool:
        return bool(self.key_id)

    @property
    def wants_rotation(self) -> bool | None:
        """Whether rotation should be on; `None` when neither rotation field is declared.

        `Suspended` is what KMS reports for a rotating key that is not Enabled, so it means "on".
        """
        if self.enable_automatic_rotation is not None:
            return self.enable_automatic_rotation
        if self.automatic_rotation is not None:
            return self.automatic_rotation in ("Enabled", "Suspended")
        return None


# spec field (camelCase) -> (dataclass attribute, expected Python type, allowed values or None)
_STRING_FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "automaticRotation": ("automatic_rotation", AUTOMATIC_ROTATION_VALUES),
    "certificateId": ("certificate_id", None),
    "description": ("description", None),
    "dkmsInstanceId": ("dkms_instance_id", None),
    "keySpec": ("key_spec", KEY_SPECS),
    "keyUsage": ("key_usage", KEY_USAGES),
    "origin": ("origin", ORIGINS),
    "policy": ("policy", None),
    "policyName": ("policy_name", POLICY_NAMES),
    "protectionLevel": ("protection_level", PROTECTION_LEVELS),
    "rotationInterval": ("rotation_interval", None),
    "secretName": ("secret_name", None),
    "status": ("status", KEY_STATUS_VALUES),
    "keyId": ("key_id", None),
    "regionId": ("region_id", None),
}
_BOOL_FIELDS = {
    "enableAutomaticRotation": "enable_automatic_rotation",
    "enableDeletionProtection": "enable_deletion_protection",
}
SPEC_FIELDS = (
    *_STRING_FIELDS,
    *_BOOL_FIELDS,
    "pendingWindowInDays",
    "tags",
    "deletionPolicy",
    "managementPolicy",
    "providerConfigRef",
)

# The seed's ForceNew arguments, plus the operator's own identity fields.
FORCE_NEW_FIELDS = ("dkmsInstanceId", "keySpec", "keyUsage", "origin", "protectionLevel", "tags")
IDENTITY_FIELDS = ("regionId", "keyId")


def parse_spec(spec: Mapping[str, Any] | None) -> KmsKeySpec:
    """Parse `spec` into a KmsKeySpec, or raise SpecError naming the first bad field."""
    spec = spec or {}
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise SpecError(unknown[0], f"unknown field; known fields are {', '.join(SPEC_FIELDS)}")
    values: dict[str, Any] = {}
    for name, (attr, allowed) in _STRING_FIELDS.items():
        value = spec.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SpecError(name, f"must be a string, got {type(value).__name__}")
        if allowed is not None and value not in allowed:
            raise SpecError(name, f"{value!r} is not one of {', '.join(allowed)}")
        values[attr] = value
    for name, attr in _BOOL_FIELDS.items():
        value = spec.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise SpecError(name, f"must be true or false, got {value!r}")
        values[attr] = value
    window = spec.get("pendingWindowInDays")
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int):
            raise SpecError("pendingWindowInDays", f"must be an integer number of days, got {window!r}")
        values["pending_window_in_days"] = window
    tags = spec.get("tags")
    if tags is not None:
        if not isinstance(tags, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise SpecError("tags", "must be a map of string keys to string values")
        values["tags"] = dict(tags)
    ref = spec.get("providerConfigRef")
    if ref is not None:
        try:
            parse_ref(ref, "")
        except ValueError as error:
            raise SpecError("providerConfigRef", str(error)) from None
        values["provider_config_ref"] = dict(ref)
    values["deletion_policy"] = _parse_enum(spec, "deletionPolicy", DeletionPolicy, DeletionPolicy.RETAIN)
    values["management_policy"] = _parse_enum(
        spec, "managementPolicy", ManagementPolicy, ManagementPolicy.MANAGE
    )
    return KmsKeySpec(**values)


def _parse_enum(spec: Mapping[str, Any], name: str, kind: type[_E], default: _E) -> _E:
    value = spec.get(name)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise SpecError(name, f"{value!r} is not one of {allowed}") from None
