"""Canonical forms for values that KMS and users spell differently, so comparisons are like with like.

KMS returns rotation intervals as "<seconds>s" whatever was sent ("7d" reads back "604800s"), returns
policies re-serialised, and adds system tags of its own. Comparing raw strings would show permanent
drift; every comparison in the operator goes through these functions instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kmskey_operator import names

_INTERVAL = re.compile(r"^([0-9]{1,12})([dhms])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

MIN_ROTATION_SECONDS = 7 * 86400
MAX_ROTATION_SECONDS = 730 * 86400


def interval_seconds(text: str) -> int:
    """`"7d"` -> 604800. Raises ValueError for anything but an integer followed by d, h, m or s."""
    match = _INTERVAL.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an integer followed by d, h, m or s (for example 7d or 604800s)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_interval(seconds: int) -> str:
    """604800 -> "604800s", the form KMS returns."""
    return f"{seconds}s"


def policy_document(text: str) -> Any:
    """The parsed JSON value of a key policy; key order and whitespace do not matter."""
    return json.loads(text)


def policies_equal(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left is right
    try:
        return bool(policy_document(left) == policy_document(right))
    except ValueError:
        return left == right


def is_reserved_tag(key: str) -> bool:
    """KMS's own tags (`aliyun*`, `acs:*`): never shown, never compared, never written."""
    return key.startswith(names.RESERVED_TAG_PREFIXES)


def is_operator_tag(key: str) -> bool:
    """The operator's own tags (its claim, everything under kms.alicloud.dev/): never the user's."""
    return key.lower().startswith(names.OPERATOR_TAG_PREFIX)


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as a user declares them: without KMS's reserved tags and the operator's own."""
    return {k: v for k, v in tags.items() if not is_reserved_tag(k) and not is_operator_tag(k)}
