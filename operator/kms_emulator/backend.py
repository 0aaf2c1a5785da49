"""KMS state and rules: one method per KMS action, like moto's models.py.

Methods take decoded, typed arguments and return our own types; the wire layer (actions.py, wire.py) turns
HTTP parameters into these calls and results into JSON. Every rule of reference §3 is checked here, and every
refusal is a KmsError. The backend is thread-safe: tests seed and inspect it from their own thread while the
server's event loop runs actions.

ListKeys with a TagKey/TagValue filter (the operator's ownership lookup before every CreateKey) reads a tag
index instead of every key, so its cost does not grow with the number of keys: the emulator must never be what
bounds a benchmark. Tags change only through `_retag`, which keeps the index true.
"""

from __future__ import annotations

import random
import string
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import errors, rules
from .clock import Clock
from .model import DISABLED, ENABLED, PENDING_DELETION, PENDING_IMPORT, Key

DEFAULT_MAX_KEYS = 200  # "200 CMKs per region" (Limits page)
LIST_TAG_RESOURCES_PAGE = 200
_ROTATION_CATCH_UP_LIMIT = 10_000


@dataclass(frozen=True)
class TagRow:
    """One row of ListTagResources / ListResourceTags."""

    resource_id: str
    tag_key: str
    tag_value: str


class KmsBackend:
    """The keys of one account in one region, and the KMS rules that govern them."""

    def __init__(
        self,
        *,
        region_id: str,
        account_id: str,
        clock: Clock | None = None,
        instance_ids: Iterable[str] = (),
        max_keys: int = DEFAULT_MAX_KEYS,
        rotation_bounds: rules.RotationBounds | None = None,
        on_change: Callable[[], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.region_id = region_id
        self.account_id = account_id
        self.clock = clock or Clock()
        self.instance_ids = frozenset(instance_ids)
        self.max_keys = max_keys
        self.rotation_bounds = rotation_bounds or rules.RotationBounds()
        self.on_change = on_change
        self.lock = threading.RLock()
        # Emulator choice: ListKeys pages in creation order (dict insertion order), PendingDeletion included.
        self.keys: dict[str, Key] = {}
        self._tags = _TagIndex()
        self._rng = random.Random(seed)
        self._next_event = float("inf")  # the earliest deletion or rotation due; see _tick()

    # -- CreateKey and reads ------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        key_spec: str | None = None,
        key_usage: str | None = None,
        origin: str | None = None,
        protection_level: str | None = None,
        description: str | None = None,
        enable_automatic_rotation: bool = False,
        rotation_interval: str | None = None,
        dkms_instance_id: str | None = None,
        key_storage_mechanism: str | None = None,
        policy: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Key:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-createkey"""
        spec = rules.check_key_spec(key_spec or rules.DEFAULT_KEY_SPEC)
        usage = rules.check_key_usage(spec, key_usage or rules.default_key_usage(spec))
        origin = rules.check_choice("Origin", origin or "Aliyun_KMS", rules.ORIGINS)
        # Emulator choice: ProtectionLevel is stored as given (default SOFTWARE), also for instance keys,
        # where the real service decides it from the instance.
        level = rules.check_choice("ProtectionLevel", protection_level or "SOFTWARE", rules.PROTECTION_LEVELS)
        instance = dkms_instance_id or ""
        if instance and instance not in self.instance_ids:
            # Emulator choice: an unknown KMS instance is a bad parameter (400), not a missing resource.
            raise errors.invalid_parameter("DKMSInstanceId", "No such KMS instance.")
        # Emulator choice: AES_128/192 ("only Dedicated KMS") and KeyStorageMechanism need an instance.
        if spec in rules.INSTANCE_ONLY_SPECS and not instance:
            raise errors.invalid_parameter("KeySpec", f"{spec} is only supported in a KMS instance.")
        if key_storage_mechanism:
            rules.check_choice("KeyStorageMechanism", key_storage_mechanism, rules.KEY_STORAGE_MECHANISMS)
            if not instance:
                raise errors.invalid_parameter("KeyStorageMechanism", "Only with DKMSInstanceId.")
        rules.check_description(description or "")
        interval: int | None = None
        if enable_automatic_rotation:
            if spec in rules.ASYMMETRIC_SPECS or origin == "EXTERNAL":
                raise errors.unsupported_operation("Automatic rotation is not supported for this key.")
            if not rotation_interval:
                # Emulator choice (reference §3.3): the docs say the interval is required, without a code.
                raise errors.missing_parameter("RotationInterval")
            interval = rules.parse_rotation_interval(rotation_interval, self.rotation_bounds)
        elif rotation_interval:
            # Emulator choice: an interval without rotation is checked for syntax and bounds, then dropped.
            rules.parse_rotation_interval(rotation_interval, self.rotation_bounds)
        if policy is not None:
            rules.check_policy(policy)
        tag_map = dict(tags or {})
        rules.check_tags(list(tag_map.items()))

        with self.lock:
            self._tick()
            if len(self.keys) >= self.max_keys:
                raise errors.limit_exceeded(f"{self.max_keys} keys per region")
            now = self.clock.now()
            key_id = self._new_key_id(instance)
            external = origin == "EXTERNAL"
            version = "" if external else str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            key = Key(
                key_id=key_id,
                arn=self.arn(key_id),
                creator=self.account_id,
                creation_date=now,
                key_spec=spec,
                key_usage=usage,
                origin=origin,
                protection_level=level,
                dkms_instance_id=instance,
                key_storage_mechanism=key_storage_mechanism or "",
                description=description or "",
                # An EXTERNAL key has no material until ImportKeyMaterial, which the emulator does not offer.
                key_state=PENDING_IMPORT if external else ENABLED,
                primary_key_version=version,
                last_rotation_date=None if external else now,
                rotation_enabled=interval is not None,
                rotation_interval=interval,
                next_rotation_date=now + interval if interval is not None else None,
                # Emulator choice: every key has a policy; without one, the default of rules.default_policy.
                policy=policy if policy is not None else rules.default_policy(self.account_id),
                tags=tag_map,
                key_versions=[version] if version else [],
            )
            self.keys[key_id] = key
            self._tags.add(key)
            self._schedule(key.next_rotation_date)
            self._changed()
            return key

    def describe_key(self, key_id: str) -> Key:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-describekey"""
        with self.lock:
            self._tick()
            return self._get(key_id)

    def list_keys(
        self,
        *,
        page_number: int = 1,
        page_size: int = 10,
        filters: Mapping[str, frozenset[str]] | None = None,
    ) -> tuple[list[Key], int]:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-listkeys

        `filters` maps a filter name (reference §2, ListKeys) to the values OR-ed for it; different names
        are AND-ed. Returns one page and the total count.
        """
        if page_number < 1:
            raise errors.invalid_parameter("PageNumber")
        if not 1 <= page_size <= 100:
            raise errors.invalid_parameter("PageSize")
        with self.lock:
            self._tick()
            candidates = self._tags.candidates(filters or {})
            keys = self.keys.values() if candidates is None else [self.keys[i] for i in candidates]
            matching = [key for key in keys if _matches(key, filters or {})]
            start = (page_number - 1) * page_size
            return matching[start : start + page_size], len(matching)

    def describe_regions(self) -> list[str]:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-describeregions

        Emulator choice: one emulator serves one region, so that is the only region listed.
        """
        return [self.region_id]

    # -- writes on one key --------------------------------------------------------------------------------

    def update_key_description(self, key_id: str, description: str) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-updatekeydescription"""
        rules.check_description(description)
        with self.lock:
            key = self._live(key_id)
            self._refuse_pending_deletion(key)
            key.description = description
            self._changed()

    def enable_key(self, key_id: str) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-enablekey"""
        self._set_enabled(key_id, ENABLED)

    def disable_key(self, key_id: str) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-disablekey"""
        self._set_enabled(key_id, DISABLED)

    def update_rotation_policy(self, key_id: str, enable: bool, rotation_interval: str | None) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-updaterotationpolicy"""
        with self.lock:
            key = self._live(key_id)
            if key.key_state != ENABLED:
                raise errors.rejected_state(key.key_state)
            if not enable:
                # Emulator choice: turning rotation off is allowed (a no-op) even where it cannot be on, and
                # forgets the interval, which KeyMetadata then omits.
                key.rotation_enabled = False
                key.rotation_interval = None
                key.next_rotation_date = None
                self._changed()
                return
            if key.key_spec in rules.ASYMMETRIC_SPECS or key.origin == "EXTERNAL":
                raise errors.unsupported_operation("Automatic rotation is not supported for this key.")
            if not rotation_interval:
                raise errors.missing_parameter("RotationInterval")
            interval = rules.parse_rotation_interval(rotation_interval, self.rotation_bounds)
            key.rotation_enabled = True
            key.rotation_interval = interval
            # The next rotation counts from the last one; if that moment has passed, the key rotates at once.
            key.next_rotation_date = (key.last_rotation_date or key.creation_date) + interval
            self._schedule(key.next_rotation_date)
            self._tick()
            self._changed()

    def set_deletion_protection(
        self,
        *,
        enable: bool,
        key_id: str | None = None,
        protected_resource_arn: str | None = None,
        description: str | None = None,
    ) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-setdeletionprotection

        The key is named by `KeyId` (Terraform's resource) or `ProtectedResourceArn` (its sweeper).
        """
        target = key_id or protected_resource_arn
        if not target:
            raise errors.missing_parameter("ProtectedResourceArn")
        if protected_resource_arn and not key_id and not protected_resource_arn.startswith("acs:kms:"):
            raise errors.invalid_parameter("ProtectedResourceArn")
        with self.lock:
            key = self._live(target)
            # Emulator choice: the page only says to ensure the key is not PendingDeletion; the code is ours.
            self._refuse_pending_deletion(key)
            key.deletion_protection = enable
            # The description only means something while protection is on; turning it off forgets it.
            key.deletion_protection_description = (description or "") if enable else ""
            self._changed()

    def schedule_key_deletion(self, key_id: str, pending_window_in_days: int) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-schedulekeydeletion"""
        low, high = rules.PENDING_WINDOW_DAYS
        if not low <= pending_window_in_days <= high:
            raise errors.invalid_parameter("PendingWindowInDays", f"Use {low} to {high} days.")
        with self.lock:
            key = self._live(key_id)
            if key.key_state == PENDING_DELETION:
                raise errors.state_modified_failed()
            if key.deletion_protection:
                raise errors.deletion_protected()
            key.key_state = PENDING_DELETION
            key.delete_date = self.clock.now() + pending_window_in_days * rules.DAY
            self._schedule(key.delete_date)
            self._changed()

    def cancel_key_deletion(self, key_id: str) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-cancelkeydeletion

        The key "returns to the Enabled state", whatever state it was in before.
        """
        with self.lock:
            key = self._live(key_id)
            if key.key_state != PENDING_DELETION:
                raise errors.state_modified_failed()
            key.key_state = ENABLED
            key.delete_date = None
            self._schedule(key.next_rotation_date)
            self._tick()
            self._changed()

    def set_key_policy(self, key_id: str, policy: str, policy_name: str | None = None) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-setkeypolicy"""
        rules.check_policy_name(policy_name)
        rules.check_policy(policy)
        with self.lock:
            key = self._live(key_id)
            # Emulator choice: like other writes, a policy cannot change while the key is PendingDeletion.
            self._refuse_pending_deletion(key)
            key.policy = policy
            self._changed()

    def get_key_policy(self, key_id: str, policy_name: str | None = None) -> str:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-getkeypolicy"""
        rules.check_policy_name(policy_name)
        with self.lock:
            key = self._live(key_id)
            if not key.policy:
                raise errors.resource_not_found("key policy")
            return key.policy

    # -- tags -----------------------------------------------------------------------------------------------

    def tag_resource(self, key_id: str, tags: Mapping[str, str]) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-tagresource"""
        if not tags:
            raise errors.missing_parameter("Tags")
        rules.check_tags(list(tags.items()))
        with self.lock:
            key = self._live(key_id)
            self._add_tags([key], tags)

    def untag_resource(self, key_id: str, tag_keys: Iterable[str]) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-untagresource"""
        names = list(tag_keys)
        if not names:
            raise errors.missing_parameter("TagKeys")
        with self.lock:
            key = self._live(key_id)
            # Emulator choice: the state page's UntagResource row is cut off; taken to match TagResource.
            self._refuse_pending_deletion(key)
            self._retag(key, {k: v for k, v in key.tags.items() if k not in names})
            self._changed()

    def list_resource_tags(self, key_id: str) -> list[TagRow]:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-listresourcetags"""
        with self.lock:
            key = self._live(key_id)
            return [TagRow(key.key_id, k, v) for k, v in key.tags.items()]

    def tag_resources(
        self, *, region_id: str, resource_type: str, resource_ids: list[str], tags: Mapping[str, str]
    ) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-tagresources"""
        self._check_batch(region_id, resource_type, resource_ids, required=True)
        if not tags:
            raise errors.missing_parameter("Tag.1.Key")
        rules.check_tags(list(tags.items()), "Tag")
        with self.lock:
            keys = [self._live(resource_id) for resource_id in resource_ids]
            self._add_tags(keys, tags)

    def untag_resources(
        self,
        *,
        region_id: str,
        resource_type: str,
        resource_ids: list[str],
        tag_keys: list[str],
        remove_all: bool = False,
    ) -> None:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-untagresources

        `All` only counts when no tag key is given, as the SDK model says.
        """
        self._check_batch(region_id, resource_type, resource_ids, required=True)
        if len(tag_keys) > rules.MAX_TAGS:
            raise errors.invalid_parameter("TagKey", f"At most {rules.MAX_TAGS} tag keys.")
        if not tag_keys and not remove_all:
            raise errors.missing_parameter("TagKey.1")
        with self.lock:
            keys = [self._live(resource_id) for resource_id in resource_ids]
            for key in keys:
                self._refuse_pending_deletion(key)
            for key in keys:
                self._retag(key, {k: v for k, v in key.tags.items() if tag_keys and k not in tag_keys})
            self._changed()

    def list_tag_resources(
        self,
        *,
        region_id: str,
        resource_type: str,
        resource_ids: list[str],
        tags: Mapping[str, str],
        next_token: str | None = None,
    ) -> tuple[list[TagRow], str]:
        """https://www.alibabacloud.com/help/en/kms/developer-reference/api-kms-2016-01-20-listtagresources

        Rows of (key, tag) for the given keys (or all keys), keeping only keys carrying every given tag.
        Emulator choices: unknown key IDs yield no rows; `NextToken` is the decimal offset of the next row.
        """
        self._check_batch(region_id, resource_type, resource_ids, required=False)
        offset = 0
        if next_token:
            if not next_token.isdigit():
                raise errors.invalid_parameter("NextToken")
            offset = int(next_token)
        with self.lock:
            self._tick()
            if resource_ids:
                keys = [self.keys[i] for i in dict.fromkeys(resource_ids) if i in self.keys]
            else:
                keys = list(self.keys.values())
            rows = [
                TagRow(key.key_id, k, v)
                for key in keys
                if all(key.tags.get(k) == v for k, v in tags.items())
                for k, v in key.tags.items()
            ]
        page = rows[offset : offset + LIST_TAG_RESOURCES_PAGE]
        end = offset + len(page)
        return page, (str(end) if end < len(rows) else "")

    # -- helpers --------------------------------------------------------------------------------------------

    def arn(self, key_id: str) -> str:
        return f"acs:kms:{self.region_id}:{self.account_id}:key/{key_id}"

    def snapshot(self) -> list[dict[str, object]]:
        """Every key as plain data: for the state file and the admin dump."""
        with self.lock:
            return [key.to_dict() for key in self.keys.values()]

    def restore(self, keys: Iterable[Key]) -> None:
        with self.lock:
            self.keys = {key.key_id: key for key in keys}
            self._tags = _TagIndex()
            for key in self.keys.values():
                self._tags.add(key)
            self._next_event = self.clock.now()  # recompute due events on the next action

    def _set_enabled(self, key_id: str, target: str) -> None:
        with self.lock:
            key = self._live(key_id)
            if key.key_state in (PENDING_DELETION, PENDING_IMPORT):
                raise errors.state_modified_failed()
            if key.key_state != target:  # both are idempotent
                key.key_state = target
                if target == ENABLED:
                    self._schedule(key.next_rotation_date)
                    self._tick()
                self._changed()

    def _add_tags(self, keys: list[Key], tags: Mapping[str, str]) -> None:
        for key in keys:
            self._refuse_pending_deletion(key)
            if len(key.tags.keys() | tags.keys()) > rules.MAX_TAGS:
                # Emulator choice: the 20-tag limit also holds for the tags a key ends up with.
                raise errors.limit_exceeded(f"{rules.MAX_TAGS} tags per key")
        for key in keys:
            self._retag(key, {**key.tags, **tags})  # an existing tag key takes the new value
        self._changed()

    def _retag(self, key: Key, tags: dict[str, str]) -> None:
        """The one way a stored key's tags change: the tag index follows."""
        self._tags.remove(key)
        key.tags = tags
        self._tags.add(key)

    def _check_batch(
        self, region_id: str, resource_type: str, resource_ids: list[str], required: bool
    ) -> None:
        if not region_id:
            raise errors.missing_parameter("RegionId")
        if region_id != self.region_id:
            # Emulator choice: a regional endpoint only knows its own region's keys.
            raise errors.invalid_parameter("RegionId", f"This endpoint serves {self.region_id}.")
        if not resource_type:
            raise errors.missing_parameter("ResourceType")
        if resource_type.lower() == "secret":
            # Emulator choice: secrets are not emulated.
            raise errors.unsupported_operation("The emulator has no secrets.")
        if resource_type.lower() != "key":
            raise errors.invalid_parameter("ResourceType")
        if required and not resource_ids:
            raise errors.missing_parameter("ResourceId.1")
        if len(resource_ids) > rules.MAX_BATCH_RESOURCES:
            raise errors.invalid_parameter("ResourceId", f"At most {rules.MAX_BATCH_RESOURCES} resources.")

    def _get(self, key_id: str) -> Key:
        """A key by ID or ARN. Emulator choice: every action accepts the ARN (the docs only promise it for
        SetKeyPolicy/GetKeyPolicy); aliases are not emulated, so every alias is unknown."""
        if not key_id:
            raise errors.missing_parameter("KeyId")
        if key_id.startswith("alias/"):
            raise errors.alias_not_found()
        if key_id.startswith("acs:kms:"):
            prefix = self.arn("")
            if not key_id.startswith(prefix):
                raise errors.key_not_found()
            key_id = key_id[len(prefix) :]
        key = self.keys.get(key_id)
        if key is None:
            raise errors.key_not_found()
        return key

    def _live(self, key_id: str) -> Key:
        self._tick()
        return self._get(key_id)

    @staticmethod
    def _refuse_pending_deletion(key: Key) -> None:
        if key.key_state == PENDING_DELETION:
            raise errors.rejected_state(PENDING_DELETION)

    def _new_key_id(self, instance: str) -> str:
        if not instance:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        # Instance keys look like `key-hzz62ee5fe3b7ifgq5hmg`: "key-", the instance's 3-letter region code
        # (Emulator choice: taken from the instance ID when it has one), 18 lower-case alphanumerics.
        region_code = instance[4:7] if instance.startswith("kst-") and len(instance) >= 7 else "hzz"
        alphabet = string.ascii_lowercase + string.digits
        return "key-" + region_code + "".join(self._rng.choice(alphabet) for _ in range(18))

    def _schedule(self, when: float | None) -> None:
        if when is not None:
            self._next_event = min(self._next_event, when)

    def _tick(self) -> None:
        """Apply what the clock made due: expired deletion windows and automatic rotations.

        Done lazily, on the next action, so that advancing the clock is cheap; the scan over all keys only
        runs when the earliest due moment has passed.
        """
        now = self.clock.now()
        if now < self._next_event:
            return
        changed = False
        next_event = float("inf")
        for key_id in list(self.keys):
            key = self.keys[key_id]
            if key.key_state == PENDING_DELETION and key.delete_date is not None:
                if key.delete_date <= now:
                    del self.keys[key_id]
                    self._tags.drop(key)
                    changed = True
                    continue
                next_event = min(next_event, key.delete_date)
            if key.key_state == ENABLED and key.rotation_enabled and key.rotation_interval:
                changed |= self._rotate_due(key, now)
                # Suspended keys are not scheduled: enabling one schedules it again (_set_enabled).
                if key.next_rotation_date is not None:
                    next_event = min(next_event, key.next_rotation_date)
        self._next_event = next_event
        if changed:
            self._changed()

    def _rotate_due(self, key: Key, now: float) -> bool:
        """Emulator choice: an Enabled rotating key gets a new primary version at each due moment passed."""
        assert key.rotation_interval is not None
        rotated = False
        for _ in range(_ROTATION_CATCH_UP_LIMIT):
            if key.next_rotation_date is None or key.next_rotation_date > now:
                break
            version = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            key.key_versions.append(version)
            key.primary_key_version = version
            key.last_rotation_date = key.next_rotation_date
            key.next_rotation_date += key.rotation_interval
            rotated = True
        return rotated

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


# ListKeys filter names, case-insensitively, mapped to how a key answers them.
FILTER_NAMES = {
    "keystate": "KeyState",
    "keyspec": "KeySpec",
    "keyusage": "KeyUsage",
    "protectionlevel": "ProtectionLevel",
    "creatortype": "CreatorType",
    "dkmsinstanceid": "DKMSInstanceId",
    "keyid": "keyId",
    "aliasname": "AliasName",
    "creator": "Creator",
    "tagkey": "TagKey",
    "tagvalue": "TagValue",
}


def _filter_values(key: Key, name: str) -> set[str]:
    simple = {
        "KeyState": key.key_state,
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
        "ProtectionLevel": key.protection_level,
        # Emulator choice: every emulated key is made by a user; there are no service-managed keys.
        "CreatorType": "User",
        "DKMSInstanceId": key.dkms_instance_id,
        "keyId": key.key_id,
        "Creator": key.creator,
    }
    if name in simple:
        return {simple[name]}
    if name == "TagKey":
        return set(key.tags)
    if name == "TagValue":
        return set(key.tags.values())
    return set()  # AliasName: aliases are not emulated


class _TagIndex:
    """Key IDs by tag key and by tag value, each in creation order, for ListKeys' tag filters."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, set[str]]] = {"TagKey": {}, "TagValue": {}}
        self._order: dict[str, int] = {}  # key ID -> creation rank: indexed pages keep ListKeys' order
        self._next = 0

    def add(self, key: Key) -> None:
        if key.key_id not in self._order:
            self._order[key.key_id] = self._next
            self._next += 1
        for name, values in (("TagKey", key.tags.keys()), ("TagValue", key.tags.values())):
            for value in values:
                self._by_name[name].setdefault(value, set()).add(key.key_id)

    def remove(self, key: Key) -> None:
        """Forget the key's tags (before they change)."""
        for name, values in (("TagKey", key.tags.keys()), ("TagValue", key.tags.values())):
            index = self._by_name[name]
            for value in values:
                ids = index.get(value)
                if ids is not None:
                    ids.discard(key.key_id)
                    if not ids:
                        del index[value]

    def drop(self, key: Key) -> None:
        """Forget a key that is gone from the backend."""
        self.remove(key)
        self._order.pop(key.key_id, None)

    def candidates(self, filters: Mapping[str, frozenset[str]]) -> list[str] | None:
        """Key IDs that can match the tag filters, in creation order; None when no tag filter is given."""
        groups: list[set[str]] = []
        for name, index in self._by_name.items():
            if name in filters:
                sets = [index.get(value, set()) for value in filters[name]]
                groups.append(sets[0] if len(sets) == 1 else set().union(*sets))
        if not groups:
            return None
        groups.sort(key=len)  # start from the fewest: the owner tag's value names one key
        found = set(groups[0])
        for ids in groups[1:]:
            found &= ids
        return sorted(found, key=self._order.__getitem__)


def _matches(key: Key, filters: Mapping[str, frozenset[str]]) -> bool:
    # Emulator choice: TagKey and TagValue are matched independently (any tag key, any tag value), as two
    # separate filters would be.
    return all(_filter_values(key, name) & values for name, values in filters.items())
