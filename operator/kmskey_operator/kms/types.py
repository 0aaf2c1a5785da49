"""Plain typed values that cross the KMS boundary: what a key looks like, and one call to make."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class KeyMetadata:
    """`KeyMetadata` of DescribeKey/CreateKey. KMS sends every field as a string; "" means absent."""

    key_id: str
    arn: str = ""
    key_state: str = ""
    key_spec: str = ""
    key_usage: str = ""
    origin: str = ""
    protection_level: str = ""
    description: str = ""
    creation_date: str = ""
    creator: str = ""
    dkms_instance_id: str = ""
    primary_key_version: str = ""
    automatic_rotation: str = ""
    rotation_interval: str = ""
    next_rotation_date: str = ""
    last_rotation_date: str = ""
    delete_date: str = ""
    material_expire_time: str = ""
    deletion_protection: str = ""
    deletion_protection_description: str = ""

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> KeyMetadata:
        def text(name: str) -> str:
            value = data.get(name)
            return "" if value is None else str(value)

        return cls(
            key_id=text("KeyId"),
            arn=text("Arn"),
            key_state=text("KeyState"),
            key_spec=text("KeySpec"),
            key_usage=text("KeyUsage"),
            origin=text("Origin"),
            protection_level=text("ProtectionLevel"),
            description=text("Description"),
            creation_date=text("CreationDate"),
            creator=text("Creator"),
            dkms_instance_id=text("DKMSInstanceId"),
            primary_key_version=text("PrimaryKeyVersion"),
            automatic_rotation=text("AutomaticRotation"),
            rotation_interval=text("RotationInterval"),
            next_rotation_date=text("NextRotationDate"),
            last_rotation_date=text("LastRotationDate"),
            delete_date=text("DeleteDate"),
            material_expire_time=text("MaterialExpireTime"),
            deletion_protection=text("DeletionProtection"),
            deletion_protection_description=text("DeletionProtectionDescription"),
        )

    @property
    def rotation_on(self) -> bool:
        """KMS reads `Suspended` for a rotating key that is not Enabled: rotation is still on."""
        return self.automatic_rotation in ("Enabled", "Suspended")


@dataclasses.dataclass(frozen=True)
class ObservedKey:
    """Everything the diff compares: metadata, the policy (None when not read) and all tags."""

    metadata: KeyMetadata
    tags: Mapping[str, str]
    policy: str | None = None


@dataclasses.dataclass(frozen=True)
class KmsCall:
    """One KMS API call, named by its action and wire parameters, e.g. UpdateKeyDescription."""

    action: str
    params: Mapping[str, Any]

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if k not in ("Policy",)}
        if "Policy" in self.params:
            shown["Policy"] = "<policy document>"
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{self.action}({args})"
