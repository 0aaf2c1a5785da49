"""One reconcile of one KmsKey: find or create the key, observe, diff, plan, apply, report.

Guarantees kept here:
- never a duplicate key: before any CreateKey the claim (the resource UID) is looked up;
- never a write to a key that does not carry this resource's claim (claims.py), except the one write that
  claims an unclaimed key being adopted (or takes over a stale claim, when the resource opts in), and that
  write comes first, under the key's lock; a key claimed by another KmsKey gets no write at all;
- status is not trusted: a status.keyId without this resource's claim is re-resolved through the claim;
- never a write while paused or in Observe mode, and never a recreate of a key removed outside;
- every KMS refusal becomes a condition and an event carrying its code and request ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import weakref
from collections.abc import AsyncIterator, Sequence

from kmskey_operator import claims, names, validation
from kmskey_operator.accounts.refs import OPERATOR_RECORD, ConfigRef
from kmskey_operator.accounts.registry import (
    ACCOUNT_CHANGED,
    Registry,
    Target,
    Unresolved,
    is_credentials_error,
)
from kmskey_operator.conditions import FALSE
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import KeyMetadata, KmsCall, ObservedKey
from kmskey_operator.model import KmsKeySpec, ManagementPolicy, SpecError, parse_spec
from kmskey_operator.reconcile import plan
from kmskey_operator.reconcile.apply import apply
from kmskey_operator.reconcile.diff import diff, observed_tags
from kmskey_operator.reconcile.observe import observe
from kmskey_operator.reconcile.report import (
    DELETION_BLOCKED_DELAY,
    REOBSERVE_DELAY,
    Report,
    pending_changes,
)
from kmskey_operator.reconcile.resource import Outcome, Resource
from kmskey_operator.settings import Settings

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Pass:
    """What one reconcile of one resource knows before it reads KMS."""

    resource: Resource
    spec: KmsKeySpec
    region: str
    gateway: KmsGateway  # the credentials and account serving this resource (accounts.registry)
    me: claims.Claimant
    paused: bool
    observe_only: bool
    take_over: str | None
    attempt: int


class Reconciler:
    def __init__(
        self,
        gateway: KmsGateway,
        settings: Settings,
        *,
        liveness: claims.Liveness | None = None,
        accounts: Registry | None = None,
    ) -> None:
        if not settings.cluster_id:
            # Claims name their cluster; without one a claim could not tell this cluster from another.
            raise ValueError("Reconciler needs settings.cluster_id (KMSKEY_CLUSTER_ID, cluster_identity)")
        self.gateway = gateway  # the operator's own credentials
        self.settings = settings
        self.accounts = accounts  # None: every KmsKey is served by `gateway` (no provider configs)
        self.liveness: claims.Liveness = liveness or claims.Unknown()
        # One lock per KMS key: a claim is checked, written and relied on with no other reconcile of this
        # process in between (KMS has no conditional tagging; the active replica is the only writer).
        self._key_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def _target(self, resource: Resource) -> Target | Unresolved:
        """Which credentials, account and rate limiter serve this resource (accounts.registry)."""
        if self.accounts is None:
            return Target(self.gateway, self.settings.region_id, OPERATOR_RECORD, "", None, "the operator")
        target = await self.accounts.target_for(
            resource.namespace, resource.spec, resource.status, created_at=resource.created_at
        )
        recorded = resource.status.get("accountId")
        if isinstance(target, Target) and recorded and target.account_id and target.account_id != recorded:
            return Unresolved(
                ACCOUNT_CHANGED,
                f"the key lives in account {recorded}, but {target.name} now acts in another account; give "
                f"{target.ref.describe() if target.ref else 'it'} credentials of account {recorded} again",
                target.ref,
            )
        return target

    def claimant(self, resource: Resource) -> claims.Claimant:
        return claims.Claimant(self.settings.cluster_id, resource.namespace, resource.name, resource.uid)

    @contextlib.asynccontextmanager
    async def _locked(self, region: str, *key_ids: str) -> AsyncIterator[None]:
        """Hold the locks of `key_ids` (an alias and the key's real ID), always taken in that order."""
        async with contextlib.AsyncExitStack() as stack:
            for key_id in dict.fromkeys(key_ids):
                lock = self._key_locks.get((region, key_id))
                if lock is None:
                    lock = self._key_locks[(region, key_id)] = asyncio.Lock()
                await stack.enter_async_context(lock)
            yield

    # ----------------------------------------------------------------- reconcile

    async def reconcile(self, resource: Resource, *, attempt: int = 0) -> Outcome:
        report = Report(resource)
        try:
            spec = parse_spec(resource.spec)
        except SpecError as error:
            return report.invalid(str(error))
        scope = validation.Scope.of(self.settings, resource.namespace, resource.status)
        verdict = validation.validate_spec(resource.spec, scope)
        if not verdict.allowed:
            # Admission normally refuses this; it got in while the webhook was down or disabled.
            return report.invalid(verdict.summary())
        target = await self._target(resource)
        if isinstance(target, Unresolved):
            self._waits(resource, target.waits_for)
            return report.unresolved(target, attempt)
        report.target = target
        step = _Pass(
            resource=resource,
            spec=spec,
            region=spec.region_id or target.default_region,
            gateway=target.gateway,
            me=self.claimant(resource),
            paused=resource.annotations.get(names.PAUSED_ANNOTATION, "").lower() == "true",
            observe_only=spec.management_policy is ManagementPolicy.OBSERVE,
            take_over=resource.annotations.get(names.TAKE_OVER_ANNOTATION) or None,
            attempt=attempt,
        )
        report.adopting = spec.key_id
        report.region = step.region
        try:
            if spec.adopts_existing_key:
                outcome = await self._adopted(report, step)
            else:
                outcome = await self._created(report, step)
        except KmsError as error:
            # KMS refused the config's credentials: the key waits for the config to be fixed, too.
            self._waits(resource, target.ref if is_credentials_error(error) else None)
            return report.kms_error(error, attempt)
        self._waits(resource, None)
        return outcome

    def _waits(self, resource: Resource, ref: ConfigRef | None) -> None:
        """Record that `resource` waits on config `ref` (None: on none), so fixing it wakes the key."""
        if self.accounts is None:
            return
        if ref is None:
            self.accounts.waiting.done(resource.uid)
        else:
            self.accounts.waiting.wait(resource.uid, ref)

    async def _created(self, report: Report, step: _Pass) -> Outcome:
        """A key this resource creates: the one recorded in status if it carries our claim, else the
        one the claim lookup finds (a lost status write, or a status pointed elsewhere), else a new one."""
        recorded = step.resource.status.get("keyId")
        if recorded:
            recorded = str(recorded)
            async with self._locked(step.region, recorded):
                observed = await self._observe_or_gone(step, recorded)
                claim = claims.read(observed.tags) if observed is not None else None
                if observed is not None and claims.is_mine(claim, step.me):
                    return await self._manage(report, step, observed, claim, created=True)
            key_id = await self._find_claimed(report, step)
            if key_id is None:
                if observed is None:
                    return report.created_key_gone(recorded, step.region)
                return report.not_owned(recorded, claim, step.region)
            what = "does not exist in KMS" if observed is None else "does not carry this resource's claim"
            report.warn(
                names.REASON_STATUS_CORRECTED,
                f"status.keyId named KMS key {recorded}, which {what}; the key that carries this resource's "
                f"claim is {key_id}: status corrected, {recorded} left alone",
            )
        else:
            if step.paused:
                return report.paused("the key has not been created yet")
            key_id = await self._find_claimed(report, step)
            if key_id is None:
                return await self._create(report, step)
            report.event(
                "Normal",
                names.REASON_RECOVERED,
                f"Took KMS key {key_id} instead of creating a key: it already carries this resource's "
                f"claim ({names.OWNER_TAG_KEY}={step.me.uid}), so an earlier CreateKey succeeded but its key "
                "ID was never recorded (the operator stopped in between); no second key is created",
            )
        async with self._locked(step.region, key_id):
            observed = await observe(
                step.gateway, step.region, key_id, with_policy=step.spec.policy is not None
            )
            claim = claims.read(observed.tags)
            if not claims.is_mine(claim, step.me):
                return report.not_owned(key_id, claim, step.region)
            return await self._manage(report, step, observed, claim, created=True)

    async def _adopted(self, report: Report, step: _Pass) -> Outcome:
        """A key named by spec.keyId: managed only once it carries this resource's claim.

        Observe mode only reads. Manage mode claims an unclaimed key with its first write, and refuses
        (KeyClaimed, no write at all) a key claimed by another KmsKey unless `claims.judge` allows a
        take-over of a stale claim.
        """
        wanted = str(step.spec.key_id)
        async with self._locked(step.region, wanted):
            try:
                observed = await observe(
                    step.gateway, step.region, wanted, with_policy=step.spec.policy is not None
                )
            except KmsError as error:
                if error.kind is ErrorKind.GONE:
                    return report.adopted_key_gone(wanted, step.region)
                raise
            key_id = observed.metadata.key_id or wanted
            if key_id != wanted:  # spec.keyId is an alias or ARN: hold the real key's lock too, and re-read
                async with self._locked(step.region, key_id):
                    observed = dataclasses.replace(
                        observed, tags=await step.gateway.list_key_tags(step.region, key_id)
                    )
                    return await self._claim_and_manage(report, step, observed)
            return await self._claim_and_manage(report, step, observed)

    async def _claim_and_manage(self, report: Report, step: _Pass, observed: ObservedKey) -> Outcome:
        key_id = observed.metadata.key_id
        claim = claims.read(observed.tags)
        if step.observe_only:
            return await self._manage(report, step, observed, claim, created=False)
        judgement = claims.judge(claim, step.me, liveness=self.liveness, take_over=step.take_over)
        if not judgement.may_claim:
            return report.key_claimed(judgement.refusal(key_id, step.me))
        if judgement.standing is claims.Standing.MINE:
            return await self._manage(report, step, observed, claim, created=False)
        if observed.metadata.key_state == "PendingDeletion":
            return report.pending_deletion(observed.metadata)
        if step.paused:
            return report.paused(f"claiming KMS key {key_id} (adopted, not claimed yet), then any changes")
        tags = claims.claim_tags(step.me, adopted=True)
        await self._write(report, step, [plan.claim_call(key_id, step.region, tags)])
        if judgement.takes_over and judgement.claim is not None:
            report.event(
                "Normal",
                names.REASON_CLAIM_TAKEN_OVER,
                f"Took over the claim on KMS key {key_id} from {judgement.claim.describe()}, as the "
                f"{names.TAKE_OVER_ANNOTATION} annotation asks; this KmsKey now manages the key",
            )
        else:
            report.event(
                "Normal",
                names.REASON_CLAIMED,
                f"Claimed KMS key {key_id} for this KmsKey (tags {names.OPERATOR_TAG_PREFIX}owner-*): no "
                "other KmsKey can manage it while this one exists",
            )
        observed = dataclasses.replace(observed, tags={**observed.tags, **tags})
        return await self._manage(report, step, observed, claims.read(observed.tags), created=False)

    async def _manage(
        self,
        report: Report,
        step: _Pass,
        observed: ObservedKey,
        claim: claims.Claim | None,
        *,
        created: bool,
    ) -> Outcome:
        """Observe → diff → plan → apply for a key that is this resource's (or only observed)."""
        spec, region = step.spec, step.region
        meta = observed.metadata
        mine = claims.is_mine(claim, step.me)
        writes_allowed = mine and not step.observe_only and not step.paused
        if (
            writes_allowed
            and claim is not None
            and meta.key_state != "PendingDeletion"
            and not claims.is_complete(claim, step.me)
        ):
            # A claim from before claims named cluster and name: complete it (its first write).
            tags = claims.claim_tags(step.me, adopted=claim.adopted)
            await self._write(report, step, [plan.claim_call(meta.key_id, region, tags)])
            observed = dataclasses.replace(observed, tags={**observed.tags, **tags})
        ownership = None
        if mine and claim is not None:
            ownership = "Adopted" if claim.adopted else "Created"
        report.mirror(meta, region)
        report.record(tags=observed_tags(observed.tags), ownership=ownership)
        if meta.key_state == "PendingDeletion":
            return report.pending_deletion(meta)
        changes = diff(spec, observed, created=created)
        if step.observe_only:
            return report.observed_only(changes, claim if claim is not None and not mine else None)
        if step.paused:
            return report.paused(pending_changes(changes) or "no changes pending")
        calls = plan.update_calls(changes, spec, observed, region)
        if calls:
            await self._write(report, step, calls)
            fresh = await step.gateway.describe_key(region, meta.key_id)
            report.mirror(fresh, region)
            retagged = changes.change("tags")
            if retagged is not None:
                report.record(tags=dict(retagged.new or {}), ownership=ownership)
            resource = step.resource
            report.applied(changes, is_drift=resource.status.get("observedGeneration") == resource.generation)
            meta = fresh
        return report.synced(meta, spec, changes)

    async def _write(self, report: Report, step: _Pass, calls: Sequence[KmsCall]) -> None:
        report.outcome.writes += await apply(step.gateway, step.region, calls, resource=step.resource.ref)

    async def _observe_or_gone(self, step: _Pass, key_id: str) -> ObservedKey | None:
        try:
            return await observe(step.gateway, step.region, key_id, with_policy=step.spec.policy is not None)
        except KmsError as error:
            if error.kind is ErrorKind.GONE:
                return None
            raise

    async def _find_claimed(self, report: Report, step: _Pass) -> str | None:
        """The key carrying this resource's claim (ListKeys by owner UID); the first if several do."""
        found = sorted(await step.gateway.find_keys_by_tag(step.region, names.OWNER_TAG_KEY, step.me.uid))
        if len(found) > 1:
            report.warn(
                names.REASON_RECONCILING,
                f"{len(found)} KMS keys carry this resource's claim ({', '.join(found)}); using {found[0]}",
            )
        return found[0] if found else None

    async def _create(self, report: Report, step: _Pass) -> Outcome:
        spec, region = step.spec, step.region
        claim = claims.claim_tags(step.me, adopted=False)
        call = plan.create_call(spec, claim)
        created = await step.gateway.create_key(region, call.params)
        report.outcome.writes += 1
        report.event("Normal", names.REASON_CREATED, f"Created KMS key {created.key_id} in {region}")
        logger.info(
            "KMS write CreateKey",
            extra={"resource": report.resource.ref, "key_id": created.key_id, "action": "CreateKey"},
        )
        observed = plan.observed_after_create(spec, created, claim)
        report.mirror(observed.metadata, region)
        report.record(tags=observed_tags(observed.tags), ownership="Created")
        followups = diff(spec, observed, created=True)
        calls = plan.update_calls(followups, spec, observed, region)
        meta = observed.metadata
        if calls:
            async with self._locked(region, created.key_id):
                await self._write(report, step, calls)
                meta = await step.gateway.describe_key(region, created.key_id)
            report.mirror(meta, region)
        return report.synced(meta, spec, followups)

    # ----------------------------------------------------------------- deletion

    async def finalize(self, resource: Resource, *, attempt: int = 0, runtime: float = 0.0) -> Outcome:
        """Deletion: Retain releases at once; Delete schedules the deletion of this resource's key only.

        The key acted on is the one recorded in status.keyId, and only if it carries this resource's claim;
        failing that, the key the claim lookup finds. spec.keyId is never followed here: a spec edited
        after deletion began cannot point the deletion at another key. An adopted key is deleted only
        where the cluster allows it (KMSKEY_ADOPTED_KEY_DELETION). A key already gone or pending deletion
        counts as done.
        """
        self._waits(resource, None)  # deletions are retried by kopf alone, never woken
        report = Report(resource)
        outcome = report.outcome
        try:
            spec = parse_spec(resource.spec)
        except SpecError:
            spec = KmsKeySpec()
        recorded = str(resource.status.get("keyId") or "") or None
        region = str(
            (resource.status.get("regionId") if recorded else None)
            or spec.region_id
            or self.settings.region_id
        )
        wants_delete = spec.deletion_policy.value == "Delete"
        if spec.management_policy is ManagementPolicy.OBSERVE or not wants_delete:
            named = recorded or spec.key_id
            if named:
                why = "managementPolicy Observe" if wants_delete else "deletionPolicy Retain"
                report.event("Normal", names.REASON_RETAINED, f"KMS key {named} retained ({why})")
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
                f"KMS key {recorded or '(none)'} retained: deletionPolicy Delete needs "
                "spec.pendingWindowInDays (7-366)",
            )
            outcome.release = True
            return outcome
        serving = await self._target(resource)
        if isinstance(serving, Unresolved):
            # As during a KMS outage: retried until the deletion timeout, then released with the key kept.
            return report.unresolved_deletion(serving, recorded, attempt, runtime, self.settings)
        gateway = serving.gateway
        if not (recorded and resource.status.get("regionId")) and not spec.region_id:
            region = serving.default_region
        me = self.claimant(resource)
        key_id = recorded
        try:
            target: tuple[KeyMetadata, claims.Claim] | None = None
            foreign: KeyMetadata | None = None
            if recorded:
                read = await self._read_claim(gateway, region, recorded)
                if read is not None and claims.is_mine(read[1], me) and read[1] is not None:
                    target = (read[0], read[1])
                elif read is not None:
                    foreign = read[0]
            if target is None:
                found = sorted(await gateway.find_keys_by_tag(region, names.OWNER_TAG_KEY, me.uid))
                for candidate in found:
                    read = await self._read_claim(gateway, region, candidate)
                    if read is not None and read[1] is not None and claims.is_mine(read[1], me):
                        target = (read[0], read[1])
                        break
            if target is None:
                if foreign is not None and foreign.key_state != "PendingDeletion":
                    report.event(
                        "Warning",
                        names.REASON_NOT_OWNED,
                        f"KMS key {recorded} retained: it does not carry this resource's claim, and no key "
                        "does; nothing was deleted",
                    )
                outcome.release = True
                return outcome
            meta, claim = target
            key_id = meta.key_id
            if meta.key_state == "PendingDeletion":
                outcome.release = True
                return outcome
            if claim.adopted and not self.settings.adopted_key_deletion:
                report.event(
                    "Warning",
                    names.REASON_RETAINED,
                    f"KMS key {key_id} retained: this KmsKey adopted it, and this cluster keeps adopted keys "
                    "(chart value tenancy.adoption.allowDelete, KMSKEY_ADOPTED_KEY_DELETION); schedule its "
                    "deletion in KMS yourself if it must go",
                )
                outcome.release = True
                return outcome
            protected = meta.deletion_protection == "Enabled"
            if protected and spec.enable_deletion_protection is not False:
                message = (
                    f"KMS key {key_id} has deletion protection on: set spec.enableDeletionProtection: "
                    "false to let the operator turn it off and schedule deletion, or set deletionPolicy: "
                    "Retain to keep the key"
                )
                report.set_synced(FALSE, names.REASON_DELETION_BLOCKED, message)
                report.warn(names.REASON_DELETION_BLOCKED, message)
                outcome.retry_after = DELETION_BLOCKED_DELAY
                return report.finish(synced_generation=False)
            calls = plan.deletion_calls(key_id, spec.pending_window_in_days, turn_off_protection=protected)
            async with self._locked(region, key_id):
                # The claim is checked again under the key's lock, just before the write.
                again = await self._read_claim(gateway, region, key_id)
                if again is None or not claims.is_mine(again[1], me):
                    outcome.retry_after = REOBSERVE_DELAY
                    return outcome
                outcome.writes += await apply(gateway, region, calls, resource=resource.ref)
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

    async def _read_claim(
        self, gateway: KmsGateway, region: str, key_id: str
    ) -> tuple[KeyMetadata, claims.Claim | None] | None:
        """The key and the claim on it; None when the key does not exist."""
        try:
            meta = await gateway.describe_key(region, key_id)
        except KmsError as error:
            if error.kind is ErrorKind.GONE:
                return None
            raise
        return meta, claims.read(await gateway.list_key_tags(region, meta.key_id or key_id))


__all__ = ["Reconciler"]
