"""The rules a KmsKey spec must follow beyond its schema, for CREATE and for UPDATE.

Pure functions over resource bodies, shared by the admission webhook (which refuses a bad spec at
`kubectl apply` time) and the reconciler (which turns the same verdict into a condition, for a resource that
got in while the webhook was down). Every message names the field (`spec.xxx`) and says what to do.

Decisions that the KMS documentation leaves open:
- Tag keys are 1-128 and tag values 0-128 characters of `[A-Za-z0-9/\\_-.+=:@]` (the SDK model's charset,
  also enforced by the emulator); keys starting with `aliyun` or `acs:` in any case, and the operator's
  ownership tag key, are refused.
- Once the key exists, `keyId` and `regionId` count as changed only when they name another key or region
  than the one in status: writing down `spec.keyId: <status.keyId>` (needed to switch to
  `managementPolicy: Observe`) is not a change.
- An update that leaves `spec` as it was is always allowed, even if that spec breaks a rule: the operator's
  own finalizer and annotation patches must never be refused, or a deletion could be blocked.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from kmskey_operator import model, names, normalize, policy

MAX_TAGS = 20
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


def validate_spec(spec: Mapping[str, Any] | None) -> Verdict:
    """The CREATE/UPDATE rules for one spec: shapes (via model.parse_spec) first, then field combinations."""
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
    return Verdict(errors=tuple(errors), warnings=tuple(warnings))


def key_exists(body: Mapping[str, Any]) -> bool:
    """Whether the resource names a KMS key: the operator recorded one (status.keyId) or it adopts one."""
    return bool(_get(body, "status", "keyId") or _get(body, "spec", "keyId"))


def immutable_changes(
    old_spec: Mapping[str, Any] | None, new_spec: Mapping[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for each ForceNew or identity field that differs; adding or removing counts."""
    old, new = old_spec or {}, new_spec or {}
    return [(f, old.get(f), new.get(f)) for f in IMMUTABLE_FIELDS if old.get(f) != new.get(f)]


def validate_update(old_body: Mapping[str, Any], new_body: Mapping[str, Any]) -> Verdict:
    """The UPDATE rules: the spec rules, plus immutability of ForceNew and identity fields once a key exists.

    An object being deleted, and an update that leaves spec unchanged (metadata, finalizers, status), always
    pass: admission must never stand between a KmsKey and its deletion.
    """
    if _get(new_body, "metadata", "deletionTimestamp") or _get(old_body, "metadata", "deletionTimestamp"):
        return ALLOWED
    old_spec = _get(old_body, "spec") or {}
    new_spec = _get(new_body, "spec") or {}
    if old_spec == new_spec:
        return ALLOWED
    verdict = validate_spec(new_spec)
    if not key_exists(old_body):
        return verdict
    changes = [c for c in immutable_changes(old_spec, new_spec) if not _same_identity(old_body, *c)]
    if not changes:
        return verdict
    key_id = _get(old_body, "status", "keyId") or _get(old_body, "spec", "keyId")
    errors = tuple(
        Problem(f"spec.{field}", f"cannot change once the KMS key exists ({_show(old)} → {_show(new)})")
        for field, old, new in changes
    )
    advice = (
        f"KMS cannot change these on key {key_id} in place: put the old values back, and create a new "
        "KmsKey with the new values instead (deleting this KmsKey with deletionPolicy: Retain keeps the "
        "current key in KMS).",
    )
    return Verdict(errors=errors, advice=advice) + verdict


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
    if len(spec.tags) > MAX_TAGS:
        errors.append(Problem("spec.tags", f"has {len(spec.tags)} tags; KMS allows at most {MAX_TAGS}"))
    for key, value in sorted(spec.tags.items()):
        if key == names.OWNER_TAG_KEY:
            errors.append(
                Problem(
                    f"spec.tags[{key}]",
                    "is reserved: the operator tags each key it creates with the KmsKey's UID under this "
                    "key; remove it",
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


_ATTRS = {f: re.sub(r"(?<!^)(?=[A-Z])", "_", f).lower() for f in model.SPEC_FIELDS}
_RULES = (_not_a_key, _status, _spec_and_usage, _rotation, _policy, _tags, _deletion_and_management)


# --- helpers ------------------------------------------------------------------------------------------------


def _get(body: Mapping[str, Any], *path: str) -> Any:
    value: Any = body
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _same_identity(old_body: Mapping[str, Any], field: str, old: Any, new: Any) -> bool:
    """A change that only writes down what status already says the key has is no change at all.

    Status mirrors keyId, regionId and the ForceNew attributes KMS reports, so declaring `keySpec` on an
    adopted key, with the value the key has, is allowed; any other value is refused. Tags are not mirrored.
    """
    observed = _get(old_body, "status", field)
    if field == "tags" or not observed:
        return False
    return bool((old or observed) == (new or observed))


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
