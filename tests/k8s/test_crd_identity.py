"""The CRD's own CEL rules hold a KmsKey's identity with no webhook at all, also while it is being deleted.

No webhook runs for these tests: what is refused here is refused by the kube-apiserver alone, from the
x-kubernetes-validations in crds/ (schema validation runs before any validating webhook, and its refusals
read "is invalid", never "admission webhook ... denied"). A test stands in for the reconciler by writing
status.keyId (and status.regionId) through the status subresource: "the operator has recorded the key".
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from kmskey_operator import names
from tests.conftest import Kubectl

pytestmark = pytest.mark.k8s

KEY_ID_RULE = "spec.keyId cannot change or be removed once the operator has recorded the key"
REGION_RULE = "spec.regionId cannot change or be removed once the operator has recorded the key"


@pytest.fixture
def ns(kubectl: Kubectl, crd_installed: list[str]) -> str:
    name = f"cel-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    return name


def create(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any], **metadata: Any) -> None:
    body = {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": ns, **metadata},
        "spec": spec,
    }
    kubectl("create", "-f", "-", input=json.dumps(body))


def patch(kubectl: Kubectl, ns: str, name: str, body: dict[str, Any], *flags: str) -> Any:
    return kubectl(
        "patch", "kmskey", name, "-n", ns, "--type=merge", "-p", json.dumps(body), *flags, check=False
    )


def record(kubectl: Kubectl, ns: str, name: str, key_id: str, region: str = "cn-hangzhou") -> None:
    result = patch(
        kubectl, ns, name, {"status": {"keyId": key_id, "regionId": region}}, "--subresource=status"
    )
    assert result.returncode == 0, result.stderr


def spec_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    body = json.loads(kubectl("get", "kmskey", name, "-n", ns, "-o", "json").stdout)
    return dict(body["spec"])


def test_a_recorded_key_cannot_be_swapped_for_another_by_the_spec(kubectl: Kubectl, ns: str) -> None:
    create(kubectl, ns, "k", {"description": "made by the operator"})
    record(kubectl, ns, "k", "key-mine")
    refused = patch(kubectl, ns, "k", {"spec": {"keyId": "key-theirs"}})
    assert refused.returncode != 0
    assert KEY_ID_RULE in refused.stderr
    assert "is invalid" in refused.stderr
    assert "admission webhook" not in refused.stderr
    # Writing down the recorded key (needed for managementPolicy: Observe) is allowed...
    assert patch(kubectl, ns, "k", {"spec": {"keyId": "key-mine"}}).returncode == 0
    # ...and then it is fixed: neither changed nor removed ("Immutable once set").
    assert KEY_ID_RULE in patch(kubectl, ns, "k", {"spec": {"keyId": "key-theirs"}}).stderr
    assert KEY_ID_RULE in patch(kubectl, ns, "k", {"spec": {"keyId": None}}).stderr
    assert spec_of(kubectl, ns, "k")["keyId"] == "key-mine"


def test_a_mistyped_key_id_never_found_is_fixable_in_place_until_a_key_is_recorded(
    kubectl: Kubectl, ns: str
) -> None:
    create(kubectl, ns, "adopt", {"keyId": "key-typo"})
    assert patch(kubectl, ns, "adopt", {"spec": {"keyId": "key-right"}}).returncode == 0
    record(kubectl, ns, "adopt", "key-right")
    assert KEY_ID_RULE in patch(kubectl, ns, "adopt", {"spec": {"keyId": "key-other"}}).stderr
    assert KEY_ID_RULE in patch(kubectl, ns, "adopt", {"spec": {"keyId": None}}).stderr


def test_the_region_of_a_recorded_key_is_fixed_too(kubectl: Kubectl, ns: str) -> None:
    create(kubectl, ns, "pinned", {"regionId": "cn-hangzhou"})
    create(kubectl, ns, "default", {})
    record(kubectl, ns, "pinned", "key-1")
    record(kubectl, ns, "default", "key-2", region="cn-beijing")
    assert REGION_RULE in patch(kubectl, ns, "pinned", {"spec": {"regionId": "cn-shanghai"}}).stderr
    assert REGION_RULE in patch(kubectl, ns, "pinned", {"spec": {"regionId": None}}).stderr
    assert REGION_RULE in patch(kubectl, ns, "default", {"spec": {"regionId": "cn-shanghai"}}).stderr
    assert patch(kubectl, ns, "default", {"spec": {"regionId": "cn-beijing"}}).returncode == 0


def test_while_being_deleted_identity_holds_but_everything_else_still_goes_through(
    kubectl: Kubectl, ns: str
) -> None:
    """#14 scenario 4 at the API server: a deletion cannot be pointed at another key."""
    spec = {"deletionPolicy": "Delete", "pendingWindowInDays": 7, "enableDeletionProtection": True}
    create(kubectl, ns, "doomed", spec, finalizers=[names.FINALIZER])
    record(kubectl, ns, "doomed", "key-doomed")
    kubectl("delete", "kmskey", "doomed", "-n", ns, "--wait=false")
    redirect = {"keyId": "key-unrelated", "enableDeletionProtection": False}
    refused = patch(kubectl, ns, "doomed", {"spec": redirect})
    assert refused.returncode != 0
    assert KEY_ID_RULE in refused.stderr
    assert "keyId" not in spec_of(kubectl, ns, "doomed")
    # Steering the deletion (and finishing it) is never held up.
    assert patch(kubectl, ns, "doomed", {"spec": {"enableDeletionProtection": False}}).returncode == 0
    assert patch(kubectl, ns, "doomed", {"spec": {"deletionPolicy": "Retain"}}).returncode == 0
    assert patch(kubectl, ns, "doomed", {"metadata": {"finalizers": None}}).returncode == 0
    assert "NotFound" in kubectl("get", "kmskey", "doomed", "-n", ns, check=False).stderr


def test_the_operator_can_still_correct_status_key_id(kubectl: Kubectl, ns: str) -> None:
    create(kubectl, ns, "healed", {"description": "x"})
    record(kubectl, ns, "healed", "key-bogus")
    record(kubectl, ns, "healed", "key-real")  # what the operator does after the claim lookup


def test_a_region_id_of_the_wrong_shape_is_refused_by_the_schema(kubectl: Kubectl, ns: str) -> None:
    body = {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": "bad-region", "namespace": ns},
        "spec": {"regionId": "not a region!"},
    }
    result = kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "spec.regionId" in result.stderr


def test_kubectl_explain_says_what_the_api_server_enforces(kubectl: Kubectl, ns: str) -> None:
    """#17: the documentation of spec.keyId agrees with what is admitted (removal is refused too)."""
    deadline = time.monotonic() + 60
    while True:  # the CRD's OpenAPI is published a moment after it is Established
        result = kubectl("explain", "kmskeys.spec.keyId", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    text = " ".join(result.stdout.split())
    assert "Immutable once the operator has recorded the key (status.keyId)" in text
    assert "never changed or removed" in text
    assert "before that (a key never found) it can be corrected" in text
