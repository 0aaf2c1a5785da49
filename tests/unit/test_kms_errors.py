"""The one KMS error table, and the SDK-exception boundary that feeds it."""

from __future__ import annotations

import pytest
from alibabacloud_credentials.exceptions import CredentialException

from kmskey_operator.kms.errors import ErrorKind, KmsError, classify
from kmskey_operator.kms.gateway import _to_kms_error


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling", 400, ErrorKind.RETRY),
        ("Rejected.Throttling", 429, ErrorKind.RETRY),
        ("Throttling.User", 400, ErrorKind.RETRY),
        ("ServiceUnavailableTemporary", 503, ErrorKind.RETRY),
        ("InternalFailure", 500, ErrorKind.RETRY),
        ("SomethingNew", 502, ErrorKind.RETRY),
        ("NetworkError", None, ErrorKind.RETRY),
        ("Forbidden.KeyNotFound", 404, ErrorKind.GONE),
        ("Rejected.Disabled", 409, ErrorKind.REOBSERVE),
        ("Rejected.StateModifiedFailed", 409, ErrorKind.REOBSERVE),
        ("Rejected.UnsupportedOperation", 400, ErrorKind.TERMINAL),
        ("InvalidParameter", 400, ErrorKind.TERMINAL),
        ("Forbidden.NoPermission", 403, ErrorKind.TERMINAL),
        ("InvalidAccessKeyId.NotFound", 404, ErrorKind.TERMINAL),
    ],
)
def test_each_kms_code_has_one_meaning(code: str, status: int | None, kind: ErrorKind) -> None:
    assert classify(code, status) is kind


class _Wrapped(Exception):
    """The shape of darabonba's UnretryableException: the cause sits in inner_exception."""

    def __init__(self, inner: Exception) -> None:
        super().__init__(str(inner))
        self.inner_exception = inner


def test_missing_credentials_are_terminal_not_a_network_retry() -> None:
    error = _to_kms_error("DescribeKey", _Wrapped(CredentialException("unable to load credentials")))
    assert error.code == "InvalidCredentials"
    assert error.kind is ErrorKind.TERMINAL


def test_a_connection_failure_is_a_retryable_network_error() -> None:
    error = _to_kms_error("DescribeKey", _Wrapped(ConnectionRefusedError("refused")))
    assert error.code == "NetworkError"
    assert error.kind is ErrorKind.RETRY


def test_the_message_carries_code_status_and_request_id() -> None:
    text = KmsError("CreateKey", "InvalidParameter", "bad", http_status=400, request_id="R-1").describe()
    assert text == "CreateKey failed: InvalidParameter (HTTP 400): bad [RequestId: R-1]"
