"""Compare the declared spec with the observed key, field by field, in canonical forms.

Only fields the user declared are compared (an unset field means "leave KMS's value alone"). The
seed's ForceNew fields are never changed: a difference is a `Conflict` for the user to resolve. Tags
are ForceNew in the spec (admission refuses edits), but KMS can rewrite them, so tags changed outside
Kubernetes are put back as ordinary changes. Only the user's tags are compared: KMS's reserved ones and the
operator's own (the claim, `kms.alicloud.dev/*`) are invisible here, so no spec, in any mode, can remove or
rewrite a claim; claims.py alone writes those.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kmskey_operator import names, normalize
from kmskey_operator.kms.types import ObservedKey
from kmskey_operator.model import KmsKeySpec


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """A mutable field whose KMS value differs from the spec: `field` is the spec field name."""

    field: str
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.field}: {_show(self.old)} -> {_show(self.new)}"


@dataclasses.dataclass(frozen=True)
class Conflict:
    """A ForceNew field whose KMS value differs from the spec; KMS cannot change it in place."""

    field: str
    actual: Any
    desired: Any

    def describe(self) -> str:
        return f"spec.{self.field} is {_show(self.desired)} but the key has {_show(self.actual)}"


@dataclasses.dataclass(frozen=True)
class Blocked:
    """A change KMS refuses in the key's current state; `message` says what the user can do."""

    field: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Diff:
    changes: tuple[FieldChange, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    blocked: tuple[Blocked, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.changes or self.conflicts or self.blocked)

    def change(self, field: str) -> FieldChange | None:
        return next((c for c in self.changes if c.field == field), None)


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "...")
    return repr(value)


def desired_tags(spec: KmsKeySpec, *, created: bool) -> dict[str, str] | None:
    """The user tags the key must carry, or None when they are not managed.

    A key this resource created carries exactly the declared tags (none when spec.tags is unset); on an
    adopted key an unset spec.tags leaves the key's tags alone.
    """
    if spec.tags is None and not created:
        return None
    return dict(spec.tags or {})


def observed_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The key's user tags: without KMS's reserved ones and the operator's claim (never compared)."""
    return normalize.user_tags(tags)


def diff(spec: KmsKeySpec, observed: ObservedKey, *, created: bool) -> Diff:
    """Field-by-field difference. `created`: the key was created by this resource (not adopted)."""
    meta = observed.metadata
    changes: list[FieldChange] = []
    conflicts: list[Conflict] = []
    blocked: list[Blocked] = []

    forced: list[tuple[str, str | None, str]] = [
        ("keySpec", spec.key_spec, meta.key_spec),
        ("keyUsage", spec.key_usage, meta.key_usage),
        ("origin", spec.origin, meta.origin),
        ("dkmsInstanceId", spec.dkms_instance_id, meta.dkms_instance_id),
    ]
    if not spec.dkms_instance_id and not meta.dkms_instance_id:
        # KMS ignores ProtectionLevel for instance keys, so it is only compared for default keys.
        forced.append(("protectionLevel", spec.protection_level, meta.protection_level))
    for field, desired, actual in forced:
        if desired is not None and desired != actual:
            conflicts.append(Conflict(field, actual, desired))

    state = meta.key_state
    if spec.status is not None and spec.status != state:
        if state == "PendingImport":
            blocked.append(
                Blocked(
                    "status",
                    names.REASON_KEY_MATERIAL_PENDING,
                    "the key waits for imported key material (origin EXTERNAL); KMS enables it when "
                    "ImportKeyMaterial succeeds",
                )
            )
        elif state in ("Enabled", "Disabled"):
            changes.append(FieldChange("status", state, spec.status))

    if spec.description is not None and spec.description != meta.description:
        changes.append(FieldChange("description", meta.description, spec.description))

    wants_rotation = spec.wants_rotation
    if wants_rotation is not None:
        interval_change: FieldChange | None = None
        if wants_rotation and spec.rotation_interval:
            desired_seconds = normalize.interval_seconds(spec.rotation_interval)
            actual_seconds = _seconds_or_none(meta.rotation_interval)
            if not meta.rotation_on or actual_seconds != desired_seconds:
                interval_change = FieldChange(
                    "rotationInterval",
                    meta.rotation_interval or None,
                    normalize.format_interval(desired_seconds),
                )
        rotation_change = (
            FieldChange(
                "automaticRotation",
                meta.automatic_rotation or "Disabled",
                "Enabled" if wants_rotation else "Disabled",
            )
            if wants_rotation != meta.rotation_on
            else None
        )
        wanted = [c for c in (rotation_change, interval_change) if c is not None]
        # The plan runs EnableKey first and DisableKey last, so rotation can change whenever the key is
        # Enabled now or is about to be enabled; only a key that stays not-Enabled blocks it.
        if wanted and state != "Enabled" and spec.status != "Enabled":
            blocked.append(
                Blocked(
                    "automaticRotation",
                    names.REASON_KEY_DISABLED,
                    f"KMS changes rotation only while the key is Enabled (it is {state}); set "
                    "spec.status: Enabled, or leave the rotation fields as they are",
                )
            )
        else:
            changes.extend(wanted)

    if spec.enable_deletion_protection is not None:
        actual_protection = meta.deletion_protection == "Enabled"
        if spec.enable_deletion_protection != actual_protection:
            changes.append(
                FieldChange("enableDeletionProtection", actual_protection, spec.enable_deletion_protection)
            )

    if spec.policy is not None and not normalize.policies_equal(spec.policy, observed.policy):
        changes.append(FieldChange("policy", observed.policy, spec.policy))

    wanted_tags = desired_tags(spec, created=created)
    if wanted_tags is not None:
        actual_tags = observed_tags(observed.tags)
        if wanted_tags != actual_tags:
            changes.append(FieldChange("tags", actual_tags, wanted_tags))

    return Diff(tuple(changes), tuple(conflicts), tuple(blocked))


def _seconds_or_none(text: str) -> int | None:
    try:
        return normalize.interval_seconds(text) if text else None
    except ValueError:
        return None
