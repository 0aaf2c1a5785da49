"""The stored shape of a KMS key, and how it reads back as KeyMetadata (reference §2, DescribeKey).

Every KeyMetadata field is a string on the wire. The rules for what is shown when (`Suspended`, omitted
rotation fields, empty `DeleteDate`) live here, next to the data they are computed from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .clock import iso

ENABLED = "Enabled"
DISABLED = "Disabled"
PENDING_DELETION = "PendingDeletion"
PENDING_IMPORT = "PendingImport"
KEY_STATES = frozenset({ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT})


@dataclass
class Key:
    """One key: its immutable attributes, its mutable settings, and its lifecycle dates (epoch seconds)."""

    key_id: str
    arn: str
    creator: str
    creation_date: float
    key_spec: str
    key_usage: str
    origin: str
    protection_level: str
    dkms_instance_id: str = ""
    key_storage_mechanism: str = ""
    description: str = ""
    key_state: str = ENABLED
    primary_key_version: str = ""
    last_rotation_date: float | None = None
    rotation_enabled: bool = False
    rotation_interval: int | None = None  # seconds
    next_rotation_date: float | None = None
    delete_date: float | None = None
    deletion_protection: bool = False
    deletion_protection_description: str = ""
    policy: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    key_versions: list[str] = field(default_factory=list)

    def automatic_rotation(self) -> str:
        """`Enabled`, `Disabled`, or `Suspended` while a rotating key is not Enabled."""
        if not self.rotation_enabled:
            return "Disabled"
        return "Enabled" if self.key_state == ENABLED else "Suspended"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Key:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def key_metadata(key: Key, *, with_deletion_protection: bool) -> dict[str, str]:
    """KeyMetadata as DescribeKey (with protection fields) or CreateKey (without them) return it."""
    metadata = {
        "KeyId": key.key_id,
        "Arn": key.arn,
        "KeyState": key.key_state,
        "CreationDate": iso(key.creation_date),
        "Creator": key.creator,
        "Description": key.description,
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
        "Origin": key.origin,
        "ProtectionLevel": key.protection_level,
        "PrimaryKeyVersion": key.primary_key_version,
        "LastRotationDate": iso(key.last_rotation_date) if key.last_rotation_date is not None else "",
        # Emulator choice: key material never expires (no ImportKeyMaterial), so this is always "".
        "MaterialExpireTime": "",
        "DeleteDate": iso(key.delete_date) if key.delete_date is not None else "",
        "AutomaticRotation": key.automatic_rotation(),
        "DKMSInstanceId": key.dkms_instance_id,
    }
    if key.rotation_enabled and key.rotation_interval is not None:
        metadata["RotationInterval"] = f"{key.rotation_interval}s"
        if key.next_rotation_date is not None:
            metadata["NextRotationDate"] = iso(key.next_rotation_date)
    if with_deletion_protection:
        metadata["DeletionProtection"] = "Enabled" if key.deletion_protection else "Disabled"
        if key.deletion_protection:
            metadata["DeletionProtectionDescription"] = key.deletion_protection_description
    return metadata
