"""The rules a KmsKey spec must follow beyond its schema, for CREATE and for UPDATE.

Pure functions over resource bodies, shared by the admission webhook (which refuses a bad spec at
`kubectl apply` time) and the reconciler (which turns the same verdict into a condition, for a resource that
got in while the webhook was down). Every message names the field (`spec.xxx`) and says what to do.

Decisions that the KMS documentation leaves open:
- Tag keys are 1-128 and tag values 0-128 characters of `[A-Za-z0-9/\\_-.+=:@]` (the SDK model's charset,
  also enforced by the emulator); keys starting with `aliyun` or `acs:` in any case, and every key under the
  operator's `kms.alicloud.dev/` (its claim), are refused. A key holds 20 tags and the claim takes 4 (5 on an
  adopted key), so at most 16 (15) are the user's.
- Identity: once the operator has recorded a key (`status.keyId`), `spec.keyId` and `spec.regionId` may
  only name that key and its region: set to it (writing down `spec.keyId: <status.keyId>` is needed to
  switch to `managementPolicy: Observe`), never changed or removed, also while the KmsKey is being deleted.
  Before a key is recorded (an adopted key never found) both may be corrected in place. The CRD repeats
  this rule in CEL, so it holds while the webhook is down; status is untrusted, so the reconciler and the
  finalizer also check the key's claim.
- ForceNew fields may be declared, once the key exists, with exactly the value the key has (status mirrors
  it); tags included (status.tags mirrors the key's user tags).
- An update that leaves `spec` as it was is always allowed, even if that spec breaks a rule: the operator's
  own finalizer and annotation patches must never be refused, or a deletion could be blocked. While the
  KmsKey is being deleted only the identity rule applies, so a deletion can always be steered (Retain).
- With a `Scope` (admission and the reconciler pass one), the cluster's tenancy settings apply too: which
  namespaces may adopt keys, whether an adopted key may be deleted, and which regions the endpoint serves.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from kmskey_operator import claims, model, names, normalize, policy
from kmskey_operator.settings import REGION_ID, Settings

MAX_TAGS = claims.MAX_KEY_TAGS
MAX_TAG_CHARS = 128
MAX_POLICY_BYTES = 32768
MAX_DESCRIPTION_CHARS = 8192
PENDING_WINDOW_DAYS = (7, 366)
_TAG_CHARS = re.compile(r"^[A-Za-z0-9/\\_\-.+=:@]*$")
_TAG_CHARSET_TEXT = r"letters, digits and / \ _ - . + = : @"
_DIGITS_AND_UNIT = re.compile(r"^[0-9]+[dhms]$")

# Which usages each key spec supports (KMS CreateKey capability table).
_USAGES_BY_SPEC: dict[str, tuple[str, ...]] = {
    **{spec: ("ENCRYPT/DECRYPT",) for spec in model.SYMMETRIC_KEY_SPECS},
    "RSA_2048": ("ENCRYPT/DECRYPT", "SIGN/VERIFY"),
    "RSA_3072": ("ENCRYPT/DECRYPT", "SIGN/VERIFY"),
    "EC_P256": ("SIGN/VERIFY",),
    "EC_P256K": ("SIGN/VERIFY",),
    "EC_SM2": ("ENCRYPT/DECRYPT", "SIGN/VERIFY"),
}
_INSTANCE_ONLY_SPECS = ("Aliyun_AES_128", "Aliyun_AES_192")
# Fields that Observe mode never writes to KMS; declaring them there is legal but has no effect.
_OBSERVE_IGNORED = (
    "automaticRotation",
    "description",
    "enableAutomaticRotation",
    "enableDeletionProtection",
    "policy",
    "policyName",
    "rotationInterval",
    "status",
)
IMMUTABLE_FIELDS = (*model.FORCE_NEW_FIELDS, *model.IDENTITY_FIELDS)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One broken rule: `field` is the camelCase path (`spec.keySpec`), `message` says what to do."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of validation: errors refuse the request, warnings are shown to the user."""

    errors: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    # Advice that applies to several errors at once, said once at the end of the summary.
    advice: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One human message listing every error (empty when allowed)."""
        if not self.errors:
            return ""
        return " ".join(["; ".join(str(p) for p in self.errors) + ".", *self.advice]).strip()

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(self.errors + other.errors, self.warnings + other.warnings, self.advice + other.advice)


ALLOWED = Verdict()


@dataclasses.dataclass(frozen=True)
class Scope:
    """What the rules know beyond the spec: the resource's namespace and the cluster's tenancy settings."""

    namespace: str
    may_adopt: bool = True
    may_delete_adopted: bool = True
    served_regions: tuple[str, ...] | None = None
    endpoint: str | None = None
    created_its_key: bool = False
    """status.ownership is Created: a spec.keyId names the key this resource created, not an adopted one."""

    @classmethod
    def of(cls, settings: Settings, namespace: str, status: Mapping[str, Any] | None = None) -> Scope:
        recorded = status or {}
        return cls(
            namespace=namespace,
            may_adopt=settings.may_adopt(namespace),
            may_delete_adopted=settings.adopted_key_deletion,
            served_regions=settings.served_regions(),
            endpoint=settings.kms_endpoint,
            created_its_key=bool(recorded.get("keyId")) and recorded.get("ownership") == "Created",
        )


def validate_spec(spec: Mapping[str, Any] | None, scope: Scope | None = None) -> Verdict:
    """The CREATE/UPDATE rules for one spec: shapes (via model.parse_spec) first, then field combinations.

    With a `scope`, the tenancy rules too (adoption, deletion of adopted keys, the regions served).
    """
    raw = dict(spec or {})
    shape_errors = _shape_errors(raw)
    if shape_errors:
        # Combination rules would judge a half-parsed spec and say misleading things; fix shapes first.
        return Verdict(errors=tuple(shape_errors))
    parsed = model.parse_spec(raw)
    errors: list[Problem] = []
    warnings: list[str] = []
    for rule in _RULES:
        rule(parsed, errors, warnings)
    if scope is not None:
        _tenancy(parsed, scope, errors)
    return Verdict(errors=tuple(errors), warnings=tuple(warnings))


def key_recorded(body: Mapping[str, Any]) -> str | None:
    """The key the operator recorded for this resource (status.keyId), from which its identity is fixed."""
    key_id = _get(body, "status", "keyId")
    return str(key_id) if key_id else None


def immutable_changes(
    old_spec: Mapping[str, Any] | None, new_spec: Mapping[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for each ForceNew or identity field that differs; adding or removing counts."""
    old, new = old_spec or {}, new_spec or {}
    return [(f, old.get(f), new.get(f)) for f in IMMUTABLE_FIELDS if old.get(f) != new.get(f)]


def validate_update(
    old_body: Mapping[str, Any], new_body: Mapping[str, Any], scope: Scope | None = None
) -> Verdict:
    """The UPDATE rules: the spec rules, plus immutability of ForceNew and identity fields once a key exists.

    An update that leaves spec unchanged (metadata, finalizers, status) always passes, and so does any edit
    of an object being deleted except one of its identity: admission must never stand between a KmsKey and
    its deletion, nor let a deletion be pointed at another key.
    """
    old_spec = _get(old_body, "spec") or {}
    new_spec = _get(new_body, "spec") or {}
    if old_spec == new_spec:
        return ALLOWED
    identity = Verdict(errors=tuple(identity_problems(old_body, new_spec)))
    if _get(new_body, "metadata", "deletionTimestamp") or _get(old_body, "metadata", "deletionTimestamp"):
        return identity
    verdict = identity + validate_spec(new_spec, scope)
    key_id = key_recorded(old_body)
    if not key_id:
        return verdict
    changes = [
        c
        for c in immutable_changes(old_spec, new_spec)
        if c[0] in model.FORCE_NEW_FIELDS and not _same_as_key(old_body, *c)
    ]
    if not changes:
        return verdict
    errors = tuple(_force_new_problem(old_body, *change) for change in changes)
    advice = (
        f"Put the old values back, and create a new KmsKey for a key with the new values (deleting this "
        f"KmsKey with deletionPolicy: Retain keeps key {key_id} in KMS).",
    )
    return Verdict(errors=errors, advice=advice) + verdict


def identity_problems(old_body: Mapping[str, Any], new_spec: Mapping[str, Any]) -> list[Problem]:
    """spec.keyId and spec.regionId against the key recorded in the old body's status (see the module doc)."""
    key_id = key_recorded(old_body)
    if not key_id:
        return []  # nothing recorded yet: an adopted key never found may still be corrected
    old_spec = _get(old_body, "spec") or {}
    problems = []
    recorded = {"keyId": key_id, "regionId": _get(old_body, "status", "regionId")}
    what = {"keyId": "key", "regionId": "key's region"}
    for field in model.IDENTITY_FIELDS:
        old, new = old_spec.get(field), new_spec.get(field)
        if old == new:
            continue
        if old is not None:
            message = (
                f"cannot change once the operator has recorded the KMS key (status.keyId: {key_id}): "
                f"{_show(old)} → {_show(new)}"
            )
        elif recorded[field] and new == recorded[field]:
            continue  # writing down what status says (e.g. to switch to managementPolicy: Observe)
        else:
            message = (
                f"may only name this KmsKey's {what[field]} ({_show(recorded[field])}, recorded in "
                f"status), not {_show(new)}"
            )
        problems.append(
            Problem(
                f"spec.{field}",
                f"{message}. A KmsKey manages one key for life: to manage another, create a new KmsKey "
                f"(deleting this one with deletionPolicy: Retain keeps {key_id} in KMS)",
            )
        )
    return problems


def _force_new_problem(old_body: Mapping[str, Any], field: str, old: Any, new: Any) -> Problem:
    change = f"{_show(old)} → {_show(new)}"
    if field == "tags":
        own = _get(old_body, "status", "tags")
        also = f"; the key's own tags are {_show(own or {})}, and declaring exactly those is allowed"
        return Problem(
            "spec.tags",
            f"cannot change once the KMS key exists ({change}): the seed (Terraform's alicloud_kms_key) "
            "makes tags ForceNew, a new key for new tags" + (also if own is not None else ""),
        )
    return Problem(
        f"spec.{field}",
        f"cannot change once the KMS key exists ({change}): KMS cannot change it on a key in place",
    )


# --- shapes -------------------------------------------------------------------------------------------------


def _shape_errors(raw: dict[str, Any]) -> list[Problem]:
    """Every field that model.parse_spec refuses, not only the first one."""
    problems: list[Problem] = []
    remaining = dict(raw)
    while True:
        try:
            model.parse_spec(remaining)
        except model.SpecError as error:
            problems.append(Problem(f"spec.{error.field}", error.message))
            remaining.pop(error.field, None)
            continue
        return problems


# --- combination rules: each appends to errors/warnings ----------------------------------------------------


def _not_a_key(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    for field, value, what in (
        ("secretName", spec.secret_name, "a KMS secret"),
        ("certificateId", spec.certificate_id, "a KMS certificate"),
    ):
        if value is not None:
            errors.append(
                Problem(
                    f"spec.{field}",
                    f"names {what}, not a key (the Terraform resource lists it only because its tagging "
                    f"API shares the parameter); remove it, and set spec.keyId to manage an existing key",
                )
            )


def _status(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    if spec.status == "PendingDeletion":
        errors.append(
            Problem(
                "spec.status",
                "PendingDeletion cannot be declared; use Enabled or Disabled, and to delete the key delete "
                "the KmsKey with deletionPolicy: Delete instead",
            )
        )
    if spec.origin == "EXTERNAL" and spec.status == "Enabled":
        warnings.append(
            "spec.status: an EXTERNAL key stays PendingImport until you import its key material, so Enabled "
            "cannot be reached before then; Ready stays False with reason KeyMaterialPending"
        )


def _spec_and_usage(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    key_spec = spec.key_spec or model.DEFAULT_KEY_SPEC
    if spec.key_usage is not None and spec.key_usage not in _USAGES_BY_SPEC[key_spec]:
        which = key_spec if spec.key_spec else f"{key_spec} (the default when spec.keySpec is unset)"
        fitting = [s for s, usages in _USAGES_BY_SPEC.items() if spec.key_usage in usages]
        errors.append(
            Problem(
                "spec.keyUsage",
                f"{spec.key_usage} is not supported by key spec {which}; use "
                f"{' or '.join(_USAGES_BY_SPEC[key_spec])}, or a key spec that supports {spec.key_usage}: "
                f"{', '.join(fitting)}",
            )
        )
    if spec.key_spec in _INSTANCE_ONLY_SPECS and not spec.dkms_instance_id:
        if spec.adopts_existing_key:  # nothing is created; the key's own instance decides
            warnings.append(
                f"spec.keySpec: {spec.key_spec} is only available in a KMS instance; without "
                "spec.dkmsInstanceId KMS will likely refuse to create the key"
            )
        else:  # KMS refuses CreateKey with InvalidParameter: never send it
            errors.append(
                Problem(
                    "spec.keySpec",
                    f"{spec.key_spec} is only available in a KMS instance: set spec.dkmsInstanceId to the "
                    "instance (kst-...), or use Aliyun_AES_256",
                )
            )
    if spec.protection_level is not None and spec.dkms_instance_id:
        warnings.append(
            "spec.protectionLevel: KMS ignores it for keys in a KMS instance (spec.dkmsInstanceId is set); "
            "the instance decides the protection level"
        )


def _rotation(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    enable, automatic = spec.enable_automatic_rotation, spec.automatic_rotation
    if enable is not None and automatic is not None and enable != (automatic in ("Enabled", "Suspended")):
        errors.append(
            Problem(
                "spec.automaticRotation",
                f"{automatic} disagrees with spec.enableAutomaticRotation: {str(enable).lower()}; "
                "make them agree, or set only one of them",
            )
        )
        return
    on_field = "spec.enableAutomaticRotation" if enable is not None else "spec.automaticRotation"
    key_spec = spec.key_spec or model.DEFAULT_KEY_SPEC
    origin = spec.origin or model.DEFAULT_ORIGIN
    if spec.wants_rotation:
        if key_spec not in model.SYMMETRIC_KEY_SPECS or origin != "Aliyun_KMS":
            errors.append(
                Problem(
                    on_field,
                    f"automatic rotation is only available for symmetric keys "
                    f"({', '.join(model.SYMMETRIC_KEY_SPECS)}) of origin Aliyun_KMS, not for "
                    f"{key_spec} of origin {origin}; turn rotation off or use a symmetric key spec",
                )
            )
        if spec.rotation_interval is None:
            errors.append(
                Problem(
                    "spec.rotationInterval",
                    "is required when automatic rotation is on; set it between 7d and 730d, for example 365d",
                )
            )
    if spec.rotation_interval is None:
        return
    out_of_range = (
        f"{spec.rotation_interval} is out of range: it must be between 7 and 730 days (7d to 730d, "
        f"{normalize.MIN_ROTATION_SECONDS}s to {normalize.MAX_ROTATION_SECONDS}s)"
    )
    try:
        seconds = normalize.interval_seconds(spec.rotation_interval)
    except ValueError as error:
        # The CRD's pattern admits any number of digits; interval_seconds reads at most 12 of them.
        too_long = _DIGITS_AND_UNIT.match(spec.rotation_interval.strip())
        errors.append(Problem("spec.rotationInterval", out_of_range if too_long else str(error)))
        return
    if not normalize.MIN_ROTATION_SECONDS <= seconds <= normalize.MAX_ROTATION_SECONDS:
        errors.append(Problem("spec.rotationInterval", out_of_range))
    elif not spec.wants_rotation:
        warnings.append(
            "spec.rotationInterval is ignored while automatic rotation is off; set "
            "spec.enableAutomaticRotation: true to rotate the key"
        )


def _policy(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    if spec.policy_name is not None and spec.policy is None:
        errors.append(Problem("spec.policyName", "is only meaningful together with spec.policy; set both"))
    if spec.policy is None:
        return
    size = len(spec.policy.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        errors.append(
            Problem("spec.policy", f"is {size} bytes; KMS accepts at most {MAX_POLICY_BYTES} bytes (UTF-8)")
        )
        return
    try:
        document = policy.parse(spec.policy)
    except policy.NotJson as error:
        errors.append(Problem("spec.policy", f"is not valid JSON ({error}); write a JSON object"))
        return
    faults = policy.problems(document)
    if faults:
        errors.append(Problem("spec.policy", "is not a KMS key policy: " + "; ".join(faults)))


def _tags(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    if spec.tags is None:
        return
    adopted = spec.adopts_existing_key
    budget = claims.user_tag_budget(adopted=adopted)
    if len(spec.tags) > budget:
        taken = claims.operator_tag_count(adopted=adopted)
        which = "an adopted key's claim" if adopted else "the claim"
        errors.append(
            Problem(
                "spec.tags",
                f"has {len(spec.tags)} tags, but a KMS key holds at most {MAX_TAGS} and {which} takes "
                f"{taken} of them (the operator's {names.OPERATOR_TAG_PREFIX}* tags): {MAX_TAGS} - {taken} = "
                f"{budget} at most are yours; remove {len(spec.tags) - budget}",
            )
        )
    for key, value in sorted(spec.tags.items()):
        if normalize.is_operator_tag(key):
            errors.append(
                Problem(
                    f"spec.tags[{key}]",
                    f"tag keys under {names.OPERATOR_TAG_PREFIX} are reserved for the operator's claim on "
                    "the key (which KmsKey manages it); rename it",
                )
            )
        elif key.lower().startswith(names.RESERVED_TAG_PREFIXES):
            errors.append(
                Problem(
                    f"spec.tags[{key}]",
                    "tag keys starting with aliyun or acs: are reserved by KMS; rename it",
                )
            )
        elif not key or len(key) > MAX_TAG_CHARS or not _TAG_CHARS.match(key):
            errors.append(
                Problem(
                    f"spec.tags[{key}]",
                    f"tag keys are 1 to {MAX_TAG_CHARS} characters of {_TAG_CHARSET_TEXT}; rename it",
                )
            )
        if len(value) > MAX_TAG_CHARS or not _TAG_CHARS.match(value):
            errors.append(
                Problem(
                    f"spec.tags[{key}]",
                    f"tag values are 0 to {MAX_TAG_CHARS} characters of {_TAG_CHARSET_TEXT}; change it",
                )
            )


def _deletion_and_management(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    window = spec.pending_window_in_days
    if window is not None and not PENDING_WINDOW_DAYS[0] <= window <= PENDING_WINDOW_DAYS[1]:
        errors.append(Problem("spec.pendingWindowInDays", f"{window} is out of range; use 7 to 366 (days)"))
    if spec.deletion_policy is model.DeletionPolicy.DELETE and window is None:
        errors.append(
            Problem(
                "spec.pendingWindowInDays",
                "is required with deletionPolicy: Delete (the days KMS waits before deleting the key, "
                "7 to 366); set it, or use deletionPolicy: Retain",
            )
        )
    elif spec.deletion_policy is model.DeletionPolicy.RETAIN and window is not None:
        warnings.append(
            "spec.pendingWindowInDays is only used with deletionPolicy: Delete; with Retain the key is "
            "kept when the KmsKey is deleted"
        )
    if spec.description is not None and len(spec.description) > MAX_DESCRIPTION_CHARS:
        errors.append(
            Problem("spec.description", f"is {len(spec.description)} characters; KMS allows at most 8192")
        )
    if spec.management_policy is model.ManagementPolicy.OBSERVE:
        if not spec.key_id:
            errors.append(
                Problem(
                    "spec.keyId",
                    "is required with managementPolicy: Observe (there is nothing to observe otherwise); set "
                    "it to the key to observe, or use managementPolicy: Manage",
                )
            )
        if spec.deletion_policy is model.DeletionPolicy.DELETE:
            warnings.append(
                "spec.deletionPolicy: Delete has no effect with managementPolicy: Observe; the operator "
                "never deletes an observed key"
            )
        ignored = ", ".join(f for f in _OBSERVE_IGNORED if getattr(spec, _ATTRS[f]) is not None)
        if ignored:
            warnings.append(
                "spec.managementPolicy: Observe never writes to KMS, so these spec fields are only compared, "
                f"not applied: {ignored}"
            )


def _region(spec: model.KmsKeySpec, errors: list[Problem], warnings: list[str]) -> None:
    if spec.region_id is not None and not REGION_ID.match(spec.region_id):
        errors.append(
            Problem(
                "spec.regionId",
                f"{_show(spec.region_id)} is not a region ID; use one such as cn-hangzhou or ap-southeast-1 "
                "(lowercase words joined by hyphens), or leave it unset for the operator's region",
            )
        )


def _tenancy(spec: model.KmsKeySpec, scope: Scope, errors: list[Problem]) -> None:
    """The cluster's tenancy settings (see the README's "Tenancy"): adoption, its deletion, regions."""
    manages = spec.management_policy is model.ManagementPolicy.MANAGE
    if spec.adopts_existing_key and not scope.may_adopt:
        errors.append(
            Problem(
                "spec.keyId",
                f"KmsKeys in namespace {scope.namespace} may not adopt existing KMS keys: the cluster's "
                "tenancy setting (chart value tenancy.adoption.namespaces, KMSKEY_ADOPTION_NAMESPACES) does "
                f"not list {scope.namespace}; remove spec.keyId to have a new key created, or ask the "
                f"cluster admin to allow adoption in {scope.namespace}",
            )
        )
    elif (
        spec.adopts_existing_key
        and manages
        and spec.deletion_policy is model.DeletionPolicy.DELETE
        and not scope.may_delete_adopted
        and not scope.created_its_key
    ):
        errors.append(
            Problem(
                "spec.deletionPolicy",
                "Delete is not allowed for a KmsKey that adopts its key (spec.keyId): in this cluster an "
                "adopted key is kept when its KmsKey is deleted (chart value tenancy.adoption.allowDelete, "
                "KMSKEY_ADOPTED_KEY_DELETION); use deletionPolicy: Retain",
            )
        )
    if scope.served_regions is not None and spec.region_id and spec.region_id not in scope.served_regions:
        served = ", ".join(scope.served_regions)
        errors.append(
            Problem(
                "spec.regionId",
                f"{spec.region_id} cannot be reached: the operator's KMS endpoint is pinned "
                f"(KMS_ENDPOINT={scope.endpoint}), and that endpoint serves {served} only; remove "
                f"spec.regionId or set it to {served}, or ask the cluster admin to unpin the endpoint "
                "(chart value kms.endpoint) so each region gets its own",
            )
        )


_ATTRS = {f: re.sub(r"(?<!^)(?=[A-Z])", "_", f).lower() for f in model.SPEC_FIELDS}
_RULES = (
    _not_a_key,
    _status,
    _spec_and_usage,
    _rotation,
    _policy,
    _tags,
    _region,
    _deletion_and_management,
)


# --- helpers ------------------------------------------------------------------------------------------------


def _get(body: Mapping[str, Any], *path: str) -> Any:
    value: Any = body
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _same_as_key(old_body: Mapping[str, Any], field: str, old: Any, new: Any) -> bool:
    """A change that only writes down what status already says the key has is no change at all.

    Status mirrors the ForceNew attributes KMS reports, so declaring `keySpec` on an adopted key, with the
    value the key has, is allowed (and so is removing the declaration); any other value is refused. Tags
    compare with status.tags (the key's user tags): the declared tags, none when unset, must be exactly those.
    """
    observed = _get(old_body, "status", field)
    if field == "tags":
        return isinstance(observed, Mapping) and dict(new or {}) == dict(observed)
    if not observed:
        return False
    return bool((old or observed) == (new or observed))


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
