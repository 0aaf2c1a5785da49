"""Hand-built KMS requests, signed by the official SDK's own signing functions, for tests that tamper.

The SDK client offers no way to alter a request after signing, so these helpers build the same request the
SDK would (same headers, same canonical forms, signed by `alibabacloud_tea_openapi.utils.Utils`), let a test
change one part, and send it with http.client.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from alibabacloud_tea_openapi.utils import Utils

from kms_emulator.testing import EmulatorHandle

VERSION = "2016-01-20"


@dataclass
class RawRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    extra_query: list[tuple[str, str]] = field(default_factory=list)  # appended after signing

    def path_qs(self) -> str:
        pairs = [*self.query.items(), *self.extra_query]
        return f"{self.path}?{urlencode(pairs)}" if pairs else self.path


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    content_type: str


def now_iso(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def acs3_request(
    emu: EmulatorHandle,
    action: str,
    params: dict[str, str],
    *,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    date: str | None = None,
    nonce: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> RawRequest:
    """The request the SDK's default path (`do_request`) sends, signed with `Utils.get_authorization`."""
    key_id = access_key_id or emu.access_key_id
    headers = {
        "host": emu.endpoint,
        "x-acs-version": VERSION,
        "x-acs-action": action,
        "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11 Core/0.4.3 TeaDSL/2",
        "x-acs-date": date or now_iso(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-acs-credentials-provider": "static_sts" if security_token else "static_ak",
    }
    if content_type:
        headers["content-type"] = content_type
    if security_token:
        headers["x-acs-accesskey-id"] = key_id
        headers["x-acs-security-token"] = security_token
    sdk_request = SimpleNamespace(pathname="/", method="POST", query=dict(params), headers=headers)
    headers["Authorization"] = Utils.get_authorization(
        sdk_request,
        "ACS3-HMAC-SHA256",
        headers["x-acs-content-sha256"],
        key_id,
        access_key_secret or emu.access_key_secret,
    )
    return RawRequest("POST", "/", dict(params), headers, body)


def v1_request(
    emu: EmulatorHandle,
    action: str,
    params: dict[str, str],
    *,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    in_body: bool = False,
    method: str = "POST",
) -> RawRequest:
    """Classic RPC v1 as `do_rpcrequest` (query) or Terraform's Go client (API parameters in a form body)
    sends it, signed with `Utils.get_rpcsignature`."""
    common = {
        "Action": action,
        "Format": "json",
        "Version": VERSION,
        "Timestamp": timestamp or now_iso(),
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": access_key_id or emu.access_key_id,
    }
    if security_token:
        common["SecurityToken"] = security_token
    signed = {**common, **params}
    signature = Utils.get_rpcsignature(signed, method, access_key_secret or emu.access_key_secret)
    headers = {"host": emu.endpoint, "x-acs-version": VERSION, "x-acs-action": action}
    if in_body:
        headers["content-type"] = "application/x-www-form-urlencoded"
        return RawRequest(
            method, "/", {**common, "Signature": signature}, headers, urlencode(params).encode()
        )
    return RawRequest(method, "/", {**signed, "Signature": signature}, headers)


def send(emu: EmulatorHandle, request: RawRequest) -> RawResponse:
    connection = http.client.HTTPConnection(
        emu.endpoint.split(":")[0], int(emu.endpoint.split(":")[1]), timeout=10
    )
    try:
        headers = {k: v for k, v in request.headers.items() if k != "host"}
        connection.putrequest(request.method, request.path_qs(), skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", request.headers.get("host", emu.endpoint))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        response = connection.getresponse()
        raw = response.read()
        return RawResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=json.loads(raw),
            content_type=response.getheader("Content-Type") or "",
        )
    finally:
        connection.close()
