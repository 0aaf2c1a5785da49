"""Pure KMS value rules (reference §3.1 and §3.3): enumerations, bounds and validators.

Each validator returns the normalised value or raises a KmsError, so the backend reads as the list of checks
an action makes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import errors

SYMMETRIC_SPECS = frozenset({"Aliyun_AES_256", "Aliyun_AES_128", "Aliyun_AES_192", "Aliyun_SM4"})
ASYMMETRIC_SPECS = frozenset({"RSA_2048", "RSA_3072", "EC_P256", "EC_P256K", "EC_SM2"})
KEY_SPECS = SYMMETRIC_SPECS | ASYMMETRIC_SPECS
# "Only Dedicated KMS supports Aliyun_AES_128 and Aliyun_AES_192" (Terraform doc).
INSTANCE_ONLY_SPECS = frozenset({"Aliyun_AES_128", "Aliyun_AES_192"})
DEFAULT_KEY_SPEC = "Aliyun_AES_256"

ENCRYPT_DECRYPT = "ENCRYPT/DECRYPT"
SIGN_VERIFY = "SIGN/VERIFY"
# Which usages each spec supports (2021 CreateKey.md capability table).
USAGES_BY_SPEC: dict[str, frozenset[str]] = {
    **{spec: frozenset({ENCRYPT_DECRYPT}) for spec in SYMMETRIC_SPECS},
    "RSA_2048": frozenset({ENCRYPT_DECRYPT, SIGN_VERIFY}),
    "RSA_3072": frozenset({ENCRYPT_DECRYPT, SIGN_VERIFY}),
    "EC_P256": frozenset({SIGN_VERIFY}),
    "EC_P256K": frozenset({SIGN_VERIFY}),
    "EC_SM2": frozenset({ENCRYPT_DECRYPT, SIGN_VERIFY}),
}

ORIGINS = frozenset({"Aliyun_KMS", "EXTERNAL"})
PROTECTION_LEVELS = frozenset({"SOFTWARE", "HSM"})
KEY_STORAGE_MECHANISMS = frozenset({"HsmInternal", "HsmEncryptedDatabase"})

MAX_DESCRIPTION_CHARS = 8192
MAX_POLICY_BYTES = 32768
MAX_TAGS = 20
MAX_TAG_CHARS = 128
MAX_BATCH_RESOURCES = 50
PENDING_WINDOW_DAYS = (7, 366)
DAY = 86400

_TAG_CHARS = re.compile(r"^[A-Za-z0-9/\\_\-.+=:@]*$")
_INTERVAL = re.compile(r"^(\d{1,12})([dhms])$")
_UNIT_SECONDS = {"d": DAY, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class RotationBounds:
    """Allowed rotation intervals, in seconds.

    Emulator choice: 7 to 730 days. Sources disagree between 365 and 730 days (reference §3.3); the wider
    bound refuses nothing the real service might accept for software keys.
    """

    minimum: int = 7 * DAY
    maximum: int = 730 * DAY


def default_key_usage(spec: str) -> str:
    # Emulator choice: SIGN/VERIFY for the sign-only EC specs, ENCRYPT/DECRYPT otherwise (reference §3.1).
    return SIGN_VERIFY if spec in ("EC_P256", "EC_P256K") else ENCRYPT_DECRYPT


def check_key_spec(spec: str) -> str:
    if spec not in KEY_SPECS:
        raise errors.invalid_parameter("KeySpec")
    return spec


def check_key_usage(spec: str, usage: str) -> str:
    if usage not in (ENCRYPT_DECRYPT, SIGN_VERIFY):
        raise errors.invalid_parameter("KeyUsage")
    if usage not in USAGES_BY_SPEC[spec]:
        raise errors.invalid_parameter("KeyUsage", f"{spec} keys do not support {usage}.")
    return usage


def check_choice(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise errors.invalid_parameter(name)
    return value


def parse_rotation_interval(text: str, bounds: RotationBounds, name: str = "RotationInterval") -> int:
    """`Nd`, `Nh`, `Nm` or `Ns` -> seconds, within bounds (`7d` == `604800s`; `605800s` is fine)."""
    match = _INTERVAL.match(text)
    if not match:
        raise errors.invalid_parameter(name, "Use an integer followed by d, h, m or s, such as 7d.")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not bounds.minimum <= seconds <= bounds.maximum:
        raise errors.invalid_parameter(
            name, f"The interval must be between {bounds.minimum}s and {bounds.maximum}s."
        )
    return seconds


def check_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise errors.invalid_parameter("Description", f"At most {MAX_DESCRIPTION_CHARS} characters.")
    return text


def check_policy(text: str) -> str:
    """A key policy: JSON object, at most 32768 bytes, `Version` "1". Stored as sent."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise errors.invalid_parameter("Policy", f"At most {MAX_POLICY_BYTES} bytes.")
    try:
        document = json.loads(text)
    except ValueError:
        raise errors.invalid_parameter("Policy", "The policy is not valid JSON.") from None
    if not isinstance(document, dict):
        raise errors.invalid_parameter("Policy", "The policy must be a JSON object.")
    if document.get("Version") != "1":
        raise errors.invalid_parameter("Policy", 'The policy Version must be "1".')
    return text


def check_policy_name(name: str | None) -> None:
    if name is not None and name != "default":
        raise errors.invalid_parameter("PolicyName", 'Only "default" is supported.')


def default_policy(account_id: str) -> str:
    """Emulator choice: the policy GetKeyPolicy returns for a key created without one.

    It is the shape of KMS's console default: the account's RAM identities may do everything with the key.
    """
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Sid": "Enable RAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"RAM": [f"acs:ram::{account_id}:*"]},
                    "Action": ["kms:*"],
                    "Resource": ["*"],
                }
            ],
        },
        separators=(",", ":"),
    )


def check_tag_key(key: str, name: str = "TagKey") -> str:
    if not key or len(key) > MAX_TAG_CHARS or not _TAG_CHARS.match(key):
        raise errors.invalid_parameter(name, "Tag keys are 1-128 characters of [A-Za-z0-9/\\_-.+=:@].")
    if key.lower().startswith(("aliyun", "acs:")):
        raise errors.invalid_parameter(name, 'Tag keys must not start with "aliyun" or "acs:".')
    return key


def check_tag_value(value: str, name: str = "TagValue") -> str:
    # Emulator choice: an empty tag value is allowed (the SDK doc only bounds the length from above).
    if len(value) > MAX_TAG_CHARS or not _TAG_CHARS.match(value):
        raise errors.invalid_parameter(name, "Tag values are 0-128 characters of [A-Za-z0-9/\\_-.+=:@].")
    return value


def check_tags(pairs: list[tuple[str, str]], name: str = "Tags") -> dict[str, str]:
    """Validate one call's tags. Emulator choice: a tag key given twice is refused, not silently merged."""
    if len(pairs) > MAX_TAGS:
        raise errors.invalid_parameter(name, f"At most {MAX_TAGS} tags.")
    tags: dict[str, str] = {}
    for key, value in pairs:
        check_tag_key(key)
        check_tag_value(value)
        if key in tags:
            raise errors.invalid_parameter(name, f"The tag key {key!r} is given twice.")
        tags[key] = value
    return tags


def parse_json_tags(text: str, name: str = "Tags") -> dict[str, str]:
    """`[{"TagKey": "k", "TagValue": "v"}, ...]` as sent by CreateKey and TagResource."""
    document = parse_json(text, name)
    if not isinstance(document, list):
        raise errors.invalid_parameter(name, "Expected a JSON array of {TagKey, TagValue} objects.")
    pairs: list[tuple[str, str]] = []
    for item in document:
        if not isinstance(item, dict):
            raise errors.invalid_parameter(name, "Expected a JSON array of {TagKey, TagValue} objects.")
        key, value = item.get("TagKey"), item.get("TagValue", "")
        if not isinstance(key, str) or not isinstance(value, str):
            raise errors.invalid_parameter(name, "TagKey and TagValue must be strings.")
        pairs.append((key, value))
    return check_tags(pairs, name)


def parse_json_string_list(text: str, name: str) -> list[str]:
    document = parse_json(text, name)
    if not isinstance(document, list) or not all(isinstance(item, str) for item in document):
        raise errors.invalid_parameter(name, "Expected a JSON array of strings.")
    return list(document)


def parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise errors.invalid_parameter(name, "The value is not valid JSON.") from None
