"""`kmskey-operator plan`: what the operator would do for a KmsKey manifest, without writing anything.

Each manifest goes through the reconciler's own core: `validation` (what admission would refuse), then
`observe` -> `diff` -> `plan.update_calls` against the key, or `plan.create_call` and its follow-ups when
there is no key yet. KMS is reached only through a `ReadOnlyGateway`, so a plan cannot write.

Exit codes, as with `terraform plan -detailed-exitcode`:

    0  nothing to do: the key matches the spec (or managementPolicy Observe: nothing is ever written)
    2  changes pending: KMS calls would run, or a change waits for the key's state (e.g. key material)
    1  error: the plan could not be made, or applying the manifest cannot converge: an invalid spec, a
       ForceNew conflict (KMS cannot change the field in place), an edit admission would refuse, or a key
       that is missing, pending deletion or owned by another KmsKey

A ForceNew conflict is 1, not 2: applying would not bring the key to the spec (the reconciler stops with
ForceNewConflict), so a pipeline gate must fail rather than go on to apply.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kmskey_operator import claims, model, names, validation
from kmskey_operator.accounts.refs import ConfigRef
from kmskey_operator.accounts.registry import Target
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import KmsCall
from kmskey_operator.reconcile import plan
from kmskey_operator.reconcile.diff import Blocked, Conflict, FieldChange, diff
from kmskey_operator.reconcile.observe import observe
from kmskey_operator.settings import Settings
from kmskey_operator.tools import accounts as tool_accounts
from kmskey_operator.tools import cluster, manifests
from kmskey_operator.tools.manifests import Manifest
from kmskey_operator.tools.readonly import ReadOnlyGateway

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

# Stand-ins in a create preview for values only the API server and KMS hand out.
NEW_KEY_ID = "<new key ID>"
NEW_UID = "<metadata.uid>"
NEW_CLUSTER = "<cluster ID>"


@dataclasses.dataclass
class ManifestPlan:
    """The plan for one manifest: differences, calls in order, and whatever stops the apply."""

    source: str
    namespace: str | None = None
    name: str | None = None
    region_id: str | None = None
    key_id: str | None = None
    creates: bool = False
    applies: bool = True  # False with managementPolicy Observe: differences are reported, never applied
    changes: list[FieldChange] = dataclasses.field(default_factory=list)
    calls: list[KmsCall] = dataclasses.field(default_factory=list)
    conflicts: list[Conflict] = dataclasses.field(default_factory=list)
    blocked: list[Blocked] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)  # what admission would refuse
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)  # validation's, as admission shows them
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors or self.refused or (self.applies and self.conflicts):
            return EXIT_ERROR
        if self.calls or self.blocked:
            return EXIT_CHANGES
        return EXIT_NO_CHANGES

    @property
    def action(self) -> str:
        """`error`, `create`, `update` or `none`."""
        code = self.exit_code
        if code == EXIT_ERROR:
            return "error"
        if self.creates:
            return "create"
        return "update" if code == EXIT_CHANGES else "none"

    @property
    def title(self) -> str:
        if self.namespace and self.name:
            return f"{self.namespace}/{self.name}"
        return self.name or "(unnamed)"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "namespace": self.namespace,
            "name": self.name,
            "regionId": self.region_id,
            "keyId": self.key_id,
            "action": self.action,
            "exitCode": self.exit_code,
            "applies": self.applies,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes],
            "calls": [
                {"action": c.action, "params": dict(c.params), "description": c.describe()}
                for c in self.calls
            ],
            "conflicts": [
                {"field": c.field, "actual": c.actual, "desired": c.desired, "message": c.describe()}
                for c in self.conflicts
            ],
            "blocked": [dataclasses.asdict(b) for b in self.blocked],
            "refused": list(self.refused),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


async def plan_manifest(
    gateway: KmsGateway,
    settings: Settings,
    manifest: Manifest,
    *,
    live: Mapping[str, Any] | None = None,
) -> ManifestPlan:
    """Plan one manifest. `live` is the resource as the cluster has it (its status.keyId and UID are
    used); when `live` is not `manifest.body` itself, the manifest is an edit of it and admission's UPDATE
    rules apply."""
    result = ManifestPlan(manifest.source, manifest.namespace, manifest.name)
    raw_spec = manifest.body.get("spec") or {}
    if not isinstance(raw_spec, Mapping):
        result.errors.append("spec must be a mapping")
        return result
    verdict = validation.validate_spec(raw_spec)
    result.warnings.extend(verdict.warnings)
    if not verdict.allowed:
        result.errors.extend(f"invalid spec: {p}" for p in verdict.errors)
        return result
    if live is not None and live is not manifest.body:
        update = validation.validate_update(live, manifest.body)
        refused = [str(p) for p in update.errors if p not in verdict.errors]
        if refused:
            result.refused.extend([*refused, *update.advice])
            return result  # admission refuses the whole update: nothing would reach the operator

    spec = model.parse_spec(raw_spec)
    region = spec.region_id or settings.region_id
    result.region_id = region
    live_meta = _mapping((live or {}).get("metadata"))
    uid = str(live_meta.get("uid") or _mapping(manifest.body.get("metadata")).get("uid") or "")
    key_id = spec.key_id or (str(_mapping(live.get("status")).get("keyId") or "") if live else "")
    meta_of = live_meta or _mapping(manifest.body.get("metadata"))
    me = claims.Claimant(
        settings.cluster_id,  # "" outside the operator: claims are then judged by UID alone
        str(meta_of.get("namespace") or manifest.namespace or "default"),
        str(meta_of.get("name") or manifest.name or ""),
        uid or NEW_UID,
    )
    annotations = _mapping(
        live_meta.get("annotations") or _mapping(manifest.body.get("metadata")).get("annotations")
    )
    if str(annotations.get(names.PAUSED_ANNOTATION, "")).lower() == "true":
        result.notes.append(f"paused ({names.PAUSED_ANNOTATION}): these calls wait until it is removed")
    if spec.management_policy is model.ManagementPolicy.OBSERVE:
        result.applies = False
        result.notes.append("managementPolicy Observe: differences are reported, nothing is written to KMS")

    try:
        if not key_id and live is not None and uid:
            # The reconciler's crash recovery: a key created before status.keyId was written.
            found = sorted(await gateway.find_keys_by_tag(region, names.OWNER_TAG_KEY, uid))
            if found:
                key_id = found[0]
                result.notes.append(f"found key {key_id} by its claim (status.keyId is not set)")
        if not key_id:
            _preview_create(result, spec, region, me)
            return result
        observed = await observe(gateway, region, key_id, with_policy=spec.policy is not None)
    except KmsError as error:
        if error.kind is ErrorKind.GONE and key_id:
            fix = (
                "correct spec.keyId (it may change until a key has been recorded in status.keyId)"
                if spec.adopts_existing_key
                else "delete the KmsKey, or clear its status.keyId to have a new key created"
            )
            result.errors.append(
                f"KMS key {key_id} does not exist in {region}; the operator never recreates a key: {fix}"
            )
        else:
            result.errors.append(error.describe())
        return result

    meta = observed.metadata
    result.key_id = meta.key_id
    if meta.key_state == "PendingDeletion":
        result.errors.append(
            f"KMS key {meta.key_id} is pending deletion (on {meta.delete_date or 'an unknown date'}); "
            "cancel it with CancelKeyDeletion to manage the key again"
        )
        return result
    claim = claims.read(observed.tags)
    if not spec.adopts_existing_key and not claims.is_mine(claim, me):
        whose = f"it is claimed by {claim.describe()}" if claim else "it carries no claim"
        result.errors.append(
            f"KMS key {meta.key_id} is not this resource's ({whose}); the operator will not modify it "
            f"(a KmsKey with spec.keyId: {meta.key_id} could adopt it if nothing else claims it)"
        )
        return result
    if spec.adopts_existing_key and result.applies:
        judgement = claims.judge(claim, me, liveness=claims.Unknown(), take_over=_take_over(annotations))
        if not judgement.may_claim:
            result.errors.append(judgement.refusal(meta.key_id, me))
            return result
        if judgement.standing is not claims.Standing.MINE:
            # Bookkeeping, not a difference from the spec: a note, so an exact import still plans to 0.
            result.notes.append(
                f"applying it, the operator first claims key {meta.key_id} for this KmsKey (TagResources "
                f"{names.OPERATOR_TAG_PREFIX}owner-*), before any other write"
            )
    changes = diff(spec, observed, created=not spec.adopts_existing_key)
    result.changes = list(changes.changes)
    result.conflicts = list(changes.conflicts)
    if result.applies:
        result.blocked = list(changes.blocked)
        result.calls = plan.update_calls(changes, spec, observed, region)
    return result


def _take_over(annotations: Mapping[str, Any]) -> str | None:
    value = annotations.get(names.TAKE_OVER_ANNOTATION)
    return str(value) if value else None


def _preview_create(result: ManifestPlan, spec: model.KmsKeySpec, region: str, me: claims.Claimant) -> None:
    """CreateKey and the follow-up calls the reconciler makes right after it, as it would make them."""
    claim = claims.claim_tags(dataclasses.replace(me, cluster=me.cluster or NEW_CLUSTER), adopted=False)
    create = plan.create_call(spec, claim)
    observed = plan.observed_after_create(spec, plan.created_metadata(create, NEW_KEY_ID), claim)
    followups = diff(spec, observed, created=True)
    result.creates = True
    result.changes = list(followups.changes)
    result.blocked = list(followups.blocked)
    result.calls = [create, *plan.update_calls(followups, spec, observed, region)]


async def plan_all(
    settings: Settings,
    targets: Sequence[tuple[Manifest, Mapping[str, Any] | None]],
    *,
    config: ConfigRef | None = None,
) -> list[ManifestPlan]:
    """Plan each manifest with the credentials the operator would use for it: `config` when given, the
    config the KmsKey names or its key came through, else the operator's own (tools/accounts.py)."""
    gateway = ReadOnlyGateway(settings)
    accounts = tool_accounts.ToolAccounts(settings, gateway)
    try:
        return [await _plan_one(gateway, settings, accounts, m, live, config) for m, live in targets]
    finally:
        await accounts.aclose()


async def _plan_one(
    gateway: KmsGateway,
    settings: Settings,
    accounts: tool_accounts.ToolAccounts,
    manifest: Manifest,
    live: Mapping[str, Any] | None,
    config: ConfigRef | None,
) -> ManifestPlan:
    try:
        target = await _target(accounts, manifest, live, config)
    except tool_accounts.ConfigProblem as problem:
        refused = ManifestPlan(manifest.source, manifest.namespace, manifest.name)
        refused.errors.append(str(problem))
        return refused
    if target is None:
        return await plan_manifest(gateway, settings, manifest, live=live)
    served = dataclasses.replace(settings, region_id=target.default_region)
    result = await plan_manifest(target.gateway, served, manifest, live=live)
    result.notes.append(f"KMS as seen with the credentials of {target.name}")
    return result


async def _target(
    accounts: tool_accounts.ToolAccounts,
    manifest: Manifest,
    live: Mapping[str, Any] | None,
    config: ConfigRef | None,
) -> Target | None:
    if config is not None:
        return await accounts.named(config)
    spec = _mapping(manifest.body.get("spec"))
    status = _mapping((live or {}).get("status"))
    if not tool_accounts.involves_configs(spec, status):
        return None
    namespace = manifest.namespace or str(_mapping(_mapping(live).get("metadata")).get("namespace") or "")
    if not namespace:
        raise tool_accounts.ConfigProblem(
            f"{manifest.source} names a provider config but no metadata.namespace: set it, or give "
            "--provider-config NAMESPACE/NAME"
        )
    return await accounts.for_kmskey(namespace, spec, status)


def exit_code(plans: Sequence[ManifestPlan]) -> int:
    codes = {p.exit_code for p in plans}
    if EXIT_ERROR in codes:
        return EXIT_ERROR
    return EXIT_CHANGES if EXIT_CHANGES in codes else EXIT_NO_CHANGES


# --- output -------------------------------------------------------------------------------------------------


def render_text(plans: Sequence[ManifestPlan], notes: Sequence[str]) -> str:
    lines = [f"note: {n}" for n in notes]
    for p in plans:
        if lines:
            lines.append("")
        lines.append(f"KmsKey {p.title} ({p.source})")
        lines.append(f"  {_headline(p)}")
        if p.changes:
            heading = "differences (never applied):" if not p.applies else None
            if p.creates:
                heading = "after CreateKey:"
            if heading:
                lines.append(f"  {heading}")
            lines.extend(f"  ~ {c.describe()}" for c in p.changes)
        if p.calls:
            lines.append("  KMS calls, in order:")
            lines.extend(f"    {i}. {c.describe()}" for i, c in enumerate(p.calls, start=1))
        if p.conflicts:
            effect = "reported only" if not p.applies else "the reconciler reports ForceNewConflict"
            lines.append(f"  ForceNew conflicts (KMS cannot change these in place; {effect}):")
            lines.extend(f"    ! {c.describe()}" for c in p.conflicts)
        if p.refused:
            lines.append("  admission would refuse this update:")
            lines.extend(f"    ! {r}" for r in p.refused)
        if p.blocked:
            lines.append("  waiting on the key's state:")
            lines.extend(f"    - spec.{b.field} ({b.reason}): {b.message}" for b in p.blocked)
        lines.extend(f"  error: {e}" for e in p.errors)
        lines.extend(f"  warning: {w}" for w in p.warnings)
        lines.extend(f"  note: {n}" for n in p.notes)
    counts = _summary(plans)
    lines.append("")
    lines.append(
        f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['none']} unchanged, "
        f"{counts['error']} with errors."
    )
    return "\n".join(lines) + "\n"


def render_json(plans: Sequence[ManifestPlan], notes: Sequence[str]) -> str:
    document = {
        "manifests": [p.to_json() for p in plans],
        "notes": list(notes),
        "summary": _summary(plans),
        "exitCode": exit_code(plans),
    }
    return json.dumps(document, indent=2, default=str) + "\n"


def _headline(p: ManifestPlan) -> str:
    if p.creates:
        return f"would create a new key in {p.region_id}"
    if p.key_id is None:
        return "cannot be planned"
    where = f"key {p.key_id} in {p.region_id}"
    if p.exit_code == EXIT_NO_CHANGES and not p.changes:
        return f"{where}: no changes"
    parts = []
    if p.changes:
        parts.append(_count(len(p.changes), "field differs", "fields differ"))
    if p.calls:
        parts.append(_count(len(p.calls), "KMS call", "KMS calls"))
    if p.blocked:
        parts.append(_count(len(p.blocked), "change waits", "changes wait"))
    if p.conflicts:
        parts.append(_count(len(p.conflicts), "ForceNew conflict", "ForceNew conflicts"))
    return f"{where}: {', '.join(parts) or 'see below'}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _summary(plans: Sequence[ManifestPlan]) -> dict[str, int]:
    counts = {"create": 0, "update": 0, "none": 0, "error": 0}
    for p in plans:
        counts[p.action] += 1
    return counts


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- command line -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Show what the operator would do in KMS for KmsKey manifests; never writes."
    parser.epilog = "exit codes: 0 no changes, 2 changes pending, 1 error or a spec that cannot converge"
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="FILE",
        help="a manifest file, a directory of them, or - for stdin (repeatable; multi-document YAML)",
    )
    parser.add_argument(
        "--from-cluster",
        metavar="NAMESPACE/NAME",
        help="plan the live KmsKey (its status.keyId); with -f, plan the file as an edit of it",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="default: text")
    tool_accounts.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """`kmskey-operator plan`; returns the exit code."""
    settings = Settings.from_env()
    if not args.filename and not args.from_cluster:
        print(
            "kmskey-operator plan: give -f FILE (or -f - for stdin), or --from-cluster NS/NAME",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        found, notes = manifests.load(args.filename, sys.stdin)
        targets = _targets(found, args.from_cluster)
        config = tool_accounts.ref_from(args)
    except (manifests.ManifestError, cluster.ClusterError, tool_accounts.ConfigProblem) as error:
        print(f"kmskey-operator plan: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not targets:
        notes.append("no KmsKey manifests found")
    plans = asyncio.run(plan_all(settings, targets, config=config))
    render = render_json if args.output == "json" else render_text
    sys.stdout.write(render(plans, notes))
    return exit_code(plans)


def _targets(
    found: list[Manifest], from_cluster: str | None
) -> list[tuple[Manifest, Mapping[str, Any] | None]]:
    if not from_cluster:
        return [(m, None) for m in found]
    live = cluster.read_kmskey(from_cluster)
    if not found:
        return [(Manifest(f"cluster {from_cluster}", live), live)]
    if len(found) != 1:
        raise cluster.ClusterError(
            f"--from-cluster with -f needs exactly one KmsKey manifest (the edit of {from_cluster}); "
            f"found {len(found)}"
        )
    namespace, name = cluster.parse_ref(from_cluster)
    edit = found[0]
    if (edit.name and edit.name != name) or (edit.namespace and edit.namespace != namespace):
        raise cluster.ClusterError(
            f"{edit.source} is KmsKey {edit.namespace or '(any namespace)'}/{edit.name}, not {from_cluster}"
        )
    return [(edit, live)]
