"""What one reconcile tells the user: status fields, conditions, events, and when to come back.

The reconciler decides; a Report turns each decision into the Outcome the kopf layer writes (status patch,
events, retry delay), with a message that names the field or the action that fixes it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from kmskey_operator import claims, conditions, names, timestamps
from kmskey_operator.accounts.registry import Target, Unresolved
from kmskey_operator.conditions import FALSE, TRUE, Condition
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.types import KeyMetadata
from kmskey_operator.model import KmsKeySpec
from kmskey_operator.reconcile.diff import Diff
from kmskey_operator.reconcile.resource import Event, Outcome, Resource
from kmskey_operator.settings import Settings

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


def pending_changes(changes: Diff) -> str:
    return "; ".join(c.describe() for c in changes.changes)


class Report:
    """Accumulates status, conditions and events for one reconcile."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.outcome = Outcome()
        self._conditions: list[Condition] = []
        self.adopting: str | None = None  # the spec.keyId being adopted, if any
        self.region = ""
        self.target: Target | None = None  # what served this reconcile (accounts.registry)

    # --- building blocks

    def event(self, type_: str, reason: str, message: str) -> None:
        self.outcome.events.append(Event(type_, reason, message))

    def warn(self, reason: str, message: str) -> None:
        self.event("Warning", reason, message)

    def mirror(self, meta: KeyMetadata, region: str) -> None:
        self.outcome.status.update(status_from_metadata(meta, region))

    def record(self, *, tags: Mapping[str, str], ownership: str | None) -> None:
        """status.tags (the key's user tags, which admission compares spec.tags with) and status.ownership
        (Created or Adopted: how this resource came to claim the key; null when it does not)."""
        self.outcome.status["tags"] = dict(tags)
        self.outcome.status["ownership"] = ownership

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
        status["lastSyncTime"] = timestamps.now_rfc3339()
        if synced_generation:
            status["observedGeneration"] = self.resource.generation
        if self.target is not None and (status.get("keyId") or self.resource.status.get("keyId")):
            # Which config (and account) the key came through: it stays there (accounts.selection).
            status.update(self.target.status_fields())
            arn = str(status.get("arn") or self.resource.status.get("arn") or "")
            if "accountId" not in status and arn.count(":") >= 4:
                status["accountId"] = arn.split(":")[3]
        return self.outcome

    # --- outcomes

    def unresolved(self, problem: Unresolved, attempt: int) -> Outcome:
        """No credentials serve the resource (a provider config is missing, refused or broken)."""
        self.set_synced(FALSE, problem.reason, problem.message)
        if not self.resource.status.get("keyId"):
            self.set_ready(FALSE, problem.reason, "the key has not been created yet: " + problem.message)
        self.warn(problem.reason, problem.message)
        self.outcome.error_code = problem.reason
        self.outcome.retry_after = backoff_delay(attempt)
        return self.finish(synced_generation=False)

    def unresolved_deletion(
        self, problem: Unresolved, key_id: Any, attempt: int, runtime: float, settings: Settings
    ) -> Outcome:
        if runtime >= settings.deletion_timeout_seconds:
            self.event(
                "Warning",
                names.REASON_RETAINED,
                f"gave up scheduling deletion of KMS key {key_id} after {int(runtime)}s ({problem.message}); "
                "the key is kept: schedule its deletion in KMS yourself",
            )
            self.outcome.release = True
            return self.outcome
        self.set_synced(FALSE, problem.reason, f"deletion waits for credentials: {problem.message}")
        self.warn(problem.reason, problem.message)
        self.outcome.error_code = problem.reason
        self.outcome.retry_after = max(DELETION_BLOCKED_DELAY / 2, backoff_delay(attempt))
        return self.finish(synced_generation=False)

    def invalid(self, message: str) -> Outcome:
        self.set_synced(FALSE, names.REASON_INVALID_SPEC, message)
        if not self.resource.status.get("keyId"):
            adopts = self.resource.spec.get("keyId")
            what = f"adopt KMS key {adopts}" if adopts else "create the key"
            self.set_ready(FALSE, names.REASON_INVALID_SPEC, f"the spec is invalid; fix it to {what}")
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

    def _not_found(self, message: str) -> Outcome:
        self.outcome.status["keyState"] = None
        self.set_ready(FALSE, names.REASON_KEY_NOT_FOUND, message)
        self.set_synced(FALSE, names.REASON_KEY_NOT_FOUND, message)
        self.warn(names.REASON_KEY_NOT_FOUND, message)
        return self.finish()

    def adopted_key_gone(self, key_id: str, region: str) -> Outcome:
        if self.resource.status.get("keyId"):
            return self._not_found(
                f"the adopted KMS key {key_id} no longer exists in KMS ({region}): it was deleted outside "
                "the operator, which never recreates a key. Delete this KmsKey (nothing is left behind in "
                "KMS), or create a new KmsKey for another key (spec.keyId cannot change once a key was "
                "recorded)"
            )
        return self._not_found(
            f"spec.keyId names {key_id}, which does not exist in KMS ({region}); the operator never creates "
            "a key for a KmsKey that adopts one. Correct spec.keyId in place (it may change until a key has "
            "been recorded in status.keyId), or delete this KmsKey"
        )

    def created_key_gone(self, key_id: str, region: str) -> Outcome:
        return self._not_found(
            f"KMS key {key_id}, recorded in status.keyId, does not exist in KMS ({region}), and no key there "
            "carries this resource's claim; the operator never recreates a key. Nothing is left behind: "
            "delete this KmsKey, or clear status.keyId (kubectl patch --subresource=status) to have a new "
            "key created"
        )

    def pending_deletion(self, meta: KeyMetadata) -> Outcome:
        message = (
            f"KMS key {meta.key_id} is scheduled for deletion on {meta.delete_date or 'an unknown date'} "
            "(outside this operator); cancel it with CancelKeyDeletion to use the key again"
        )
        self.set_ready(FALSE, names.REASON_KEY_PENDING_DELETION, message)
        self.set_synced(FALSE, names.REASON_KEY_PENDING_DELETION, message)
        self.warn(names.REASON_KEY_PENDING_DELETION, message)
        return self.finish()

    def not_owned(self, key_id: str, claim: claims.Claim | None, region: str) -> Outcome:
        whose = f"it is claimed by {claim.describe()}" if claim is not None else "it carries no claim"
        message = (
            f"status.keyId names KMS key {key_id}, which is not this resource's ({whose}), and no key in "
            f"{region} carries this resource's claim; the operator will not touch {key_id}. If this KmsKey "
            "never had a key of its own, clear status.keyId (kubectl patch --subresource=status) and the "
            f"operator creates one; to adopt {key_id} instead, set spec.keyId: {key_id} (where this "
            "namespace may adopt keys, and only while no other KmsKey claims it)"
        )
        self.set_ready(FALSE, names.REASON_NOT_OWNED, message)
        self.set_synced(FALSE, names.REASON_NOT_OWNED, message)
        self.warn(names.REASON_NOT_OWNED, message)
        return self.finish()

    def key_claimed(self, message: str) -> Outcome:
        """Another KmsKey's claim: nothing written, and nothing recorded (spec.keyId stays correctable)."""
        self.set_ready(FALSE, names.REASON_KEY_CLAIMED, message)
        self.set_synced(FALSE, names.REASON_KEY_CLAIMED, message)
        self.warn(names.REASON_KEY_CLAIMED, message)
        return self.finish()

    def observed_only(self, changes: Diff, foreign: claims.Claim | None = None) -> Outcome:
        self._ready_from_state()
        differences = [c.describe() for c in changes.changes] + [c.describe() for c in changes.conflicts]
        message = "managementPolicy Observe: status mirrors the key; nothing is written to KMS"
        if foreign is not None:
            message += f"; the key is claimed by {foreign.describe()}"
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
            if self.adopting:
                where = f" in {self.region}" if self.region else ""
                self.set_ready(
                    FALSE, reason, f"KMS key {self.adopting} (spec.keyId) could not be read{where}: {message}"
                )
            else:
                self.set_ready(FALSE, reason, "the key has not been created yet: " + message)
        self.warn(reason, message)
        return self.finish(synced_generation=error.kind is not ErrorKind.RETRY)
