"""Scenario 8: several teams share one operator and race, round after round, for each other's keys.

Every tenant namespace owns "home" KmsKeys (each creates its key) that live through the whole run. Each
round, every tenant at once does something hostile or careless to the others: adopts one of their keys
with Delete, rotation, a new description or tags (sometimes in Observe mode), edits or deletes those
adoptions, points one of its own KmsKeys' status at someone else's key, tries a take-over with the
annotation naming a live owner, and races every other tenant for one unclaimed key. The operator runs
with the most permissive tenancy settings (every namespace may adopt, adopted keys may be deleted) and no
webhook: only the claims stand between a tenant and another team's key.

Judged on KMS's call log and state, never on the operator's view:
- foreign_keys_written: keys that got any write not made for their claimant. A home key may only ever get
  UpdateKeyDescription with its owner's own description; a raced-for key only its first claimant's
  claim and description.
- foreign_keys_deleted: home keys scheduled for deletion at all, and raced-for keys scheduled for deletion
  although their claimant said Retain.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi.utils_models import Config

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.chaos.audit import READ_PREFIXES
from tests.chaos.conftest import OperatorFactory, crashes, record, scale
from tests.chaos.kube import ApiError, Kube, condition, poll, wait_all_ready

pytestmark = pytest.mark.chaos

OWNER_UID = "kms.alicloud.dev/owner-uid"
TAKE_OVER = "kms.alicloud.dev/take-over-claim"


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


def home_description(namespace: str, name: str, round_: int) -> str:
    return f"home {namespace}/{name} round {round_}"


def raid_description(what: str, namespace: str) -> str:
    """Every description a raid declares ends with its tenant: the judge reads who wrote it from there."""
    return f"{what} by {namespace}"


class Tenants:
    """The run's bookkeeping: who owns which key, and every raid each tenant made."""

    def __init__(self, kube: Kube, rng: random.Random, namespaces: list[str]) -> None:
        self.kube = kube
        self.rng = rng
        self.namespaces = namespaces
        self.homes: dict[str, tuple[str, str, str]] = {}  # key ID -> (namespace, name, uid)
        self.home_names: dict[str, list[str]] = {ns: [] for ns in namespaces}
        self.raids: dict[str, list[str]] = {ns: [] for ns in namespaces}
        self.raid_policy: dict[tuple[str, str], str] = {}  # (namespace, name) -> deletionPolicy
        self.raid_uids: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name)
        self.free_keys: list[str] = []
        self.counter = 0

    def foreign_home(self, namespace: str) -> str:
        return self.rng.choice([k for k, (ns, _, _) in self.homes.items() if ns != namespace])

    def create_raid(self, namespace: str, spec: dict[str, Any], **metadata: Any) -> str:
        self.counter += 1
        name = f"raid-{self.counter}"
        body = self.kube.create(namespace, name, spec, **metadata)
        self.raids[namespace].append(name)
        self.raid_policy[(namespace, name)] = str(spec.get("deletionPolicy", "Retain"))
        self.raid_uids[body["metadata"]["uid"]] = (namespace, name)
        return name

    def hostile_spec(self, namespace: str, key_id: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "keyId": key_id,
            "description": raid_description(f"raid #{self.counter + 1}", namespace),
        }
        for extra in self.rng.sample(range(6), self.rng.randint(1, 3)):
            if extra == 0:
                spec.update(deletionPolicy="Delete", pendingWindowInDays=7)
            elif extra == 1:
                spec["status"] = "Disabled"
            elif extra == 2:
                spec.update(enableAutomaticRotation=True, rotationInterval=f"{self.rng.randint(7, 700)}d")
            elif extra == 3:
                spec["enableDeletionProtection"] = self.rng.random() < 0.5
            elif extra == 4:
                spec["tags"] = {"team": namespace[-8:], "stolen": "yes"}
            else:
                spec["managementPolicy"] = "Observe"
        return spec

    def act(self, namespace: str, round_: int) -> str:
        """One hostile or careless step of `namespace`; returns what it did (for the failure report)."""
        action = self.rng.choice(["adopt", "adopt", "edit", "delete", "hijack", "take-over", "home-edit"])
        kube = self.kube
        if action == "adopt" or (action in ("edit", "delete") and not self.raids[namespace]):
            key_id = self.foreign_home(namespace)
            self.create_raid(namespace, self.hostile_spec(namespace, key_id))
            return f"{namespace} adopts {key_id}"
        if action == "edit":
            name = self.rng.choice(self.raids[namespace])
            changes: dict[str, Any] = {
                "description": raid_description(f"edited in round {round_}", namespace)
            }
            if self.rng.random() < 0.5:
                changes["status"] = self.rng.choice(["Enabled", "Disabled"])
            if self.rng.random() < 0.3:
                changes["managementPolicy"] = self.rng.choice(["Manage", "Observe"])
            try:
                kube.patch_spec(namespace, name, changes)
            except ApiError as error:  # a raid being deleted may be gone already
                if error.status != 404:
                    raise
            return f"{namespace} edits {name}"
        if action == "delete":
            name = self.raids[namespace].pop(self.rng.randrange(len(self.raids[namespace])))
            kube.delete(namespace, name)
            return f"{namespace} deletes {name}"
        if action == "hijack":
            name = self.rng.choice(self.home_names[namespace])
            target = self.foreign_home(namespace)
            kube.patch_status(namespace, name, {"keyId": target})
            kube.patch_spec(namespace, name, {"description": home_description(namespace, name, round_)})
            return f"{namespace} points {name}'s status at {target}"
        if action == "take-over":
            key_id = self.foreign_home(namespace)
            owner_uid = self.homes[key_id][2]
            spec = {"keyId": key_id, "description": raid_description("take-over", namespace)}
            self.create_raid(namespace, spec, annotations={TAKE_OVER: owner_uid})
            return f"{namespace} claims to take {key_id} over from a live owner"
        name = self.rng.choice(self.home_names[namespace])
        kube.patch_spec(namespace, name, {"description": home_description(namespace, name, round_)})
        return f"{namespace} edits its own {name}"


def test_tenants_racing_for_each_others_keys_never_write_or_delete_a_foreign_key(
    kube: Kube, start_operator: OperatorFactory, namespace: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    tenant_count, homes_each, rounds = scale(3, 4), scale(2, 3), scale(4, 25)
    namespaces = [namespace] + [f"{namespace}-t{i}" for i in range(1, tenant_count)]
    for extra in namespaces[1:]:
        kube.call("POST", "/api/v1/namespaces", {"metadata": {"name": extra}})
    tenants = Tenants(kube, rng, namespaces)
    log: list[str] = []
    with run_emulator(quotas=False, seed=seed) as emulator:
        operator = start_operator(
            emulator,
            ",".join(namespaces),
            name="multi-tenant",
            env={
                "KMSKEY_ADOPTION_NAMESPACES": "*",
                "KMSKEY_ADOPTED_KEY_DELETION": "true",
                "KMSKEY_RESYNC_SECONDS": "2",
                "KMSKEY_RESYNC_JITTER": "0",
            },
        )
        for ns in namespaces:
            for j in range(homes_each):
                name = f"home-{j}"
                kube.create(ns, name, {"description": home_description(ns, name, 0)})
                tenants.home_names[ns].append(name)
        for ns in namespaces:
            for name, body in wait_all_ready(kube, ns, tenants.home_names[ns], timeout=180).items():
                tenants.homes[body["status"]["keyId"]] = (ns, name, body["metadata"]["uid"])
        client = kms_client(emulator)
        started = len(emulator.calls())

        for round_ in range(1, rounds + 1):
            # Every tenant races for the same unclaimed key, at the same moment.
            free = client.create_key(
                kms_models.CreateKeyRequest(description="unclaimed")
            ).body.key_metadata.key_id
            tenants.free_keys.append(free)
            for ns in rng.sample(namespaces, len(namespaces)):
                policy = rng.choice(["Retain", "Delete"])
                spec: dict[str, Any] = {
                    "keyId": free,
                    "description": raid_description(f"race {round_} won", ns),
                }
                if policy == "Delete":
                    spec.update(deletionPolicy="Delete", pendingWindowInDays=7)
                tenants.create_raid(ns, spec)
            for ns in rng.sample(namespaces, len(namespaces)):
                log.append(f"round {round_}: " + tenants.act(ns, round_))
            time.sleep(rng.uniform(0.2, 1.5))

        # Let everything settle: every home KmsKey back on its own key, Ready; then every raid deleted.
        for ns in namespaces:
            bodies = wait_all_ready(kube, ns, tenants.home_names[ns], timeout=240)
            for name, body in bodies.items():
                own = next(k for k, (n, h, _) in tenants.homes.items() if (n, h) == (ns, name))
                assert body["status"]["keyId"] == own, f"{ns}/{name} ended on {body['status']['keyId']}"
        for ns in namespaces:
            for item in kube.list(ns):
                if item["metadata"]["name"].startswith("raid-"):
                    try:
                        kube.delete(ns, item["metadata"]["name"])
                    except ApiError as error:
                        if error.status != 404:
                            raise
        for ns in namespaces:
            poll(
                lambda ns=ns: not raids_left(kube, ns),  # type: ignore[misc]
                timeout=240,
                what=f"every raid in {ns} released",
                describe=lambda ns=ns: json.dumps(raids_left(kube, ns)[:10]),  # type: ignore[misc]
            )
        calls = emulator.calls()[started:]
        with emulator.backend.lock:
            keys = {
                k.key_id: (k.key_state, dict(k.tags), k.description) for k in emulator.backend.keys.values()
            }
        evidence = crashes(operator)

    written, deleted, findings = judge(tenants, calls, keys)
    record(tenant_rounds=rounds, foreign_keys_written=len(written), foreign_keys_deleted=len(deleted))
    # What the run really did, so a pass means something: claims won in the races, owners' own writes.
    writes = [c for c in calls if not c.action.startswith(READ_PREFIXES) and c.status == 200]
    claimed = {
        k
        for k in tenants.free_keys
        for c in writes
        if c.action == "TagResources" and k in json.dumps(c.params)
    }
    owner_writes = [c for c in writes if any(k in json.dumps(c.params) for k in tenants.homes)]
    record(tenant_raids=len(tenants.raid_uids), tenant_namespaces=tenant_count)
    record(tenant_race_keys_claimed=len(claimed), tenant_owner_writes=len(owner_writes))
    assert claimed, "no raced-for key was ever claimed: the scenario did not run"
    assert owner_writes, "no owner ever changed its own key: the scenario did not run"
    record(operator_crashes=len(evidence))
    assert not evidence, evidence
    report = f"seed {seed}; " + "; ".join(findings[:20]) + "\nlast actions:\n" + "\n".join(log[-30:])
    assert not written, report
    assert not deleted, report


def raids_left(kube: Kube, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (b["metadata"]["name"], condition(b, "Synced"))
        for b in kube.list(namespace)
        if b["metadata"]["name"].startswith("raid-")
    ]


def tag_value(params: dict[str, str], key: str) -> str:
    """The value given to tag `key` in a TagResources call's wire parameters (Tag.N.Key / Tag.N.Value)."""
    for name, value in params.items():
        if name.startswith("Tag.") and name.endswith(".Key") and value == key:
            return params.get(name[: -len("Key")] + "Value", "")
    return ""


def judge(
    tenants: Tenants, calls: list[Any], keys: dict[str, tuple[str, dict[str, str], str]]
) -> tuple[set[str], set[str], list[str]]:
    """(keys written for someone else, keys deleted for someone else, what was wrong) from KMS alone."""
    written: set[str] = set()
    deleted: set[str] = set()
    findings: list[str] = []
    first_claim: dict[str, str] = {}  # raced-for key -> the UID of its first claim
    for call in calls:
        if call.action.startswith(READ_PREFIXES) or call.status != 200:
            continue
        text = json.dumps(call.params)
        for key_id, (ns, name, _uid) in tenants.homes.items():
            if key_id not in text:
                continue
            own = call.action == "UpdateKeyDescription" and str(
                call.params.get("Description", "")
            ).startswith(f"home {ns}/{name} ")
            if not own:
                written.add(key_id)
                findings.append(f"home key {key_id} of {ns}/{name} got {call.action}: {text[:200]}")
            if call.action == "ScheduleKeyDeletion":
                deleted.add(key_id)
        for key_id in tenants.free_keys:
            if key_id not in text:
                continue
            if call.action == "TagResources" and OWNER_UID in text:
                uid = tag_value(call.params, OWNER_UID)
                if first_claim.setdefault(key_id, uid) != uid:
                    written.add(key_id)
                    findings.append(f"raced-for key {key_id} claimed again, by {uid}")
            elif call.action == "UpdateKeyDescription":
                claimant = tenants.raid_uids.get(first_claim.get(key_id, ""), ("?", "?"))
                won_by = str(call.params.get("Description", "")).rsplit(" by ", 1)[-1]
                if won_by != claimant[0]:
                    written.add(key_id)
                    findings.append(f"raced-for key {key_id} (claimed by {claimant}) described by {won_by}")
    for key_id in tenants.free_keys:
        state, tags, _ = keys[key_id]
        holder = tenants.raid_uids.get(tags.get(OWNER_UID, ""))
        if state == "PendingDeletion" and (holder is None or tenants.raid_policy.get(holder) != "Delete"):
            deleted.add(key_id)
            findings.append(f"raced-for key {key_id} deleted although its claimant {holder} said Retain")
    for key_id, (ns, name, uid) in tenants.homes.items():
        state, tags, _ = keys[key_id]
        if state != "Enabled" or tags.get(OWNER_UID) != uid:
            written.add(key_id)
            findings.append(
                f"home key {key_id} of {ns}/{name} ended {state} with claim {tags.get(OWNER_UID)}"
            )
    return written, deleted, findings


def test_the_scenarios_own_judge_catches_a_foreign_write() -> None:
    """The judge must be able to fail: a raid's write on a home key, and a second claim, are caught."""
    from kms_emulator.calllog import CallRecord

    tenants = Tenants(Kube.__new__(Kube), random.Random(0), ["a", "b"])
    tenants.homes = {"key-home": ("a", "home-0", "uid-home")}
    tenants.free_keys = ["key-free"]
    tenants.raid_uids = {"uid-r1": ("a", "raid-1"), "uid-r2": ("b", "raid-2")}
    tenants.raid_policy = {("a", "raid-1"): "Retain", ("b", "raid-2"): "Retain"}
    keys = {
        "key-home": ("Enabled", {OWNER_UID: "uid-home"}, "x"),
        "key-free": ("PendingDeletion", {OWNER_UID: "uid-r1"}, "x"),
    }

    def call(action: str, **params: str) -> CallRecord:
        return CallRecord(action=action, access_key_id="k", params=params, status=200, code=None)

    claim = {"ResourceId.1": "key-free", "Tag.1.Key": OWNER_UID, "Tag.1.Value": "uid-r1"}
    clean = [
        call("UpdateKeyDescription", KeyId="key-home", Description="home a/home-0 round 3"),
        call("TagResources", **claim),
        call(
            "UpdateKeyDescription", KeyId="key-free", Description=raid_description("edited in round 2", "a")
        ),
    ]
    assert judge(tenants, clean, {**keys, "key-free": ("Enabled", {OWNER_UID: "uid-r1"}, "x")}) == (
        set(),
        set(),
        [],
    )
    dirty = [
        call("DisableKey", KeyId="key-home"),
        call("UpdateKeyDescription", KeyId="key-free", Description=raid_description("race 1 won", "b")),
        call("TagResources", **{"ResourceId.1": "key-free", "Tag.1.Key": OWNER_UID, "Tag.1.Value": "uid-r1"}),
        call("TagResources", **{"ResourceId.1": "key-free", "Tag.1.Key": OWNER_UID, "Tag.1.Value": "uid-r2"}),
    ]
    written, deleted, _ = judge(tenants, dirty, keys)
    assert written == {"key-home", "key-free"}
    assert deleted == {"key-free"}
