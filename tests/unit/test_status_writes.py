"""What the kopf layer writes: changed status fields only, a rare heartbeat, kopf's diff base in status."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kopf

from kmskey_operator import handlers, names, statuspatch
from kmskey_operator.watched import WatchedBodies, compact

NOW = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)
CONDITIONS = [{"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "x"}]
CURRENT = {
    "keyId": "k1",
    "keyState": "Enabled",
    "conditions": CONDITIONS,
    "lastSyncTime": "2026-01-02T11:00:00Z",
}


def desired(**fields: Any) -> dict[str, Any]:
    return {
        "keyId": "k1",
        "keyState": "Enabled",
        "deleteDate": None,
        "conditions": CONDITIONS,
        "lastSyncTime": "2026-01-02T12:00:00Z",
        **fields,
    }


def test_a_drift_check_that_finds_nothing_new_writes_nothing() -> None:
    assert statuspatch.changes(CURRENT, desired(), heartbeat_seconds=6 * 3600, now=NOW) == {}


def test_a_changed_field_is_written_with_the_sync_time() -> None:
    patch = statuspatch.changes(CURRENT, desired(keyState="Disabled"), heartbeat_seconds=6 * 3600, now=NOW)
    assert patch == {"keyState": "Disabled", "lastSyncTime": "2026-01-02T12:00:00Z"}


def test_a_field_gone_in_kms_is_removed() -> None:
    patch = statuspatch.changes({**CURRENT, "deleteDate": "d"}, desired(), heartbeat_seconds=60, now=NOW)
    assert patch["deleteDate"] is None


def test_the_sync_time_alone_is_written_once_it_is_older_than_the_heartbeat() -> None:
    assert statuspatch.changes(CURRENT, desired(), heartbeat_seconds=3600, now=NOW) == {
        "lastSyncTime": "2026-01-02T12:00:00Z"
    }
    assert statuspatch.changes({**CURRENT, "lastSyncTime": None}, desired(), heartbeat_seconds=3600, now=NOW)


def test_watched_bodies_keep_what_a_reconcile_reads_and_little_else() -> None:
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {
            "name": "k",
            "namespace": "ns",
            "uid": "u1",
            "generation": 3,
            "resourceVersion": "42",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}] * 5,
            "annotations": {
                names.PAUSED_ANNOTATION: "true",
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 2000 + "}",
                handlers.LEGACY_DIFF_BASE_ANNOTATION: "{}",
            },
        },
        "spec": {"description": "d"},
        "status": {"keyId": "k1", "kopf": {"last-handled-configuration": "{" + "y" * 500 + "}"}},
    }
    store = WatchedBodies(dropped_status=["kopf"])
    store.put(body)
    kept = store.get("u1")
    assert kept is not None
    assert kept["metadata"] == {
        "name": "k",
        "namespace": "ns",
        "uid": "u1",
        "generation": 3,
        "resourceVersion": "42",
        "annotations": {names.PAUSED_ANNOTATION: "true"},
    }
    assert kept["spec"] == {"description": "d"}
    assert kept["status"] == {"keyId": "k1"}
    assert len(compact(body, dropped_status=["kopf"])) < 400
    store.forget("u1")
    assert store.get("u1") is None


def kopf_body(**status: Any) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "kms.alicloud.dev/v1alpha1",
            "kind": "KmsKey",
            "metadata": {
                "name": "k",
                "namespace": "ns",
                "uid": "u1",
                "annotations": {names.PAUSED_ANNOTATION: "true", "team": "a"},
            },
            "spec": {"description": "d"},
            "status": status,
        }
    )


def test_the_diff_base_goes_to_status_and_leaves_out_the_operators_own_annotations() -> None:
    storage = handlers.DiffBaseInStatus()
    body = kopf_body()
    essence = storage.build(body=body)
    assert essence == {"spec": {"description": "d"}, "metadata": {"annotations": {"team": "a"}}}
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    assert set(patch) == {"status"}  # no metadata patch of its own
    stored = patch["status"]["kopf"]["last-handled-configuration"]
    assert json.loads(stored) == essence
    assert storage.fetch(body=kopf_body(kopf={"last-handled-configuration": stored})) == essence


def test_a_diff_base_an_earlier_version_kept_in_an_annotation_is_read_then_moved() -> None:
    legacy = kopf.Body(
        {
            **kopf_body(),
            "metadata": {
                "name": "k",
                "namespace": "ns",
                "uid": "u1",
                "annotations": {handlers.LEGACY_DIFF_BASE_ANNOTATION: '{"spec":{"description":"d"}}\n'},
            },
        }
    )
    storage = handlers.DiffBaseInStatus()
    assert storage.fetch(body=legacy) == {"spec": {"description": "d"}}
    patch = kopf.Patch()
    storage.store(body=legacy, patch=patch, essence={"spec": {"description": "d"}})
    assert patch["metadata"]["annotations"] == {handlers.LEGACY_DIFF_BASE_ANNOTATION: None}


def test_handler_progress_adds_no_marker_annotation() -> None:
    storage = handlers.ProgressInAnnotations(prefix=names.GROUP)
    body = kopf_body()
    patch = kopf.Patch()
    storage.store(key="reconcile-create", record={"started": "t"}, body=body, patch=patch)
    storage.purge(key="reconcile-create", body=body, patch=patch)
    # kopf's own storage would leave `kms.alicloud.dev/kopf-managed: yes`: a metadata patch per object.
    assert not patch
