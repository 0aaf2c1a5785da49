"""The reverse of diff: render the spec that an observed key already satisfies, for `kmskey-operator import`.

The spec is built so that `diff(parse_spec(spec), observed, owner_uid=None)` is empty and the spec passes
`validation.validate_spec`: an imported key adopted by the printed manifest needs no KMS write. Only fields
that diff compares are rendered, each in the form diff normalises to (rotation in seconds, user tags only).
"""

from __future__ import annotations

import json
import re
from typing import Any

from kmskey_operator import model, names, normalize, validation
from kmskey_operator.kms.types import ObservedKey

# Key states a spec can declare; PendingImport (EXTERNAL keys awaiting material) is left undeclared.
_DECLARABLE_STATES = ("Enabled", "Disabled")
_NAME_MAX = 63  # a DNS-1123 label, so the name also fits where labels are required


class NotExportable(ValueError):
    """The key cannot be described by a KmsKey spec (for example, it is pending deletion)."""


def resource_name(key_id: str) -> str:
    """A DNS-1123 name derived from a key ID: `key-hzz62ee5fe3b7ifgq5hmg` stays as it is."""
    name = re.sub(r"[^a-z0-9-]+", "-", key_id.lower()).strip("-")
    name = name[:_NAME_MAX].rstrip("-")
    return name or "kmskey"


def spec_from_observed(observed: ObservedKey, *, region_id: str) -> dict[str, Any]:
    """A camelCase KmsKey spec that adopts the key (spec.keyId) and matches it field by field.

    Raises NotExportable for a key pending deletion: no spec can declare that state, and the operator
    would refuse to manage it. The operator's ownership tag is left out of spec.tags (validation refuses
    it there), so a key that carries it only matches a spec of the KmsKey that owns it: callers should not
    export such keys.
    """
    meta = observed.metadata
    if meta.key_state == "PendingDeletion":
        raise NotExportable(
            f"KMS key {meta.key_id} is pending deletion (on {meta.delete_date or 'an unknown date'}); "
            "cancel the deletion with CancelKeyDeletion first, then import it"
        )
    spec: dict[str, Any] = {"keyId": meta.key_id, "regionId": region_id}
    for field, value in (
        ("keySpec", meta.key_spec),
        ("keyUsage", meta.key_usage),
        ("origin", meta.origin),
        ("dkmsInstanceId", meta.dkms_instance_id),
    ):
        if value:
            spec[field] = value
    if meta.protection_level and not meta.dkms_instance_id:
        # diff compares the protection level only for default (non-instance) keys, and validation warns
        # that KMS ignores it inside an instance.
        spec["protectionLevel"] = meta.protection_level
    spec["description"] = meta.description
    if meta.key_state in _DECLARABLE_STATES:
        spec["status"] = meta.key_state
    if _can_rotate(meta.key_spec, meta.origin):
        spec["enableAutomaticRotation"] = meta.rotation_on
        if meta.rotation_on and meta.rotation_interval:
            spec["rotationInterval"] = normalize.format_interval(
                normalize.interval_seconds(meta.rotation_interval)
            )
    spec["enableDeletionProtection"] = meta.deletion_protection == "Enabled"
    if observed.policy is not None:
        spec["policy"] = readable_policy(observed.policy)
    spec["tags"] = dict(sorted(normalize.user_tags(observed.tags).items()))
    # Stated explicitly: deleting an imported KmsKey must never delete a key that predates it.
    spec["deletionPolicy"] = model.DeletionPolicy.RETAIN.value
    return spec


def manifest(spec: dict[str, Any], *, name: str, namespace: str | None = None) -> dict[str, Any]:
    """A whole KmsKey body around `spec`; `namespace` None leaves it to kubectl's current namespace."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": metadata,
        "spec": spec,
    }


def readable_policy(policy: str) -> str:
    """The policy pretty-printed (diff compares policies by value), unless that breaks KMS's size limit."""
    try:
        pretty = json.dumps(normalize.policy_document(policy), indent=2) + "\n"
    except ValueError:
        return policy
    return pretty if len(pretty.encode("utf-8")) <= validation.MAX_POLICY_BYTES else policy


def _can_rotate(key_spec: str, origin: str) -> bool:
    # Declaring rotation off on a key that cannot rotate says nothing; validation refuses rotation on.
    return key_spec in model.SYMMETRIC_KEY_SPECS and origin in ("", model.DEFAULT_ORIGIN)
