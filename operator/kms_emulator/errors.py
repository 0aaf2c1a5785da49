"""KMS error codes as one exception type, raised by the backend and the wire layer alike.

Exception tree::

    Exception
     └── KmsError            every answer that is not a success: code, message, HTTP status, extra headers

The constructors below carry the exact codes, messages and statuses of the reference (§3.4), so that no other
module spells a KMS error code by hand.
"""

from __future__ import annotations

from collections.abc import Mapping


class KmsError(Exception):
    """A KMS error answer: rendered by the wire layer as the standard error body."""

    def __init__(
        self, code: str, message: str, http_status: int = 400, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.headers: dict[str, str] = dict(headers or {})


def missing_parameter(name: str) -> KmsError:
    return KmsError("MissingParameter", f'The parameter "{name}" is needed but not provided.', 400)


def invalid_parameter(name: str, why: str = "") -> KmsError:
    message = f'The specified parameter "{name}" is not valid.'
    return KmsError("InvalidParameter", f"{message} {why}".strip(), 400)


def key_not_found() -> KmsError:
    return KmsError("Forbidden.KeyNotFound", "The specified Key is not found.", 404)


def alias_not_found() -> KmsError:
    return KmsError("Forbidden.AliasNotFound", "The specified Alias is not found.", 404)


def resource_not_found(what: str) -> KmsError:
    return KmsError("Forbidden.ResourceNotFound", f"The specified {what} is not found.", 404)


def state_modified_failed() -> KmsError:
    return KmsError("Rejected.StateModifiedFailed", "Keystate modified failed.", 409)


def rejected_state(state: str) -> KmsError:
    """`Rejected.<State>` (409): the operation is not allowed while the key is in `state`."""
    return KmsError(f"Rejected.{state}", f"The request is rejected because the key is {state}.", 409)


def unsupported_operation(why: str) -> KmsError:
    return KmsError("Rejected.UnsupportedOperation", f"This operation is not supported. {why}".strip(), 400)


def limit_exceeded(what: str) -> KmsError:
    return KmsError("Rejected.LimitExceeded", f"The limit of {what} is exceeded.", 400)


def deletion_protected() -> KmsError:
    # Emulator choice: KMS does not document what ScheduleKeyDeletion answers on a protected key; the
    # reference (§3.2) suggests 403 Forbidden.DeletionProtection.
    return KmsError(
        "Forbidden.DeletionProtection",
        "The key is protected from deletion. Disable deletion protection first.",
        403,
    )


def throttling(style: str, retry_after_ms: int) -> KmsError:
    """Over quota, in one of the two shapes KMS documents (see quota.ThrottleStyle)."""
    if style == "throttling-400":
        return KmsError("Throttling", "Request was denied due to request throttling.", 400)
    return KmsError(
        "Rejected.Throttling",
        "QPS Limit Exceeded",
        429,
        headers={"x-acs-retry-after": str(max(1, retry_after_ms))},
    )


# -- gateway (authentication and routing) errors ----------------------------------------------------------


def invalid_access_key_id() -> KmsError:
    return KmsError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)


def signature_does_not_match(string_to_sign: str = "") -> KmsError:
    message = "Specified signature is not matched with our calculation."
    if string_to_sign:
        message += f" server string to sign is:{string_to_sign}"
    return KmsError("SignatureDoesNotMatch", message, 400)


def incomplete_signature(why: str = "") -> KmsError:
    message = "The request signature does not conform to Alibaba Cloud standards."
    return KmsError("IncompleteSignature", f"{message} {why}".strip(), 400)


def signature_nonce_used() -> KmsError:
    return KmsError("SignatureNonceUsed", "Specified signature nonce was used already.", 400)


def timestamp_expired() -> KmsError:
    return KmsError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)


def illegal_timestamp() -> KmsError:
    return KmsError(
        "IllegalTimestamp",
        "The input parameter Timestamp that is mandatory for processing is not valid.",
        400,
    )


def security_token_mismatch() -> KmsError:
    # Emulator choice: the POP gateway code for a security token that does not belong to the access key.
    return KmsError(
        "InvalidSecurityToken.MismatchWithAccessKey", "The security token does not match the access key.", 400
    )


def invalid_action() -> KmsError:
    return KmsError(
        "InvalidAction.NotFound", "Specified api is not found, please check your url and method.", 404
    )


def invalid_version() -> KmsError:
    return KmsError("InvalidVersion", "Specified parameter Version is not valid.", 400)


def internal_failure() -> KmsError:
    return KmsError("InternalFailure", "The request processing has failed due to some unknown error.", 500)
