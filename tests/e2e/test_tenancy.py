"""Many teams, one operator (#14): a key has one owner, and no namespace can touch another team's key.

Each scenario of issue #14 is replayed as a hostile or careless tenant would, through the real API server
and the real operator, and judged on KMS itself (the emulator's state and call log), not on the status.

The module's operator is as permissive as a cluster can be configured: every namespace may adopt keys,
and adopted keys may be deleted. What stops a tenant here is the claim on the key, not a setting. A second
operator runs with the chart's defaults (no adoption, adopted keys kept) for the tests of those settings.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import apply, condition, create_key, describe, get, wait_for, wait_ready
from tests.harness.operator import OperatorProcess

OWNER_UID = "kms.alicloud.dev/owner-uid"
OWNER_NAMESPACE = "kms.alicloud.dev/owner-namespace"
OWNER_NAME = "kms.alicloud.dev/owner-name"
OWNER_CLUSTER = "kms.alicloud.dev/owner-cluster"
TAKE_OVER = "kms.alicloud.dev/take-over-claim"
READS = ("Describe", "List", "Get")
TIMEOUT = 90.0  # two cores shared with other engineers' runs: poll with generous deadlines
REFUSED = 'admission webhook "validate-kmskey.kms.alicloud.dev" denied the request'


# --- fixtures -----------------------------------------------------------------------------------------------


def new_namespace(kubectl: Kubectl, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def teams(kubectl: Kubectl, crd_installed: list[str]) -> dict[str, str]:
    """team-a and team-b behind the webhook; unguarded: watched, but no webhook (admission bypassed)."""
    return {t: new_namespace(kubectl, t) for t in ("team-a", "team-b", "unguarded")}


def start(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    log_dir: Path,
    name: str,
    watched: list[str],
    guarded: list[str],
    **env: str,
) -> OperatorProcess:
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret,
        log_dir=log_dir,
        name=name,
        kms_ca_file=emulator.ca_file,
        extra_env={
            "WATCH_NAMESPACES": ",".join(watched),
            "KMSKEY_RESYNC_SECONDS": "3",
            "KMSKEY_RESYNC_JITTER": "0",
            "KMSKEY_WEBHOOK_ENABLED": "true",
            "KMSKEY_WEBHOOK_MANAGED": f"kmskey-{name}-{watched[0]}",
            "KMSKEY_WEBHOOK_NAMESPACES": ",".join(guarded),
            "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
            **env,
        },
    )
    process.start(timeout=120)
    deadline = time.monotonic() + 60
    while process.readiness()[0] != 200:
        assert time.monotonic() < deadline, f"{name}: /readyz never answered 200:\n{process.log()[-3000:]}"
        time.sleep(0.3)
    return process


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    teams: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = start(
        emulator,
        kubeconfig,
        tmp_path_factory.mktemp("tenancy"),
        "tenancy",
        [teams["team-a"], teams["team-b"], teams["unguarded"]],
        [teams["team-a"], teams["team-b"]],
        KMSKEY_ADOPTION_NAMESPACES="*",
        KMSKEY_ADOPTED_KEY_DELETION="true",
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def strict(kubectl: Kubectl, crd_installed: list[str]) -> dict[str, str]:
    """Namespaces of a cluster that lets only `adopters` adopt; `*-unguarded` have no webhook."""
    names = ("strict", "strict-unguarded", "adopters", "adopters-unguarded")
    return {t: new_namespace(kubectl, t) for t in names}


@pytest.fixture(scope="module")
def default_operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    strict: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The chart's defaults, with two namespaces listed for adoption: adopted keys are never deleted."""
    process = start(
        emulator,
        kubeconfig,
        tmp_path_factory.mktemp("strict"),
        "strict",
        list(strict.values()),
        [strict["strict"], strict["adopters"]],
        KMSKEY_ADOPTION_NAMESPACES=f"{strict['adopters']},{strict['adopters-unguarded']}",
    )
    yield process
    process.stop()


# --- helpers: KMS as it really is ---------------------------------------------------------------------------


def kms_key(emulator: EmulatorHandle, key_id: str) -> Any:
    with emulator.backend.lock:
        return emulator.backend.keys[key_id]


def mark(emulator: EmulatorHandle) -> int:
    """A place in the emulator's call log: `writes_to(..., since=mark(emulator))` sees only later calls."""
    return len(emulator.calls())


def writes_to(emulator: EmulatorHandle, key_id: str, since: int = 0) -> list[str]:
    return [
        c.action
        for c in emulator.calls()[since:]
        if not c.action.startswith(READS) and key_id in json.dumps(c.params)
    ]


def kubectl_apply(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any], **meta: Any) -> Any:
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": spec,
    }
    return kubectl("apply", "-f", "-", input=json.dumps(body), check=False)


def patch(kubectl: Kubectl, ns: str, name: str, body: dict[str, Any], *flags: str) -> Any:
    return kubectl(
        "patch", "kmskey", name, "-n", ns, "--type=merge", "-p", json.dumps(body), *flags, check=False
    )


def reason(kind: str, wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda b: condition(b, kind).get("reason") == wanted


def handled(body: dict[str, Any]) -> bool:
    """The operator has judged the current generation (whatever it decided)."""
    synced = condition(body, "Synced")
    return bool(synced) and synced.get("observedGeneration") == body["metadata"]["generation"]


def events(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def wait_event(kubectl: Kubectl, ns: str, name: str, wanted: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(kubectl, ns, name) if e.get("reason") == wanted]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {wanted} event for {ns}/{name}: {events(kubectl, ns, name)}"
        time.sleep(0.5)


def wait_gone(kubectl: Kubectl, ns: str, name: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while "NotFound" not in kubectl("get", "kmskey", name, "-n", ns, check=False).stderr:
        assert time.monotonic() < deadline, f"{ns}/{name} was never released"
        time.sleep(0.5)


def owned_key(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> tuple[str, str]:
    """A KmsKey that creates its key; returns (key ID, UID) once Ready."""
    apply(kubectl, ns, name, spec)
    body = wait_ready(kubectl, ns, name, timeout=TIMEOUT)
    return body["status"]["keyId"], body["metadata"]["uid"]


# --- #14 scenario 1: another namespace deletes a team's key -------------------------------------------------


def test_a_tenant_adopting_another_teams_key_with_delete_cannot_delete_it(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    key_id, victim_uid = owned_key(kubectl, a, "victim", {"description": "team a's"})
    started = mark(emulator)
    thief = {"keyId": key_id, "deletionPolicy": "Delete", "pendingWindowInDays": 7}
    admitted = kubectl_apply(kubectl, b, "thief", thief)
    assert admitted.returncode == 0, admitted.stderr
    body = wait_for(kubectl, b, "thief", handled, TIMEOUT, "the thief handled")
    kubectl("delete", "kmskey", "thief", "-n", b, "--timeout=90s")
    key = kms_key(emulator, key_id)
    assert key.key_state == "Enabled"
    assert key.tags[OWNER_UID] == victim_uid
    assert writes_to(emulator, key_id, since=started) == []
    assert condition(wait_ready(kubectl, a, "victim"), "Ready")["reason"] == "Available"
    # What the thief was told, at admission and by its conditions.
    assert f"already named by KmsKey {a}/victim" in admitted.stderr  # the webhook's warning
    assert condition(body, "Synced")["reason"] == "KeyClaimed"
    assert f"KmsKey {a}/victim (UID {victim_uid})" in condition(body, "Synced")["message"]
    assert "keyId" not in body["status"]  # nothing recorded: the spec stays correctable


# --- #14 scenario 2: adoption strips the ownership tag ------------------------------------------------------


def test_adopting_a_claimed_key_with_other_tags_changes_no_tag(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    key_id, victim_uid = owned_key(kubectl, a, "tagged", {"tags": {"team": "a"}})
    before = dict(kms_key(emulator, key_id).tags)
    started = mark(emulator)
    apply(kubectl, b, "retagger", {"keyId": key_id, "tags": {"team": "b"}})
    wait_for(kubectl, b, "retagger", handled, TIMEOUT, "the retagger handled")
    time.sleep(7)  # two resync periods: still nothing
    assert kms_key(emulator, key_id).tags == before
    assert before[OWNER_UID] == victim_uid
    assert before["team"] == "a"
    assert writes_to(emulator, key_id, since=started) == []
    assert condition(get(kubectl, b, "retagger"), "Synced")["reason"] == "KeyClaimed"


def test_switching_a_key_to_observe_and_back_keeps_its_claim(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a = teams["team-a"]
    key_id, uid = owned_key(kubectl, a, "toggled", {"description": "mine", "tags": {"env": "prod"}})
    claim = {k: v for k, v in kms_key(emulator, key_id).tags.items() if k.startswith("kms.alicloud.dev/")}
    assert claim[OWNER_UID] == uid
    assert claim[OWNER_NAMESPACE] == a
    assert claim[OWNER_NAME] == "toggled"
    spec = {"description": "mine", "tags": {"env": "prod"}, "keyId": key_id, "managementPolicy": "Observe"}
    result = kubectl_apply(kubectl, a, "toggled", spec)
    assert result.returncode == 0, result.stderr
    wait_for(kubectl, a, "toggled", reason("Synced", "ObserveOnly"), TIMEOUT, "ObserveOnly")
    result = kubectl_apply(
        kubectl, a, "toggled", {**spec, "managementPolicy": "Manage", "description": "back"}
    )
    assert result.returncode == 0, result.stderr
    wait_for(kubectl, a, "toggled", lambda b: describe_description(emulator, key_id) == "back", TIMEOUT)
    time.sleep(7)
    tags = kms_key(emulator, key_id).tags
    assert {k: tags.get(k) for k in claim} == claim
    assert tags["env"] == "prod"
    assert "UntagResources" not in writes_to(emulator, key_id)


def describe_description(emulator: EmulatorHandle, key_id: str) -> str:
    return str(kms_key(emulator, key_id).description)


def test_an_unclaimed_key_gets_the_claim_before_any_other_write_and_keeps_it(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    b = teams["team-b"]
    key_id = create_key(
        kms, description="made by hand", tags=json.dumps([{"TagKey": "team", "TagValue": "a"}])
    )
    started = mark(emulator)
    apply(kubectl, b, "adopter", {"keyId": key_id, "description": "adopted", "tags": {"team": "b"}})
    body = wait_ready(kubectl, b, "adopter", timeout=TIMEOUT)
    tags = kms_key(emulator, key_id).tags
    assert tags[OWNER_UID] == body["metadata"]["uid"]
    assert tags["kms.alicloud.dev/adopted"] == "true"
    assert tags["team"] == "b"
    writes = [c for c in emulator.calls()[started:] if not c.action.startswith(READS)]
    first = next(c for c in writes if key_id in json.dumps(c.params))
    assert first.action == "TagResources"
    assert OWNER_UID in json.dumps(first.params)
    assert body["status"]["ownership"] == "Adopted"
    assert wait_event(kubectl, b, "adopter", "Claimed")["message"].startswith(f"Claimed KMS key {key_id}")


# --- #14 scenario 3: two KmsKeys on one key fight forever ---------------------------------------------------


def test_two_kmskeys_on_one_key_never_fight_the_second_writes_nothing(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    rotation = {"enableAutomaticRotation": True, "rotationInterval": "30d"}
    key_id, _ = owned_key(kubectl, a, "first", {"description": "first", **rotation})
    started = mark(emulator)
    second = {
        "keyId": key_id,
        "description": "second",
        "enableAutomaticRotation": True,
        "rotationInterval": "90d",
    }
    apply(kubectl, b, "second", second)
    wait_for(kubectl, b, "second", handled, TIMEOUT, "the second KmsKey handled")
    time.sleep(15)  # five resync periods of both resources
    assert writes_to(emulator, key_id, since=started) == []
    key = kms_key(emulator, key_id)
    assert (key.description, key.rotation_interval) == ("first", 30 * 86400)
    assert condition(get(kubectl, b, "second"), "Ready")["status"] == "False"
    first = wait_ready(kubectl, a, "first")
    assert condition(first, "Synced")["reason"] == "ReconcileSuccess"
    assert condition(get(kubectl, b, "second"), "Synced")["reason"] == "KeyClaimed"
    assert not [e for e in events(kubectl, a, "first") if e.get("reason") == "DriftCorrected"]


# --- #14 scenario 4: a deletion can be redirected -----------------------------------------------------------


def test_a_blocked_deletion_cannot_be_pointed_at_another_key(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    a = teams["team-a"]
    unrelated = create_key(kms, description="someone else's")
    spec = {"deletionPolicy": "Delete", "pendingWindowInDays": 7, "enableDeletionProtection": True}
    own, _ = owned_key(kubectl, a, "guarded", spec)
    kubectl("delete", "kmskey", "guarded", "-n", a, "--wait=false")
    wait_for(kubectl, a, "guarded", reason("Synced", "DeletionBlocked"), TIMEOUT, "DeletionBlocked")
    redirected = patch(
        kubectl, a, "guarded", {"spec": {"keyId": unrelated, "enableDeletionProtection": False}}
    )
    assert redirected.returncode != 0
    assert (
        "spec.keyId cannot change or be removed once the operator has recorded the key" in redirected.stderr
    )
    # Status is no safer a lever: pointed at the unrelated key, the finalizer still acts on its claim only.
    assert (
        patch(kubectl, a, "guarded", {"status": {"keyId": unrelated}}, "--subresource=status").returncode == 0
    )
    assert patch(kubectl, a, "guarded", {"spec": {"enableDeletionProtection": False}}).returncode == 0
    wait_gone(kubectl, a, "guarded")
    assert kms_key(emulator, unrelated).key_state == "Enabled"
    assert writes_to(emulator, unrelated) == []
    assert kms_key(emulator, own).key_state == "PendingDeletion"


# --- #14 scenario 5: status is trusted blindly --------------------------------------------------------------


def test_a_status_pointed_at_another_resources_key_heals_back_to_its_own(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    theirs, _ = owned_key(kubectl, a, "theirs", {"description": "theirs"})
    mine, _ = owned_key(kubectl, b, "mine", {"description": "mine"})
    started = mark(emulator)
    assert patch(kubectl, b, "mine", {"status": {"keyId": theirs}}, "--subresource=status").returncode == 0
    patch(kubectl, b, "mine", {"spec": {"description": "mine, edited"}})
    wait_for(kubectl, b, "mine", handled, TIMEOUT, "the edit handled")
    # The edit lands on the resource's own key, never on the one its status was pointed at.
    assert kms_key(emulator, mine).description == "mine, edited"
    assert kms_key(emulator, theirs).description == "theirs"
    healed = wait_for(kubectl, b, "mine", lambda x: x["status"].get("keyId") == mine, TIMEOUT, "healed")
    assert condition(healed, "Ready")["status"] == "True"
    corrected = wait_event(kubectl, b, "mine", "StatusCorrected")
    assert theirs in corrected["message"]
    assert mine in corrected["message"]
    assert writes_to(emulator, theirs, since=started) == []
    assert kms_key(emulator, theirs).description == "theirs"
    assert kms_key(emulator, mine).description == "mine, edited"


def test_a_bogus_status_key_id_heals_and_never_advises_deleting_the_kmskey(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    b = teams["team-b"]
    mine, _ = owned_key(kubectl, b, "bogus", {"description": "mine"})
    bogus = "00000000-0000-4000-8000-00000000dead"
    assert patch(kubectl, b, "bogus", {"status": {"keyId": bogus}}, "--subresource=status").returncode == 0
    seen: list[str] = []

    def healed(body: dict[str, Any]) -> bool:
        seen.extend(c.get("message", "") for c in body["status"].get("conditions", []))
        return bool(body["status"].get("keyId") == mine)

    wait_for(kubectl, b, "bogus", healed, TIMEOUT, "status.keyId healed")
    messages = seen + [e.get("message", "") for e in events(kubectl, b, "bogus")]
    assert not [m for m in messages if "delete this KmsKey" in m], messages
    assert kms_key(emulator, mine).key_state == "Enabled"


# --- #14 scenario 6: spec.regionId is not validated ---------------------------------------------------------


def test_a_region_that_is_not_a_region_or_not_served_is_refused_and_nothing_is_created(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, unguarded = teams["team-a"], teams["unguarded"]
    keys_before = len(emulator.backend.keys)
    shape = kubectl_apply(kubectl, a, "nowhere", {"regionId": "not a region!"})
    assert shape.returncode != 0
    assert "spec.regionId" in shape.stderr
    served = kubectl_apply(kubectl, a, "elsewhere", {"regionId": "cn-shanghai"})
    assert served.returncode != 0
    assert REFUSED in served.stderr
    assert f"KMS_ENDPOINT={emulator.endpoint}" in served.stderr
    assert "serves cn-hangzhou only" in served.stderr
    # Admission bypassed (no webhook here): the reconciler refuses the same, and creates nothing.
    apply(kubectl, unguarded, "elsewhere", {"regionId": "cn-shanghai"})
    body = wait_for(kubectl, unguarded, "elsewhere", reason("Synced", "InvalidSpec"), TIMEOUT, "InvalidSpec")
    assert "serves cn-hangzhou only" in condition(body, "Synced")["message"]
    assert "keyId" not in body["status"]
    assert len(emulator.backend.keys) == keys_before
    assert kubectl_apply(kubectl, a, "here", {"regionId": "cn-hangzhou"}).returncode == 0
    assert wait_ready(kubectl, a, "here")["status"]["regionId"] == "cn-hangzhou"


# --- stale claims and other clusters ------------------------------------------------------------------------


def test_a_stale_claim_is_taken_over_only_with_the_annotation_naming_its_old_owner(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], emulator: EmulatorHandle
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    key_id, old_uid = owned_key(kubectl, a, "departed", {"description": "old owner"})
    kubectl("delete", "kmskey", "departed", "-n", a, "--timeout=90s")  # Retain: the key stays, claimed
    started = mark(emulator)
    apply(kubectl, b, "heir", {"keyId": key_id, "description": "new owner"})
    body = wait_for(kubectl, b, "heir", reason("Synced", "KeyClaimed"), TIMEOUT, "KeyClaimed")
    message = condition(body, "Synced")["message"]
    assert "which no longer exists" in message
    assert f"{TAKE_OVER}={old_uid}" in message
    assert writes_to(emulator, key_id, since=started) == []
    kubectl("annotate", "kmskey", "heir", "-n", b, f"{TAKE_OVER}={old_uid}")
    heir = wait_ready(kubectl, b, "heir", timeout=TIMEOUT)
    assert kms_key(emulator, key_id).tags[OWNER_UID] == heir["metadata"]["uid"]
    assert kms_key(emulator, key_id).description == "new owner"
    assert old_uid in wait_event(kubectl, b, "heir", "ClaimTakenOver")["message"]


def test_a_key_claimed_by_another_cluster_is_never_taken_silently(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    b = teams["team-b"]
    foreign = {
        OWNER_UID: "uid-elsewhere",
        OWNER_CLUSTER: "cluster-elsewhere",
        OWNER_NAMESPACE: b,
        OWNER_NAME: "x",
    }
    key_id = create_key(kms, tags=json.dumps([{"TagKey": k, "TagValue": v} for k, v in foreign.items()]))
    started = mark(emulator)
    apply(kubectl, b, "x", {"keyId": key_id, "description": "mine now"})
    body = wait_for(kubectl, b, "x", reason("Synced", "KeyClaimed"), TIMEOUT, "KeyClaimed")
    assert "in cluster cluster-elsewhere" in condition(body, "Synced")["message"]
    assert "another cluster" in condition(body, "Synced")["message"]
    time.sleep(4)
    assert writes_to(emulator, key_id, since=started) == []


# --- the chart's defaults: who may adopt, and whether an adopted key may be deleted -------------------------


def test_by_default_no_namespace_may_adopt_and_the_refusal_names_the_setting(
    default_operator: OperatorProcess,
    kubectl: Kubectl,
    strict: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    key_id = create_key(kms, description="not yours")
    refused = kubectl_apply(kubectl, strict["strict"], "grab", {"keyId": key_id})
    assert refused.returncode != 0
    assert REFUSED in refused.stderr
    assert "tenancy.adoption.namespaces" in refused.stderr
    apply(kubectl, strict["strict-unguarded"], "grab", {"keyId": key_id, "description": "changed"})
    body = wait_for(kubectl, strict["strict-unguarded"], "grab", reason("Synced", "InvalidSpec"), TIMEOUT)
    assert "may not adopt existing KMS keys" in condition(body, "Synced")["message"]
    assert writes_to(emulator, key_id) == []
    assert kms_key(emulator, key_id).description == "not yours"


def test_by_default_an_adopted_key_is_kept_even_by_a_delete_that_got_past_admission(
    default_operator: OperatorProcess,
    kubectl: Kubectl,
    strict: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    delete = {"deletionPolicy": "Delete", "pendingWindowInDays": 7}
    refused = kubectl_apply(kubectl, strict["adopters"], "adopt-delete", {"keyId": "key-x", **delete})
    assert refused.returncode != 0
    assert "tenancy.adoption.allowDelete" in refused.stderr
    # No webhook in adopters-unguarded: adopt (claimed, Adopted), then ask for Delete behind admission's back.
    ns = strict["adopters-unguarded"]
    key_id = create_key(kms, description="adopted")
    apply(kubectl, ns, "kept", {"keyId": key_id})
    assert wait_ready(kubectl, ns, "kept", timeout=TIMEOUT)["status"]["ownership"] == "Adopted"
    apply(kubectl, ns, "kept", {"keyId": key_id, **delete})
    wait_for(kubectl, ns, "kept", reason("Synced", "InvalidSpec"), TIMEOUT, "InvalidSpec")
    kubectl("delete", "kmskey", "kept", "-n", ns, "--timeout=90s")
    assert kms_key(emulator, key_id).key_state == "Enabled"
    assert "ScheduleKeyDeletion" not in writes_to(emulator, key_id)
    retained = [e for e in events(kubectl, ns, "kept") if e.get("reason") == "Retained"]
    assert any("this cluster keeps adopted keys" in e["message"] for e in retained), retained


def test_an_adopted_key_is_deleted_by_delete_where_the_cluster_allows_it(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    a = teams["team-a"]
    key_id = create_key(kms, description="adopted, deletable")
    apply(kubectl, a, "deletable", {"keyId": key_id, "deletionPolicy": "Delete", "pendingWindowInDays": 7})
    wait_ready(kubectl, a, "deletable", timeout=TIMEOUT)
    kubectl("delete", "kmskey", "deletable", "-n", a, "--timeout=90s")
    assert kms_key(emulator, key_id).key_state == "PendingDeletion"


# --- #17: messages that tell the truth, and do what admission then allows --------------------------------


def test_key_not_found_for_a_mistyped_key_id_advises_a_fix_that_admission_accepts(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], kms: KmsClient
) -> None:
    a = teams["team-a"]
    apply(kubectl, a, "typo", {"keyId": "00000000-0000-4000-8000-0000000000aa", "description": "fixed"})
    body = wait_for(kubectl, a, "typo", reason("Ready", "KeyNotFound"), TIMEOUT, "KeyNotFound")
    message = condition(body, "Ready")["message"]
    assert "Correct spec.keyId in place" in message
    real = create_key(kms, description="the right one")
    followed = patch(kubectl, a, "typo", {"spec": {"keyId": real}})
    assert followed.returncode == 0, followed.stderr
    assert wait_ready(kubectl, a, "typo", timeout=TIMEOUT)["status"]["keyId"] == real


def test_not_owned_advises_two_ways_out_and_admission_accepts_both(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    a = teams["team-a"]
    paused = {"kms.alicloud.dev/paused": "true"}
    stray = create_key(kms, description="a key nobody claims")
    for name in ("adopts-it", "gets-its-own"):
        apply(kubectl, a, name, {"description": name}, annotations=paused)
        wait_for(kubectl, a, name, reason("Synced", "Paused"), TIMEOUT, "Paused")
        assert patch(kubectl, a, name, {"status": {"keyId": stray}}, "--subresource=status").returncode == 0
        kubectl("annotate", "kmskey", name, "-n", a, "kms.alicloud.dev/paused-")
        body = wait_for(kubectl, a, name, reason("Ready", "NotOwned"), TIMEOUT, "NotOwned")
        message = condition(body, "Ready")["message"]
        assert "clear status.keyId" in message
        assert f"set spec.keyId: {stray}" in message
    # Way out 1: adopt the key, on this same KmsKey.
    adopted = patch(kubectl, a, "adopts-it", {"spec": {"keyId": stray}})
    assert adopted.returncode == 0, adopted.stderr
    body = wait_ready(kubectl, a, "adopts-it", timeout=TIMEOUT)
    assert kms_key(emulator, stray).tags[OWNER_UID] == body["metadata"]["uid"]
    # Way out 2: clear status.keyId, and the operator creates this KmsKey's own key.
    cleared = patch(kubectl, a, "gets-its-own", {"status": {"keyId": None}}, "--subresource=status")
    assert cleared.returncode == 0, cleared.stderr
    own = wait_ready(kubectl, a, "gets-its-own", timeout=TIMEOUT)["status"]["keyId"]
    assert own != stray
    assert kms_key(emulator, own).description == "gets-its-own"


def test_declaring_an_adopted_keys_own_tags_is_allowed_and_a_refusal_names_the_seed(
    operator: OperatorProcess, kubectl: Kubectl, teams: dict[str, str], kms: KmsClient
) -> None:
    a = teams["team-a"]
    key_id = create_key(kms, tags=json.dumps([{"TagKey": "team", "TagValue": "a"}]))
    apply(kubectl, a, "own-tags", {"keyId": key_id})
    assert wait_ready(kubectl, a, "own-tags", timeout=TIMEOUT)["status"]["tags"] == {"team": "a"}
    same = patch(kubectl, a, "own-tags", {"spec": {"tags": {"team": "a"}}})
    assert same.returncode == 0, same.stderr
    other = patch(kubectl, a, "own-tags", {"spec": {"tags": {"team": "b"}}})
    assert other.returncode != 0
    assert "the seed (Terraform's alicloud_kms_key) makes tags ForceNew" in other.stderr
    assert "KMS cannot change" not in other.stderr


def test_an_adopted_key_that_cannot_be_read_never_reads_as_not_created_yet(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    a, unguarded = teams["team-a"], teams["unguarded"]
    key_id = create_key(kms, description="far away")
    # A region the pinned endpoint does not serve (admission bypassed): refused, and said so.
    apply(kubectl, unguarded, "wrong-region", {"keyId": key_id, "regionId": "cn-shanghai"})
    body = wait_for(kubectl, unguarded, "wrong-region", reason("Ready", "InvalidSpec"), TIMEOUT)
    assert condition(body, "Ready")["message"] == f"the spec is invalid; fix it to adopt KMS key {key_id}"
    # KMS unreachable while adopting.
    emulator.set_fault("DescribeKey", rate=1.0, code="ServiceUnavailableTemporary", status=503)
    try:
        apply(kubectl, a, "unreachable", {"keyId": key_id})
        body = wait_for(
            kubectl, a, "unreachable", reason("Ready", "KmsUnavailable"), TIMEOUT, "KmsUnavailable"
        )
    finally:
        emulator.clear_faults()
    message = condition(body, "Ready")["message"]
    assert "has not been created" not in message
    assert f"KMS key {key_id} (spec.keyId) could not be read in cn-hangzhou" in message
    wait_ready(kubectl, a, "unreachable", timeout=TIMEOUT)


def test_a_key_found_by_its_claim_after_a_lost_status_write_is_announced_and_its_claim_completed(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    kubectl: Kubectl,
    kms: KmsClient,
    crd_installed: list[str],
    tmp_path: Path,
) -> None:
    """#17 item 4: an operator died between CreateKey (as an earlier version made it) and the status write."""
    ns = new_namespace(kubectl, "recovered")
    apply(kubectl, ns, "crashed", {"description": "once"})  # no operator watches this namespace yet
    uid = get(kubectl, ns, "crashed")["metadata"]["uid"]
    key_id = create_key(kms, description="once", tags=json.dumps([{"TagKey": OWNER_UID, "TagValue": uid}]))
    started = mark(emulator)
    process = start(emulator, kubeconfig, tmp_path, "recovering", [ns], [ns])
    try:
        body = wait_ready(kubectl, ns, "crashed", timeout=TIMEOUT)
        announced = wait_event(kubectl, ns, "crashed", "Recovered")
    finally:
        process.stop()
    assert body["status"]["keyId"] == key_id
    assert announced["type"] == "Normal"
    assert f"Took KMS key {key_id} instead of creating a key" in announced["message"]
    assert "never recorded" in announced["message"]
    assert "CreateKey" not in [c.action for c in emulator.calls()[started:]]
    tags = kms_key(emulator, key_id).tags
    assert (tags[OWNER_NAMESPACE], tags[OWNER_NAME]) == (ns, "crashed")
    assert tags[OWNER_CLUSTER]  # the kube-system UID of this cluster


def test_a_key_deleted_outside_advises_only_what_leaves_nothing_behind_and_works(
    operator: OperatorProcess,
    kubectl: Kubectl,
    teams: dict[str, str],
    emulator: EmulatorHandle,
    kms: KmsClient,
) -> None:
    """Last in the module: it moves the emulator's clock past a pending deletion."""
    b = teams["team-b"]
    key_id, _ = owned_key(kubectl, b, "deleted-outside", {"description": "doomed"})
    kms.schedule_key_deletion(kms_models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))
    emulator.advance_clock(8 * 86400)
    body = wait_for(kubectl, b, "deleted-outside", reason("Ready", "KeyNotFound"), TIMEOUT, "KeyNotFound")
    message = condition(body, "Ready")["message"]
    assert "Nothing is left behind" in message
    assert "clear status.keyId" in message
    cleared = patch(kubectl, b, "deleted-outside", {"status": {"keyId": None}}, "--subresource=status")
    assert cleared.returncode == 0, cleared.stderr
    fresh = wait_ready(kubectl, b, "deleted-outside", timeout=TIMEOUT)["status"]["keyId"]
    assert fresh != key_id
    assert describe(kms, fresh).key_state == "Enabled"


# --- the cluster's identity in claims ---------------------------------------------------------------------


def test_an_explicit_cluster_id_names_the_cluster_in_every_claim(
    emulator: EmulatorHandle, kubeconfig: Path, kubectl: Kubectl, crd_installed: list[str], tmp_path: Path
) -> None:
    ns = new_namespace(kubectl, "named-cluster")
    process = start(emulator, kubeconfig, tmp_path, "named", [ns], [ns], KMSKEY_CLUSTER_ID="prod-eu-1")
    try:
        key_id, _ = owned_key(kubectl, ns, "k", {"description": "in prod-eu-1"})
    finally:
        process.stop()
    assert kms_key(emulator, key_id).tags[OWNER_CLUSTER] == "prod-eu-1"


def test_an_operator_that_cannot_read_the_cluster_identity_stops_at_start_naming_the_setting(
    control_plane: Any, emulator: EmulatorHandle, kubectl: Kubectl, crd_installed: list[str], tmp_path: Path
) -> None:
    """No KMSKEY_CLUSTER_ID and no `get` on namespaces/kube-system: no claim without a cluster, ever."""
    from tests.harness.controlplane import write_kubeconfig

    ns = new_namespace(kubectl, "no-identity")
    kubectl("create", "serviceaccount", "bare", "-n", ns)
    token = kubectl("create", "token", "bare", "-n", ns).stdout.strip()
    bare = write_kubeconfig(
        tmp_path / "bare.kubeconfig", control_plane.server, control_plane.ca_cert, user="bare", token=token
    )
    process = OperatorProcess(
        kubeconfig=bare,
        kms_endpoint=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret,
        log_dir=tmp_path,
        name="no-identity",
        kms_ca_file=emulator.ca_file,
        extra_env={"WATCH_NAMESPACES": ns, "KMSKEY_WEBHOOK_ENABLED": "false"},
    )
    with pytest.raises(RuntimeError, match="operator exited early") as stopped:
        process.start(timeout=120)
    assert "KMSKEY_CLUSTER_ID is not set" in str(stopped.value)
    assert "403" in str(stopped.value)
    assert "grant the operator `get` on namespaces/kube-system" in str(stopped.value)
