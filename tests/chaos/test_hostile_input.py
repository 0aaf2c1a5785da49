"""Scenario 6: hostile KmsKey specs through the real API server, with the operator's own webhook enabled.

Hypothesis generates specs (and updates to them) from every field's valid values plus junk: wrong types,
unicode, reserved and ownership tag keys, oversized and malformed policies, huge descriptions, out-of-range
numbers. Each is sent to the real kube-apiserver, which applies the CRD schema and calls the operator's
validating webhook. Every request must be refused at admission (4xx with a message) or accepted; an accepted
spec must then be reconciled without an operator crash and without a single KMS call that KMS refuses as an
invalid or missing parameter (read in the emulator's call log).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_emulator import actions
from kms_emulator.backend import KmsBackend
from kms_emulator.calllog import CallRecord
from kms_emulator.errors import KmsError as EmulatorKmsError
from kms_emulator.params import Params
from kms_emulator.testing import run_emulator
from tests.chaos.audit import OWNER_TAG, invalid_parameter_calls
from tests.chaos.conftest import OperatorFactory, crashes, record, scale
from tests.chaos.kube import Kube, condition, poll
from tests.conftest import Kubectl

pytestmark = pytest.mark.chaos

WEBHOOK_CONFIGURATION = "kmskey-chaos-hostile"
INSTANCE_ID = "kst-hzz62ee5fe3b7ifgq5hmg"

junk = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
)


def valid_or_junk(*values: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(values), junk)


def huge(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """A long string made fast: one (possibly non-ASCII) character repeated, plus a random tail."""
    return st.builds(
        lambda c, n, tail: c * n + tail,
        st.characters(blacklist_categories=("Cs",)),
        st.integers(min_size, max_size),
        st.text(max_size=20),
    )


def policy_document(statements: int, padding: str) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"RAM": ["acs:ram::1234567890123456:*"]},
        "Action": ["kms:*"],
        "Resource": ["*"],
        "Sid": padding,
    }
    return json.dumps({"Version": "1", "Statement": [statement] * statements}, ensure_ascii=False)


policies = st.one_of(
    st.builds(policy_document, st.integers(1, 3), st.text(max_size=30)),
    # Around and beyond the 32 KiB limit, in characters and (with non-ASCII padding) in bytes.
    st.builds(policy_document, st.integers(100, 400), st.sampled_from(["x" * 60, "é" * 40, "密" * 30])),
    st.text(max_size=60),  # not JSON, or JSON that is not a policy
    st.sampled_from(["{}", "[]", "null", '{"Version":"1"}', '{"Statement":"*"}', "1e999"]),
    huge(30000, 40000),
)

tag_keys = st.one_of(
    st.from_regex(r"[A-Za-z0-9/_.+=:@-]{1,20}", fullmatch=True),
    st.sampled_from(["aliyun", "aliyun:x", "ALIYUN-k", "acs:owner", "Acs:x", OWNER_TAG, "k" * 129, "a b"]),
    st.text(min_size=1, max_size=20),
)
tag_values = st.one_of(st.from_regex(r"[A-Za-z0-9/_.+=:@-]{0,20}", fullmatch=True), st.text(max_size=20))

spec_fields: dict[str, st.SearchStrategy[Any]] = {
    "keySpec": valid_or_junk(
        "Aliyun_AES_256", "Aliyun_AES_128", "Aliyun_SM4", "RSA_2048", "EC_P256", "EC_SM2"
    ),
    "keyUsage": valid_or_junk("ENCRYPT/DECRYPT", "SIGN/VERIFY"),
    "origin": valid_or_junk("Aliyun_KMS", "EXTERNAL"),
    "protectionLevel": valid_or_junk("SOFTWARE", "HSM"),
    "dkmsInstanceId": valid_or_junk(INSTANCE_ID, "kst-unknown000000000000"),
    "description": st.one_of(st.text(max_size=80), huge(8000, 9000)),
    "enableAutomaticRotation": st.one_of(st.booleans(), junk),
    "rotationInterval": valid_or_junk("7d", "730d", "6d", "731d", "168h", "604800s", "0s", "99999999999999d"),
    "status": valid_or_junk("Enabled", "Disabled", "PendingDeletion"),
    "enableDeletionProtection": st.one_of(st.booleans(), junk),
    "policy": policies,
    "policyName": valid_or_junk("default"),
    "tags": st.one_of(st.dictionaries(tag_keys, tag_values, max_size=24), junk),
    "keyId": st.one_of(st.text(max_size=60), st.uuids().map(str)),
    "regionId": valid_or_junk("cn-hangzhou", "cn-shanghai"),
    "pendingWindowInDays": st.one_of(st.integers(-10, 400), junk),
    "deletionPolicy": valid_or_junk("Retain", "Delete"),
    "managementPolicy": valid_or_junk("Manage", "Observe"),
    "secretName": st.text(max_size=20),
    "certificateId": st.text(max_size=20),
    "bogusField": junk,
}


@st.composite
def specs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(junk)  # spec is not even an object
    # Mostly a few fields at once (a plausible spec with a twist); sometimes many.
    chosen = draw(st.lists(st.sampled_from(sorted(spec_fields)), max_size=draw(st.sampled_from([3, 6, 21]))))
    return {field: draw(spec_fields[field]) for field in dict.fromkeys(chosen)}


def only_the_instance_is_unknown(call: CallRecord) -> bool:
    """Whether a refused CreateKey passes every rule of KMS once its DKMSInstanceId names a known instance.

    The call is replayed on a scratch emulator backend that knows INSTANCE_ID; any other fault of the call
    (a bad interval, spec, policy or tag) still refuses it there, so it is not excused.
    """
    if call.action != "CreateKey" or call.params.get("DKMSInstanceId", INSTANCE_ID) == INSTANCE_ID:
        return False
    scratch = KmsBackend(region_id="cn-hangzhou", account_id="1", instance_ids=[INSTANCE_ID])
    try:
        actions.create_key(scratch, Params({**call.params, "DKMSInstanceId": INSTANCE_ID}))
    except EmulatorKmsError:
        return False
    return True


def refusal_is_admission(status: int, body: bytes) -> bool:
    """A 4xx from the schema or the webhook with a message; never a webhook failure or a 5xx."""
    if not 400 <= status < 500:
        return False
    text = body.decode(errors="replace")
    return "failed calling webhook" not in text and '"message"' in text


def test_hostile_specs_are_refused_at_admission_or_reconciled_without_crash_or_invalid_kms_call(
    kube: Kube, kubectl: Kubectl, start_operator: OperatorFactory, namespace: str
) -> None:
    examples = scale(40, 1000)
    accepted: list[str] = []
    refused = 0
    counter = itertools.count()
    with run_emulator(quotas=False, max_keys=100_000) as emulator:
        operator = start_operator(
            emulator,
            namespace,
            env={
                "KMSKEY_WEBHOOK_ENABLED": "true",
                "KMSKEY_WEBHOOK_MANAGED": WEBHOOK_CONFIGURATION,
                "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
                "KMSKEY_WEBHOOK_NAMESPACES": namespace,
                "KMSKEY_READ_QPS": "0",
            },
        )
        try:
            # The webhook is in force once a spec only it refuses is refused (a dry run: nothing is stored).
            probe = kube.manifest(namespace, "probe", {"keySpec": "EC_P256", "keyUsage": "ENCRYPT/DECRYPT"})
            poll(
                lambda: kube.request("POST", kube.path(namespace) + "?dryRun=All", probe)[0] == 422,
                timeout=60,
                what="the operator's webhook to refuse an invalid spec",
            )

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(spec=specs(), update=st.one_of(st.none(), specs()))
            def send(spec: Any, update: Any) -> None:
                nonlocal refused
                name = f"h{next(counter)}"
                status, body = kube.try_create(namespace, name, spec)
                if status == 201:
                    accepted.append(name)
                else:
                    assert refusal_is_admission(status, body), f"create: HTTP {status}: {body[:1000]!r}"
                    refused += 1
                    return
                if isinstance(update, dict):
                    status, body = kube.request(
                        "PATCH",
                        kube.path(namespace, name),
                        {"spec": update},
                        content_type="application/merge-patch+json",
                    )
                    if status >= 300:
                        assert refusal_is_admission(status, body), f"update: HTTP {status}: {body[:1000]!r}"

            send()

            def reconciled() -> bool:
                bodies = {b["metadata"]["name"]: b for b in kube.list(namespace)}
                return all(
                    condition(bodies[n], "Synced").get("observedGeneration")
                    == bodies[n]["metadata"]["generation"]
                    for n in accepted
                )

            poll(reconciled, timeout=300, what=f"{len(accepted)} accepted KmsKeys reconciled")
            bodies = {b["metadata"]["name"]: b for b in kube.list(namespace)}
            calls = emulator.calls()
        finally:
            operator.stop()
            with contextlib.suppress(Exception):
                kubectl(
                    "delete", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "--ignore-not-found"
                )

    # A well-formed DKMSInstanceId that names no instance is refused by KMS as InvalidParameter: only KMS
    # knows which instances exist, so the operator reports it (a KmsRejected condition, no retry loop).
    # Excused is only a call that the unknown instance alone spoiled: with the known one, KMS takes it.
    unknown_instance = [c for c in invalid_parameter_calls(calls) if only_the_instance_is_unknown(c)]
    invalid = [c for c in invalid_parameter_calls(calls) if c not in unknown_instance]
    evidence = crashes(operator)
    inconsistent = {
        n: condition(bodies[n], "Synced").get("message", "")[:300]
        for n in accepted
        if condition(bodies[n], "Synced").get("reason") == "InvalidSpec"
    }
    reasons = sorted({str(condition(bodies[n], "Synced").get("reason")) for n in accepted})
    record(
        hostile_specs_tried=len(accepted) + refused,
        hostile_specs_accepted=len(accepted),
        hostile_specs_refused=refused,
        hostile_invalid_kms_calls=len(invalid),
        hostile_unknown_instance_refusals=len(unknown_instance),
        operator_crashes=len(evidence),
    )
    print(f"hostile: {len(accepted)} accepted, {refused} refused; Synced reasons of accepted: {reasons}")
    assert not evidence, evidence
    assert not invalid, [(c.action, c.code, json.dumps(c.params)[:300]) for c in invalid[:5]]
    # What admission let in, the reconciler must agree is valid (they share validation.py).
    assert not inconsistent, inconsistent
