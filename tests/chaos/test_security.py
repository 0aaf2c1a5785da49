"""Scenario 7: wrong or expiring credentials, TLS-only admission, never touching someone else's key, RBAC.

Secrets are random per test, so finding one anywhere (the operator's log, its metrics, Events, any KmsKey) is
a leak, whatever form it takes (as is, or base64).
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi.utils_models import Config

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.chaos.audit import backend_keys, writes_to
from tests.chaos.conftest import REPO_ROOT, OperatorFactory, crashes, record
from tests.chaos.kube import Kube, condition, poll, wait_all_ready
from tests.harness.operator import OperatorProcess

pytestmark = pytest.mark.chaos

CHART = REPO_ROOT / "deploy" / "helm" / "kmskey-operator"


REDACTED = "[REDACTED]"  # what the operator's log filter (logs.py) writes instead of a known secret


def leaks(secret_values: Iterable[str], places: dict[str, str]) -> list[str]:
    """Which secret shows up where, as is or base64-encoded, or redacted by the operator's log filter.

    The filter is the last line of defence, not the design: a `[REDACTED]` in the log means a code path
    handed a secret to the logger, and the same path may leak it wherever the filter does not run.
    """
    found = []
    for secret in secret_values:
        forms = {secret, base64.b64encode(secret.encode()).decode().rstrip("=")}
        for where, text in places.items():
            if any(form in text for form in forms):
                found.append(f"{secret[:4]}... in {where}")
    for where, text in places.items():
        if REDACTED in text:
            found.append(f"{text.count(REDACTED)} secret(s) redacted by the log filter in {where}")
    return found


def everything_visible(kube: Kube, namespace: str, operator: OperatorProcess) -> dict[str, str]:
    return {
        "operator log": operator.log(),
        "operator metrics": operator.metrics(),
        "events": json.dumps(kube.events(namespace)),
        "KmsKeys": json.dumps(kube.list(namespace)),
    }


def wait_reason(kube: Kube, namespace: str, name: str, reason: str, timeout: float = 90) -> dict[str, Any]:
    result: dict[str, Any] = poll(
        lambda: (b := kube.get(namespace, name)) and condition(b, "Synced").get("reason") == reason and b,
        timeout=timeout,
        what=f"{name}: Synced reason {reason}",
        describe=lambda: json.dumps(kube.get(namespace, name).get("status"), indent=1)[:2000],
    )
    return result


def test_a_wrong_secret_gives_access_denied_and_the_secret_appears_nowhere(
    kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    wrong_secret = "wrong-" + secrets.token_urlsafe(24)
    with run_emulator(quotas=False) as emulator:
        operator = start_operator(emulator, namespace, access_key=(emulator.access_key_id, wrong_secret))
        kube.create(namespace, "denied", {"description": "never created"})
        body = wait_reason(kube, namespace, "denied", "AccessDenied")
        found = leaks([wrong_secret], everything_visible(kube, namespace, operator))
        created = len(emulator.backend.keys)
    record(secrets_leaked=len(found), operator_crashes=len(crashes(operator)))
    assert "SignatureDoesNotMatch" in condition(body, "Synced")["message"]
    assert condition(body, "Ready")["status"] == "False"
    assert created == 0
    assert not found, found


def test_an_expired_sts_token_gives_access_denied_and_neither_secret_nor_token_leaks(
    kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    with run_emulator(quotas=False) as emulator:
        token = emulator.issue_sts_token(duration_seconds=25)
        operator = start_operator(
            emulator,
            namespace,
            access_key=(token.access_key_id, token.access_key_secret),
            env={"ALIBABA_CLOUD_SECURITY_TOKEN": str(token.security_token)},
        )
        kube.create(namespace, "sts", {"description": "while the token is valid"})
        wait_all_ready(kube, namespace, ["sts"], timeout=60)
        assert token.expires_at is not None
        poll(lambda: time.time() > token.expires_at + 1, timeout=60, what="the STS token to expire")  # type: ignore[operator]
        kube.patch_spec(namespace, "sts", {"description": "after the token expired"})
        kube.create(namespace, "sts-late", {"description": "after the token expired"})
        updated = wait_reason(kube, namespace, "sts", "AccessDenied")
        late = wait_reason(kube, namespace, "sts-late", "AccessDenied")
        secret_values = [token.access_key_secret, str(token.security_token)]
        found = leaks(secret_values, everything_visible(kube, namespace, operator))
        descriptions = [k["description"] for k in backend_keys(emulator)]
    record(secrets_leaked=len(found), operator_crashes=len(crashes(operator)))
    assert "InvalidAccessKeyId" in condition(updated, "Synced")["message"]
    assert condition(updated, "Ready")["status"] == "True"  # the key itself is still fine
    assert condition(late, "Ready")["status"] == "False"
    assert descriptions == ["while the token is valid"]
    assert not found, found


def test_the_webhook_answers_tls_only(
    start_operator: OperatorFactory, namespace: str, tmp_path: Path
) -> None:
    with run_emulator(quotas=False) as emulator:
        operator = start_operator(emulator, namespace, env={"KMSKEY_WEBHOOK_ENABLED": "true"})
        port = operator.webhook_port
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "kms.alicloud.dev", "version": "v1alpha1", "kind": "KmsKey"},
                "resource": {"group": "kms.alicloud.dev", "version": "v1alpha1", "resource": "kmskeys"},
                "operation": "CREATE",
                "userInfo": {"username": "chaos"},
                "object": {"apiVersion": "kms.alicloud.dev/v1alpha1", "kind": "KmsKey", "spec": {}},
            },
        }
        payload = json.dumps(review).encode()
        ca = Path(operator.env["KMSKEY_WEBHOOK_CERT_DIR"]) / "ca.crt"
        poll(ca.exists, timeout=60, what="the webhook certificate")

        def https_answer() -> tuple[int, str | None]:
            context = ssl.create_default_context(cafile=str(ca))
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            try:
                conn.request(
                    "POST", "/validate-kmskey", body=payload, headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                return response.status, conn.sock.version() if conn.sock else None  # type: ignore[union-attr]
            finally:
                conn.close()

        status, version = poll(https_answer, timeout=60, what="an HTTPS answer from the webhook")
        plain_error: Exception | None = None
        plain_status = None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(
                "POST", "/validate-kmskey", body=payload, headers={"Content-Type": "application/json"}
            )
            plain_status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            plain_error = error
        finally:
            conn.close()
    assert status == 200
    assert version in ("TLSv1.2", "TLSv1.3")
    assert plain_error is not None, f"plain HTTP got an answer: HTTP {plain_status}"


def kms_client(emulator: EmulatorHandle) -> KmsClient:
    return KmsClient(
        Config(
            access_key_id=emulator.access_key_id,
            access_key_secret=emulator.access_key_secret,
            endpoint=emulator.endpoint,
            protocol="http",
            region_id=emulator.region_id,
        )
    )


def test_a_status_pointed_at_someone_elses_key_heals_back_and_makes_zero_writes_to_that_key(
    kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    with run_emulator(quotas=False) as emulator:
        theirs = (
            kms_client(emulator)
            .create_key(
                kms_models.CreateKeyRequest(
                    description="theirs", tags=json.dumps([{"TagKey": "team", "TagValue": "x"}])
                )
            )
            .body.key_metadata.key_id
        )
        operator = start_operator(emulator, namespace)
        spec = {"description": "mine", "deletionPolicy": "Delete", "pendingWindowInDays": 7}
        kube.create(namespace, "hijacked", spec)
        mine = wait_all_ready(kube, namespace, ["hijacked"], timeout=60)["hijacked"]["status"]["keyId"]
        emulator.reset_calls()
        # Someone with status write access points the resource at another key, then changes the spec.
        kube.patch_status(namespace, "hijacked", {"keyId": theirs})
        kube.patch_spec(
            namespace,
            "hijacked",
            {"description": "overwrite theirs", "status": "Disabled", "tags": {"owner": "me"}},
        )
        # Status is not trusted: the key carrying this resource's claim is found again, and changed instead.
        body = poll(
            lambda: (
                (b := kube.get(namespace, "hijacked"))
                and b["status"].get("keyId") == mine
                and b["status"].get("observedGeneration") == b["metadata"]["generation"]
                and condition(b, "Ready").get("status") == "True"
                and b
            ),
            timeout=90,
            what="status.keyId healed back to the resource's own key",
            describe=lambda: json.dumps(kube.get(namespace, "hijacked").get("status"))[:2000],
        )
        # Deletion with deletionPolicy Delete schedules its own key's deletion, never theirs.
        kube.patch_status(namespace, "hijacked", {"keyId": theirs})
        kube.delete(namespace, "hijacked")
        poll(
            lambda: "hijacked" not in {b["metadata"]["name"] for b in kube.list(namespace)},
            timeout=60,
            what="the KmsKey to be released",
        )
        keys = {k["key_id"]: k for k in backend_keys(emulator)}
        writes = writes_to(emulator.calls(), theirs)
        evidence = crashes(operator)
    record(operator_crashes=len(evidence), foreign_key_writes=len(writes))
    assert body["status"]["keyState"] == "Disabled"
    assert not writes, [(c.action, c.params) for c in writes]
    assert (keys[theirs]["description"], keys[theirs]["key_state"]) == ("theirs", "Enabled")
    assert keys[theirs]["tags"] == {"team": "x"}
    assert (keys[mine]["description"], keys[mine]["key_state"]) == ("overwrite theirs", "PendingDeletion")
    assert not evidence, evidence


# What the operator uses, and so all the chart may grant: (API group, resource) -> verbs.
NEEDED: dict[tuple[str, str], set[str]] = {
    ("kms.alicloud.dev", "kmskeys"): {"get", "list", "watch", "patch"},
    ("kms.alicloud.dev", "kmskeys/status"): {"patch"},
    ("", "events"): {"create"},
    ("kopf.dev", "kopfpeerings"): {"list", "watch", "patch"},
    ("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    # get: kube-system (the cluster's UID for claims), and namespace labels for provider-config selectors
    ("", "namespaces"): {"list", "watch", "get"},
    # Provider configs (#15): followed by a watch, read by name before a new key's account is decided, and
    # their status written; Secrets read by name and ServiceAccount tokens requested where configs live.
    ("kms.alicloud.dev", "kmsproviderconfigs"): {"get", "list", "watch"},
    ("kms.alicloud.dev", "kmsproviderconfigs/status"): {"patch"},
    ("kms.alicloud.dev", "clusterkmsproviderconfigs"): {"get", "list", "watch"},
    ("kms.alicloud.dev", "clusterkmsproviderconfigs/status"): {"patch"},
    ("", "secrets"): {"get"},
    ("", "serviceaccounts/token"): {"create"},
}
RENDERS = {
    "default": [],
    "ha": ["--set", "ha.enabled=true", "--set", "replicaCount=2"],
    "namespaced": ["--set", "watchNamespaces={team-a,team-b}"],
    "namespaced-ha": ["--set", "watchNamespaces={team-a,team-b}", "--set", "ha.enabled=true"],
}


def helm() -> str | None:
    beside = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "helm"
    return str(beside) if beside.exists() else shutil.which("helm")


@pytest.mark.parametrize("variant", sorted(RENDERS))
def test_the_charts_rbac_has_no_wildcard_and_grants_nothing_the_operator_does_not_use(variant: str) -> None:
    if helm() is None:
        pytest.fail("helm is not installed: run `make tools`")
    import yaml

    rendered = subprocess.run(
        [str(helm()), "template", "kmskey", str(CHART), *RENDERS[variant]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rules = [
        (doc["kind"], rule)
        for doc in yaml.safe_load_all(rendered)
        if doc and doc.get("kind") in ("Role", "ClusterRole")
        for rule in doc.get("rules") or []
    ]
    assert rules, "no RBAC rendered"
    problems = []
    for kind, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            if "*" in (rule.get(field) or []):
                problems.append(f"{kind}: wildcard in {field}: {rule}")
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                unused = set(rule.get("verbs") or []) - NEEDED.get((group, resource), set())
                if unused:
                    problems.append(f"{kind}: {group or 'core'}/{resource} {sorted(unused)} is not used")
    assert not problems, "\n".join(problems)
