"""What a KMS error means for the reconciler, decided in one table.

Exception tree::

    KmsError                 every failed KMS call, with code, HTTP status and request ID
      kind = RETRY           throttling, 5xx, network: back off (honouring retry_after) and try again
      kind = GONE            the key does not exist (any more)
      kind = REOBSERVE       the key is in a state that refuses the call (Rejected.*): read it again
      kind = TERMINAL        invalid parameters, permissions: wait until the spec or credentials change

The table is keyed by error code, not by HTTP status: KMS reports throttling as 400 on some pages and
429 on others, and the SDK raises the same ClientException class for all 4xx codes.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    RETRY = "Retry"
    GONE = "Gone"
    REOBSERVE = "Reobserve"
    TERMINAL = "Terminal"


# Exact codes first; then prefixes (checked in order); then HTTP status; TERMINAL is the default.
_EXACT: dict[str, ErrorKind] = {
    "Forbidden.KeyNotFound": ErrorKind.GONE,
    "Forbidden.AliasNotFound": ErrorKind.GONE,
    "Forbidden.DKMSInstanceStateInvalid": ErrorKind.RETRY,
    "InternalFailure": ErrorKind.RETRY,
    "ServiceUnavailable": ErrorKind.RETRY,
    "ServiceUnavailableTemporary": ErrorKind.RETRY,
    "SerivceUnavailableTemporary": ErrorKind.RETRY,  # the older KMS docs' spelling
    "Rejected.LimitExceeded": ErrorKind.TERMINAL,
    "Rejected.UnsupportedOperation": ErrorKind.TERMINAL,
    "InvalidTimeStamp.Expired": ErrorKind.RETRY,  # local clock skew: a retry re-signs with a new date
    "SignatureNonceUsed": ErrorKind.RETRY,
    "NetworkError": ErrorKind.RETRY,
}
_PREFIXES: tuple[tuple[str, ErrorKind], ...] = (
    ("Throttling", ErrorKind.RETRY),
    ("Rejected.Throttling", ErrorKind.RETRY),
    ("Rejected.", ErrorKind.REOBSERVE),
)
_CONTAINS_THROTTLING = "Throttling"


def classify(code: str, http_status: int | None) -> ErrorKind:
    """The one classification table: what to do about a KMS error code."""
    if code in _EXACT:
        return _EXACT[code]
    for prefix, kind in _PREFIXES:
        if code.startswith(prefix):
            return kind
    if _CONTAINS_THROTTLING in code or http_status == 429:
        return ErrorKind.RETRY
    if http_status is not None and http_status >= 500:
        return ErrorKind.RETRY
    return ErrorKind.TERMINAL


class KmsError(Exception):
    """A KMS call failed. `message` is KMS's own message; never carries credentials."""

    def __init__(
        self,
        action: str,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.action = action
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after_seconds = retry_after_seconds
        self.kind = classify(code, http_status)
        super().__init__(self.describe())

    def describe(self) -> str:
        """`CreateKey failed: InvalidParameter (HTTP 400): <message> [RequestId: ...]`."""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        request = f" [RequestId: {self.request_id}]" if self.request_id else ""
        return f"{self.action} failed: {self.code}{status}: {self.message}{request}"

    @property
    def is_throttling(self) -> bool:
        return "Throttling" in self.code or self.http_status == 429
