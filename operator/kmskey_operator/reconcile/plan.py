"""Turn a diff into KMS calls: the one table from spec fields to KMS actions, in a safe order.

Order: EnableKey first (KMS changes rotation only on an Enabled key), then the provider's order
(description, rotation, deletion protection, policy, tags), and DisableKey last, so a key the user
wants disabled gets its rotation settings before it stops accepting them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from kmskey_operator import model, normalize
from kmskey_operator.kms.types import KeyMetadata, KmsCall, ObservedKey
from kmskey_operator.model import KmsKeySpec
from kmskey_operator.reconcile.diff import Diff

# Spec field -> the KMS action that changes it in place. Fields absent here are ForceNew.
FIELD_ACTIONS: dict[str, str] = {
    "status": "EnableKey/DisableKey",
    "description": "UpdateKeyDescription",
    "automaticRotation": "UpdateRotationPolicy",
    "enableAutomaticRotation": "UpdateRotationPolicy",
    "rotationInterval": "UpdateRotationPolicy",
    "enableDeletionProtection": "SetDeletionProtection",
    "policy": "SetKeyPolicy",
    "policyName": "SetKeyPolicy",
    "tags": "UntagResources/TagResources",
}


def create_call(spec: KmsKeySpec, claim: Mapping[str, str]) -> KmsCall:
    """CreateKey with everything CreateKey accepts, including the claim's tags (claims.claim_tags)."""
    key_spec = spec.key_spec or model.DEFAULT_KEY_SPEC
    params: dict[str, Any] = {
        "KeySpec": key_spec,
        "KeyUsage": spec.key_usage or model.default_key_usage(key_spec),
        "Origin": spec.origin or model.DEFAULT_ORIGIN,
    }
    if spec.dkms_instance_id:
        params["DKMSInstanceId"] = spec.dkms_instance_id
    else:
        params["ProtectionLevel"] = spec.protection_level or model.DEFAULT_PROTECTION_LEVEL
    if spec.description:
        params["Description"] = spec.description
    if spec.wants_rotation:
        params["EnableAutomaticRotation"] = True
        if spec.rotation_interval:
            seconds = normalize.interval_seconds(spec.rotation_interval)
            params["RotationInterval"] = normalize.format_interval(seconds)
    if spec.policy is not None:
        params["Policy"] = spec.policy
    tags = {**(spec.tags or {}), **claim}
    params["Tags"] = json.dumps([{"TagKey": k, "TagValue": v} for k, v in sorted(tags.items())])
    return KmsCall("CreateKey", params)


def observed_after_create(spec: KmsKeySpec, created: KeyMetadata, claim: Mapping[str, str]) -> ObservedKey:
    """What the key looks like right after CreateKey, without reading it back.

    CreateKey's metadata lacks DeletionProtection (a new key has it off), and the policy and tags are
    exactly what was sent, so the follow-up diff needs no extra reads.
    """
    metadata = dataclasses.replace(created, deletion_protection=created.deletion_protection or "Disabled")
    tags = {**(spec.tags or {}), **claim}
    return ObservedKey(metadata=metadata, tags=tags, policy=spec.policy)


def created_metadata(call: KmsCall, key_id: str) -> KeyMetadata:
    """What CreateKey would answer for `call` (from `create_call`), for a plan that does not run it.

    Used with `observed_after_create` to preview the follow-up calls of a create without creating.
    """
    params = call.params
    rotating = bool(params.get("EnableAutomaticRotation"))
    return KeyMetadata(
        key_id=key_id,
        key_state="PendingImport" if params.get("Origin") == "EXTERNAL" else "Enabled",
        key_spec=str(params.get("KeySpec") or ""),
        key_usage=str(params.get("KeyUsage") or ""),
        origin=str(params.get("Origin") or ""),
        protection_level=str(params.get("ProtectionLevel") or ""),
        description=str(params.get("Description") or ""),
        dkms_instance_id=str(params.get("DKMSInstanceId") or ""),
        automatic_rotation="Enabled" if rotating else "Disabled",
        rotation_interval=str(params.get("RotationInterval") or "") if rotating else "",
        deletion_protection="Disabled",
    )


def update_calls(diff: Diff, spec: KmsKeySpec, observed: ObservedKey, region_id: str) -> list[KmsCall]:
    """The calls that bring the key to the spec, in order; empty when the diff is empty."""
    key_id = observed.metadata.key_id
    calls: list[KmsCall] = []
    status = diff.change("status")
    if status is not None and status.new == "Enabled":
        calls.append(KmsCall("EnableKey", {"KeyId": key_id}))
    description = diff.change("description")
    if description is not None:
        calls.append(KmsCall("UpdateKeyDescription", {"KeyId": key_id, "Description": description.new}))
    if diff.change("automaticRotation") or diff.change("rotationInterval"):
        enable = bool(spec.wants_rotation)
        params: dict[str, Any] = {"KeyId": key_id, "EnableAutomaticRotation": enable}
        if enable and spec.rotation_interval:
            seconds = normalize.interval_seconds(spec.rotation_interval)
            params["RotationInterval"] = normalize.format_interval(seconds)
        calls.append(KmsCall("UpdateRotationPolicy", params))
    protection = diff.change("enableDeletionProtection")
    if protection is not None:
        calls.append(
            KmsCall(
                "SetDeletionProtection",
                {"KeyId": key_id, "EnableDeletionProtection": bool(protection.new)},
            )
        )
    policy = diff.change("policy")
    if policy is not None:
        calls.append(
            KmsCall(
                "SetKeyPolicy",
                {"KeyId": key_id, "Policy": policy.new, "PolicyName": spec.policy_name or "default"},
            )
        )
    tags = diff.change("tags")
    if tags is not None:
        old: dict[str, str] = dict(tags.old or {})
        new: dict[str, str] = dict(tags.new or {})
        # The diff never sees the operator's tags; filtering again keeps a claim safe from any diff.
        removed = sorted(k for k in old if k not in new and not normalize.is_operator_tag(k))
        added = {k: v for k, v in sorted(new.items()) if old.get(k) != v and not normalize.is_operator_tag(k)}
        base = {"RegionId": region_id, "ResourceType": "key", "ResourceId": [key_id]}
        if removed:
            calls.append(KmsCall("UntagResources", {**base, "TagKey": removed}))
        if added:
            calls.append(
                KmsCall("TagResources", {**base, "Tag": [{"Key": k, "Value": v} for k, v in added.items()]})
            )
    if status is not None and status.new == "Disabled":
        calls.append(KmsCall("DisableKey", {"KeyId": key_id}))
    return calls


def claim_call(key_id: str, region_id: str, claim: Mapping[str, str]) -> KmsCall:
    """TagResources writing a claim (claims.claim_tags): an adopted key's first write."""
    return KmsCall(
        "TagResources",
        {
            "RegionId": region_id,
            "ResourceType": "key",
            "ResourceId": [key_id],
            "Tag": [{"Key": k, "Value": v} for k, v in sorted(claim.items())],
        },
    )


def deletion_calls(key_id: str, window_days: int, *, turn_off_protection: bool) -> list[KmsCall]:
    calls = []
    if turn_off_protection:
        calls.append(KmsCall("SetDeletionProtection", {"KeyId": key_id, "EnableDeletionProtection": False}))
    calls.append(KmsCall("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": window_days}))
    return calls
