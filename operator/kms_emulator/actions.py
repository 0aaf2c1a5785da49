"""One decoder per KMS action: wire parameters -> a backend call -> the success body (moto's responses.py).

Bodies use the exact shapes the SDK models expect, including the wrapper objects of lists
(`{"Keys": {"Key": [...]}}`); a flat list would make the SDK raise AttributeError (reference §0.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors, rules
from .backend import FILTER_NAMES, KmsBackend, TagRow
from .model import key_metadata
from .params import Params

Body = dict[str, Any]
Handler = Callable[[KmsBackend, Params], Body]

CREATE, READ, WRITE = "create", "read", "write"


@dataclass(frozen=True)
class Action:
    """A KMS action: how to serve it, and which quota class it draws from (Limits page)."""

    name: str
    handler: Handler
    quota_class: str


def create_key(backend: KmsBackend, p: Params) -> Body:
    tags_text = p.get("Tags")
    key = backend.create_key(
        key_spec=p.get("KeySpec"),
        key_usage=p.get("KeyUsage"),
        origin=p.get("Origin"),
        protection_level=p.get("ProtectionLevel"),
        description=p.get("Description"),
        enable_automatic_rotation=p.flag("EnableAutomaticRotation"),
        rotation_interval=p.get("RotationInterval"),
        dkms_instance_id=p.get("DKMSInstanceId"),
        key_storage_mechanism=p.get("KeyStorageMechanism"),
        policy=p.get("Policy"),
        tags=rules.parse_json_tags(tags_text) if tags_text else None,
    )
    return {"KeyMetadata": key_metadata(key, with_deletion_protection=False)}


def describe_key(backend: KmsBackend, p: Params) -> Body:
    key = backend.describe_key(p.required("KeyId"))
    return {"KeyMetadata": key_metadata(key, with_deletion_protection=True)}


def list_keys(backend: KmsBackend, p: Params) -> Body:
    page_number = p.integer("PageNumber", default=1) or 0
    page_size = p.integer("PageSize", default=10) or 0
    filters_text = p.get("Filters")
    filters = parse_filters(filters_text) if filters_text else {}
    keys, total = backend.list_keys(page_number=page_number, page_size=page_size, filters=filters)
    return {
        "Keys": {"Key": [{"KeyId": key.key_id, "KeyArn": key.arn} for key in keys]},
        "TotalCount": total,
        "PageNumber": page_number,
        "PageSize": page_size,
    }


def parse_filters(text: str) -> dict[str, frozenset[str]]:
    """`[{"Key": "KeyState", "Values": ["Enabled"]}, ...]`: values of the same Key are OR-ed, even across
    entries."""
    document = rules.parse_json(text, "Filters")
    if not isinstance(document, list) or len(document) > 10:
        raise errors.invalid_parameter(
            "Filters", "Expected a JSON array of at most 10 {Key, Values} objects."
        )
    merged: dict[str, frozenset[str]] = {}
    for entry in document:
        if not isinstance(entry, dict):
            raise errors.invalid_parameter("Filters", "Each filter is a {Key, Values} object.")
        name, values = entry.get("Key"), entry.get("Values")
        if not isinstance(name, str) or name.lower() not in FILTER_NAMES:
            raise errors.invalid_parameter("Filters", f"Unknown filter key {name!r}.")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise errors.invalid_parameter("Filters", "Values is a non-empty array of strings.")
        canonical = FILTER_NAMES[name.lower()]
        merged[canonical] = merged.get(canonical, frozenset()) | frozenset(values)
    return merged


def update_key_description(backend: KmsBackend, p: Params) -> Body:
    description = p.get("Description")
    if description is None:  # present but empty clears the description
        raise errors.missing_parameter("Description")
    backend.update_key_description(p.required("KeyId"), description)
    return {}


def enable_key(backend: KmsBackend, p: Params) -> Body:
    backend.enable_key(p.required("KeyId"))
    return {}


def disable_key(backend: KmsBackend, p: Params) -> Body:
    backend.disable_key(p.required("KeyId"))
    return {}


def update_rotation_policy(backend: KmsBackend, p: Params) -> Body:
    backend.update_rotation_policy(
        p.required("KeyId"), p.flag("EnableAutomaticRotation", required=True), p.get("RotationInterval")
    )
    return {}


def set_deletion_protection(backend: KmsBackend, p: Params) -> Body:
    backend.set_deletion_protection(
        enable=p.flag("EnableDeletionProtection", required=True),
        key_id=p.get("KeyId"),
        protected_resource_arn=p.get("ProtectedResourceArn"),
        description=p.get("DeletionProtectionDescription"),
    )
    return {}


def schedule_key_deletion(backend: KmsBackend, p: Params) -> Body:
    key_id = p.required("KeyId")
    window = p.integer("PendingWindowInDays", required=True)
    assert window is not None
    backend.schedule_key_deletion(key_id, window)
    return {}


def cancel_key_deletion(backend: KmsBackend, p: Params) -> Body:
    backend.cancel_key_deletion(p.required("KeyId"))
    return {}


def _single_key(p: Params) -> str:
    """The single-key tag family names exactly one of KeyId / SecretName / CertificateId."""
    named = [name for name in ("KeyId", "SecretName", "CertificateId") if p.get(name)]
    if not named:
        raise errors.missing_parameter("KeyId")
    if len(named) > 1:
        raise errors.invalid_parameter(named[1], "Give only one of KeyId, SecretName and CertificateId.")
    if named[0] != "KeyId":
        # Emulator choice: secrets and certificates are not emulated.
        raise errors.unsupported_operation("The emulator has no secrets or certificates.")
    return p.required("KeyId")


def tag_resource(backend: KmsBackend, p: Params) -> Body:
    key_id = _single_key(p)
    backend.tag_resource(key_id, rules.parse_json_tags(p.required("Tags")))
    return {}


def untag_resource(backend: KmsBackend, p: Params) -> Body:
    key_id = _single_key(p)
    backend.untag_resource(key_id, rules.parse_json_string_list(p.required("TagKeys"), "TagKeys"))
    return {}


def list_resource_tags(backend: KmsBackend, p: Params) -> Body:
    rows = backend.list_resource_tags(p.required("KeyId"))
    return {
        "Tags": {
            "Tag": [{"KeyId": r.resource_id, "TagKey": r.tag_key, "TagValue": r.tag_value} for r in rows]
        }
    }


def tag_resources(backend: KmsBackend, p: Params) -> Body:
    backend.tag_resources(
        region_id=p.get("RegionId") or "",
        resource_type=p.get("ResourceType") or "",
        resource_ids=p.indexed("ResourceId"),
        tags=rules.check_tags(p.indexed_pairs("Tag", "Key", "Value"), "Tag"),
    )
    return {}


def untag_resources(backend: KmsBackend, p: Params) -> Body:
    backend.untag_resources(
        region_id=p.get("RegionId") or "",
        resource_type=p.get("ResourceType") or "",
        resource_ids=p.indexed("ResourceId"),
        tag_keys=p.indexed("TagKey"),
        remove_all=p.flag("All"),
    )
    return {}


def list_tag_resources(backend: KmsBackend, p: Params) -> Body:
    rows, next_token = backend.list_tag_resources(
        region_id=p.get("RegionId") or "",
        resource_type=p.get("ResourceType") or "",
        resource_ids=p.indexed("ResourceId"),
        tags=dict(p.indexed_pairs("Tag", "Key", "Value")),
        next_token=p.get("NextToken"),
    )
    return {"TagResources": {"TagResource": [_tag_resource_row(r) for r in rows]}, "NextToken": next_token}


def _tag_resource_row(row: TagRow) -> dict[str, str]:
    return {
        "ResourceId": row.resource_id,
        "ResourceType": "key",
        "TagKey": row.tag_key,
        "TagValue": row.tag_value,
    }


def set_key_policy(backend: KmsBackend, p: Params) -> Body:
    backend.set_key_policy(p.required("KeyId"), p.required("Policy"), p.get("PolicyName"))
    return {}


def get_key_policy(backend: KmsBackend, p: Params) -> Body:
    return {"Policy": backend.get_key_policy(p.required("KeyId"), p.get("PolicyName"))}


def describe_regions(backend: KmsBackend, p: Params) -> Body:
    return {"Regions": {"Region": [{"RegionId": region} for region in backend.describe_regions()]}}


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("CreateKey", create_key, CREATE),
        Action("DescribeKey", describe_key, READ),
        Action("ListKeys", list_keys, READ),
        Action("UpdateKeyDescription", update_key_description, WRITE),
        Action("EnableKey", enable_key, WRITE),
        Action("DisableKey", disable_key, WRITE),
        Action("UpdateRotationPolicy", update_rotation_policy, WRITE),
        Action("SetDeletionProtection", set_deletion_protection, WRITE),
        Action("ScheduleKeyDeletion", schedule_key_deletion, WRITE),
        Action("CancelKeyDeletion", cancel_key_deletion, WRITE),
        Action("TagResource", tag_resource, WRITE),
        Action("UntagResource", untag_resource, WRITE),
        Action("ListResourceTags", list_resource_tags, READ),
        Action("TagResources", tag_resources, WRITE),
        Action("UntagResources", untag_resources, WRITE),
        Action("ListTagResources", list_tag_resources, READ),
        Action("SetKeyPolicy", set_key_policy, WRITE),
        Action("GetKeyPolicy", get_key_policy, READ),
        Action("DescribeRegions", describe_regions, READ),
    )
}
