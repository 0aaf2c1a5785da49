"""One reconcile of one KmsKey: find or create the key, observe, diff, plan, apply, report.

Guarantees kept here:
- never a duplicate key: before any CreateKey the ownership tag (the resource UID) is looked up;
- never a write to a key the operator neither created (ownership tag) nor adopted (spec.keyId);
- never a write while paused or in Observe mode, and never a recreate of a key removed outside;
- every KMS refusal becomes a condition and an event carrying its code and request ID.
"""

from __future__ import annotations

import datetime
import logging
import random
from collections.abc import Sequence
from typing import Any

from kmskey_operator import conditions, names, validation
from kmskey_operator.conditions import FALSE, TRUE, Condition
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import KeyMetadata
from kmskey_operator.model import KmsKeySpec, ManagementPolicy, SpecError, parse_spec
from kmskey_operator.reconcile import plan
from kmskey_operator.reconcile.apply import apply
from kmskey_operator.reconcile.diff import Diff, diff
from kmskey_operator.reconcile.observe import observe
from kmskey_operator.reconcile.resource import Event, Outcome, Resource
from kmskey_operator.settings import Settings

logger = logging.getLogger(__name__)

REOBSERVE_DELAY = 5.0
BACKOFF_BASE = 2.0
BACKOFF_CAP = 120.0
DELETION_BLOCKED_DELAY = 60.0


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than KMS's own retry-after hint."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempt, 10)))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def status_from_metadata(meta: KeyMetadata, region_id: str) -> dict[str, Any]:
    """Status fields that mirror KMS's KeyMetadata ("" from KMS becomes null: absent)."""
    fields = {
        "keyId": meta.key_id,
        "arn": meta.arn,
        "keyState": meta.key_state,
        "keySpec": meta.key_spec,
        "keyUsage": meta.key_usage,
        "origin": meta.origin,
        "protectionLevel": meta.protection_level,
        "dkmsInstanceId": meta.dkms_instance_id,
        "creationDate": meta.creation_date,
        "creator": meta.creator,
        "primaryKeyVersion": meta.primary_key_version,
        "automaticRotation": meta.automatic_rotation,
        "rotationInterval": meta.rotation_interval,
        "nextRotationDate": meta.next_rotation_date,
        "lastRotationDate": meta.last_rotation_date,
        "deleteDate": meta.delete_date,
        "materialExpireTime": meta.material_expire_time,
        "deletionProtection": meta.deletion_protection,
    }
    status: dict[str, Any] = {k: (v or None) for k, v in fields.items()}
    status["regionId"] = region_id
    return status


class Reconciler:
    def __init__(self, gateway: KmsGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings

    # ----------------------------------------------------------------- reconcile

    async def reconcile(self, resource: Resource, *, attempt: int = 0) -> Outcome:
        report = _Report(resource)
        try:
            spec = parse_spec(resource.spec)
        except SpecError as error:
            return report.invalid(str(error))
        verdict = validation.validate_spec(resource.spec)
        if not verdict.allowed:
            # Admission normally refuses this; it got in while the webhook was down or disabled.
            return report.invalid(verdict.summary())

        region = spec.region_id or self.settings.region_id
        paused = resource.annotations.get(names.PAUSED_ANNOTATION, "").lower() == "true"
        observe_only = spec.management_policy is ManagementPolicy.OBSERVE
        key_id = spec.key_id or resource.status.get("keyId")
        owner_uid = None if spec.adopts_existing_key else resource.uid
        try:
            if not key_id:
                if paused:
                    return report.paused("the key has not been created yet")
                recovered = await self.gateway.find_keys_by_tag(region, names.OWNER_TAG_KEY, resource.uid)
                if recovered:
                    key_id = sorted(recovered)[0]
                    if len(recovered) > 1:
                        report.warn(
                            names.REASON_RECONCILING,
                            f"{len(recovered)} KMS keys carry this resource's ownership tag "
                            f"({', '.join(sorted(recovered))}); using {key_id}",
                        )
                else:
                    return await self._create(report, spec, region, resource.uid, attempt)
            observed = await observe(self.gateway, region, str(key_id), with_policy=spec.policy is not None)
        except KmsError as error:
            if error.kind is ErrorKind.GONE and key_id:
                return report.key_gone(str(key_id), region, adopted=spec.adopts_existing_key)
            return report.kms_error(error, attempt)

        report.mirror(observed.metadata, region)
        meta = observed.metadata
        if meta.key_state == "PendingDeletion":
            return report.pending_deletion(meta)
        if owner_uid is not None and observed.tags.get(names.OWNER_TAG_KEY) != owner_uid:
            return report.not_owned(meta.key_id)

        changes = diff(spec, observed, owner_uid=owner_uid)
        if observe_only:
            return report.observed_only(changes)
        if paused:
            return report.paused(_pending(changes) or "no changes pending")
        calls = plan.update_calls(changes, spec, observed, region)
        if calls:
            try:
                report.outcome.writes += await apply(self.gateway, region, calls, resource=resource.ref)
                fresh = await self.gateway.describe_key(region, meta.key_id)
            except KmsError as error:
                return report.kms_error(error, attempt)
            report.mirror(fresh, region)
            report.applied(changes, is_drift=resource.status.get("observedGeneration") == resource.generation)
            meta = fresh
        return report.synced(meta, spec, changes)

    async def _create(
        self, report: _Report, spec: KmsKeySpec, region: str, uid: str, attempt: int
    ) -> Outcome:
        call = plan.create_call(spec, uid)
        try:
            created = await self.gateway.create_key(region, call.params)
        except KmsError as error:
            return report.kms_error(error, attempt)
        report.outcome.writes += 1
        report.event("Normal", names.REASON_CREATED, f"Created KMS key {created.key_id} in {region}")
        logger.info(
            "KMS write CreateKey",
            extra={"resource": report.resource.ref, "key_id": created.key_id, "action": "CreateKey"},
        )
        observed = plan.observed_after_create(spec, created, uid)
        report.mirror(observed.metadata, region)
        followups = diff(spec, observed, owner_uid=uid)
        calls = plan.update_calls(followups, spec, observed, region)
        meta = observed.metadata
        if calls:
            try:
                report.outcome.writes += await apply(
                    self.gateway, region, calls, resource=report.resource.ref
                )
                meta = await self.gateway.describe_key(region, created.key_id)
            except KmsError as error:
                return report.kms_error(error, attempt)
            report.mirror(meta, region)
        return report.synced(meta, spec, followups)

    # ----------------------------------------------------------------- deletion

    async def finalize(self, resource: Resource, *, attempt: int = 0, runtime: float = 0.0) -> Outcome:
        """Deletion: Retain releases at once; Delete schedules deletion (a key gone counts as done)."""
        report = _Report(resource)
        outcome = report.outcome
        try:
            spec = parse_spec(resource.spec)
        except SpecError:
            spec = KmsKeySpec()
        region = spec.region_id or resource.status.get("regionId") or self.settings.region_id
        key_id = spec.key_id or resource.status.get("keyId")
        wants_delete = spec.deletion_policy.value == "Delete"
        if spec.management_policy is ManagementPolicy.OBSERVE or not wants_delete:
            if key_id:
                why = "managementPolicy Observe" if wants_delete else "deletionPolicy Retain"
                report.event("Normal", names.REASON_RETAINED, f"KMS key {key_id} retained ({why})")
            outcome.release = True
            return outcome
        if resource.annotations.get(names.PAUSED_ANNOTATION, "").lower() == "true":
            report.set_synced(FALSE, names.REASON_PAUSED, "deletion waits until the paused annotation goes")
            outcome.retry_after = DELETION_BLOCKED_DELAY
            return report.finish(synced_generation=False)
        if spec.pending_window_in_days is None:
            report.event(
                "Warning",
                names.REASON_RETAINED,
                f"KMS key {key_id or '(none)'} retained: deletionPolicy Delete needs "
                "spec.pendingWindowInDays (7-366)",
            )
            outcome.release = True
            return outcome
        try:
            if not key_id and not spec.adopts_existing_key:
                found = await self.gateway.find_keys_by_tag(region, names.OWNER_TAG_KEY, resource.uid)
                key_id = sorted(found)[0] if found else None
            if not key_id:
                outcome.release = True
                return outcome
            try:
                meta = await self.gateway.describe_key(region, str(key_id))
            except KmsError as error:
                if error.kind is ErrorKind.GONE:
                    outcome.release = True
                    return outcome
                raise
            if meta.key_state == "PendingDeletion":
                outcome.release = True
                return outcome
            if not spec.adopts_existing_key:
                tags = await self.gateway.list_key_tags(region, meta.key_id)
                if tags.get(names.OWNER_TAG_KEY) != resource.uid:
                    report.event(
                        "Warning",
                        names.REASON_NOT_OWNED,
                        f"KMS key {meta.key_id} retained: it does not carry this resource's ownership tag",
                    )
                    outcome.release = True
                    return outcome
            protected = meta.deletion_protection == "Enabled"
            if protected and spec.enable_deletion_protection is not False:
                message = (
                    f"KMS key {meta.key_id} has deletion protection on: set spec.enableDeletionProtection: "
                    "false to let the operator turn it off and schedule deletion, or set deletionPolicy: "
                    "Retain to keep the key"
                )
                report.set_synced(FALSE, names.REASON_DELETION_BLOCKED, message)
                report.warn(names.REASON_DELETION_BLOCKED, message)
                outcome.retry_after = DELETION_BLOCKED_DELAY
                return report.finish(synced_generation=False)
            calls = plan.deletion_calls(
                meta.key_id, spec.pending_window_in_days, turn_off_protection=protected
            )
            outcome.writes += await apply(self.gateway, region, calls, resource=resource.ref)
        except KmsError as error:
            if runtime >= self.settings.deletion_timeout_seconds:
                report.event(
                    "Warning",
                    names.REASON_RETAINED,
                    f"gave up scheduling deletion of KMS key {key_id} after {int(runtime)}s "
                    f"({error.describe()}); the key is kept: schedule its deletion in KMS yourself",
                )
                outcome.release = True
                return outcome
            report.kms_error(error, attempt)
            if outcome.retry_after is None:  # terminal: keep trying slowly until the timeout
                outcome.retry_after = DELETION_BLOCKED_DELAY
            return outcome
        # ScheduleKeyDeletion answers with a RequestId only; KMS's DeleteDate is now + the window.
        window = datetime.timedelta(days=spec.pending_window_in_days)
        deletes_on = datetime.datetime.now(datetime.UTC) + window
        report.event(
            "Normal",
            names.REASON_DELETION_SCHEDULED,
            f"Scheduled deletion of KMS key {key_id} in {spec.pending_window_in_days} days "
            f"(on {deletes_on:%Y-%m-%dT%H:%M:%SZ})",
        )
        outcome.release = True
        return outcome


def _pending(changes: Diff) -> str:
    return "; ".join(c.describe() for c in changes.changes)


class _Report:
    """Accumulates status, conditions and events for one reconcile."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.outcome = Outcome()
        self._conditions: list[Condition] = []

    # --- building blocks

    def event(self, type_: str, reason: str, message: str) -> None:
        self.outcome.events.append(Event(type_, reason, message))

    def warn(self, reason: str, message: str) -> None:
        self.event("Warning", reason, message)

    def mirror(self, meta: KeyMetadata, region: str) -> None:
        self.outcome.status.update(status_from_metadata(meta, region))

    def set_ready(self, status: str, reason: str, message: str) -> None:
        self._conditions.append(Condition(names.READY, status, reason, message))

    def set_synced(self, status: str, reason: str, message: str) -> None:
        self._conditions.append(Condition(names.SYNCED, status, reason, message))
        self.outcome.result = reason

    def finish(self, *, synced_generation: bool = True) -> Outcome:
        status = self.outcome.status
        synced = [c for c in self._conditions if c.type == names.SYNCED]
        derived = (
            conditions.kstatus(synced[-1], retrying=self.outcome.retry_after is not None) if synced else []
        )
        status["conditions"] = conditions.merge(
            self.resource.status.get("conditions"),
            [*self._conditions, *derived],
            generation=self.resource.generation,
        )
        status["lastSyncTime"] = conditions.now_rfc3339()
        if synced_generation:
            status["observedGeneration"] = self.resource.generation
        return self.outcome

    # --- outcomes

    def invalid(self, message: str) -> Outcome:
        self.set_synced(FALSE, names.REASON_INVALID_SPEC, message)
        if not self.resource.status.get("keyId"):
            self.set_ready(FALSE, names.REASON_INVALID_SPEC, "the spec is invalid; fix it to create the key")
        self.warn(names.REASON_INVALID_SPEC, message)
        return self.finish()

    def paused(self, pending: str) -> Outcome:
        self.set_synced(
            FALSE,
            names.REASON_PAUSED,
            f"writes paused by the {names.PAUSED_ANNOTATION} annotation; pending: {pending}",
        )
        if not self.resource.status.get("keyId"):
            self.set_ready(FALSE, names.REASON_PAUSED, "the key has not been created (paused)")
        return self.finish(synced_generation=False)

    def key_gone(self, key_id: str, region: str, *, adopted: bool) -> Outcome:
        where = "spec.keyId names" if adopted else "the key this resource created,"
        message = (
            f"{where} {key_id}, does not exist in KMS ({region}); the operator never recreates a key: "
            "delete this KmsKey, or point spec.keyId at an existing key"
        )
        self.outcome.status["keyState"] = None
        self.set_ready(FALSE, names.REASON_KEY_NOT_FOUND, message)
        self.set_synced(FALSE, names.REASON_KEY_NOT_FOUND, message)
        self.warn(names.REASON_KEY_NOT_FOUND, message)
        return self.finish()

    def pending_deletion(self, meta: KeyMetadata) -> Outcome:
        message = (
            f"KMS key {meta.key_id} is scheduled for deletion on {meta.delete_date or 'an unknown date'} "
            "(outside this operator); cancel it with CancelKeyDeletion to use the key again"
        )
        self.set_ready(FALSE, names.REASON_KEY_PENDING_DELETION, message)
        self.set_synced(FALSE, names.REASON_KEY_PENDING_DELETION, message)
        self.warn(names.REASON_KEY_PENDING_DELETION, message)
        return self.finish()

    def not_owned(self, key_id: str) -> Outcome:
        message = (
            f"KMS key {key_id} does not carry this resource's ownership tag {names.OWNER_TAG_KEY}; "
            "the operator will not modify it. To take it over, set spec.keyId on a new KmsKey"
        )
        self.set_ready(FALSE, names.REASON_NOT_OWNED, message)
        self.set_synced(FALSE, names.REASON_NOT_OWNED, message)
        self.warn(names.REASON_NOT_OWNED, message)
        return self.finish()

    def observed_only(self, changes: Diff) -> Outcome:
        self._ready_from_state()
        differences = [c.describe() for c in changes.changes] + [c.describe() for c in changes.conflicts]
        message = "managementPolicy Observe: status mirrors the key; nothing is written to KMS"
        if differences:
            message += "; differs from spec: " + "; ".join(differences)
        self.set_synced(TRUE, names.REASON_OBSERVE_ONLY, message)
        return self.finish()

    def applied(self, changes: Diff, *, is_drift: bool) -> None:
        fields = "; ".join(c.describe() for c in changes.changes)
        if is_drift:
            self.outcome.drift_fields = [c.field for c in changes.changes]
            self.event("Normal", names.REASON_DRIFT_CORRECTED, f"Corrected drift in KMS: {fields}")
        else:
            self.event("Normal", names.REASON_UPDATED, f"Updated KMS key: {fields}")

    def synced(self, meta: KeyMetadata, spec: KmsKeySpec, changes: Diff) -> Outcome:
        if spec.adopts_existing_key and self.resource.status.get("keyId") != meta.key_id:
            self.event("Normal", names.REASON_ADOPTED, f"Adopted KMS key {meta.key_id}")
        self._ready_from_state(meta.key_state, spec.status)
        problems: Sequence[str] = [c.describe() for c in changes.conflicts]
        if problems:
            message = (
                "ForceNew fields differ from the KMS key and cannot be changed in place: "
                + "; ".join(problems)
                + ". Make the spec match the key, or create a new KmsKey for a new key"
            )
            self.set_synced(FALSE, names.REASON_FORCE_NEW_CONFLICT, message)
            self.warn(names.REASON_FORCE_NEW_CONFLICT, message)
        elif changes.blocked:
            message = "; ".join(f"spec.{b.field}: {b.message}" for b in changes.blocked)
            self.set_synced(FALSE, changes.blocked[0].reason, message)
        else:
            self.set_synced(TRUE, names.REASON_RECONCILE_SUCCESS, "the KMS key matches the spec")
        return self.finish()

    def _ready_from_state(self, state: str | None = None, desired: str | None = None) -> None:
        state = state or self.outcome.status.get("keyState")
        if state == "Enabled":
            self.set_ready(TRUE, names.REASON_AVAILABLE, "the KMS key is Enabled")
        elif state == "Disabled" and desired == "Disabled":
            self.set_ready(TRUE, names.REASON_KEY_DISABLED, "the KMS key is Disabled, as the spec asks")
        elif state == "Disabled":
            self.set_ready(FALSE, names.REASON_KEY_DISABLED, "the KMS key is Disabled")
        elif state == "PendingImport":
            self.set_ready(
                FALSE,
                names.REASON_KEY_MATERIAL_PENDING,
                "the KMS key (origin EXTERNAL) waits for key material: import it with ImportKeyMaterial",
            )
        else:
            self.set_ready(FALSE, names.REASON_RECONCILING, f"the KMS key is {state}")

    def kms_error(self, error: KmsError, attempt: int) -> Outcome:
        message = error.describe()
        if error.kind is ErrorKind.RETRY:
            reason = names.REASON_THROTTLED if error.is_throttling else names.REASON_KMS_UNAVAILABLE
            self.outcome.retry_after = backoff_delay(attempt, error.retry_after_seconds)
        elif error.kind in (ErrorKind.REOBSERVE, ErrorKind.GONE):
            reason = names.REASON_KMS_REJECTED
            self.outcome.retry_after = max(REOBSERVE_DELAY, backoff_delay(attempt) / 4)
        elif error.code.startswith(("Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")) or (
            error.code in ("InvalidCredentials", "IncompleteSignature")
        ):
            reason = names.REASON_ACCESS_DENIED
        else:
            reason = names.REASON_KMS_REJECTED
        self.outcome.error_code = error.code
        self.set_synced(FALSE, reason, message)
        if not self.resource.status.get("keyId") and "keyId" not in self.outcome.status:
            self.set_ready(FALSE, reason, "the key has not been created yet: " + message)
        self.warn(reason, message)
        return self.finish(synced_generation=error.kind is not ErrorKind.RETRY)


__all__ = ["Reconciler", "backoff_delay"]
