"""reconcile/plan.py created_metadata: a create preview yields the same follow-ups the reconciler makes."""

from __future__ import annotations

from kmskey_operator import claims, model
from kmskey_operator.reconcile import plan
from kmskey_operator.reconcile.diff import diff

CLAIM = claims.claim_tags(claims.Claimant("c", "ns", "name", "uid-1"), adopted=False)


def preview(spec: model.KmsKeySpec) -> list[str]:
    create = plan.create_call(spec, CLAIM)
    observed = plan.observed_after_create(spec, plan.created_metadata(create, "key-new"), CLAIM)
    return [c.action for c in plan.update_calls(diff(spec, observed, created=True), spec, observed, "r")]


def test_created_metadata_mirrors_the_create_parameters() -> None:
    spec = model.parse_spec(
        {
            "description": "d",
            "enableAutomaticRotation": True,
            "rotationInterval": "7d",
            "keySpec": "Aliyun_SM4",
        }
    )
    meta = plan.created_metadata(plan.create_call(spec, CLAIM), "key-new")
    assert meta.key_id == "key-new"
    assert meta.key_state == "Enabled"
    assert meta.key_spec == "Aliyun_SM4"
    assert meta.description == "d"
    assert meta.automatic_rotation == "Enabled"
    assert meta.rotation_interval == "604800s"
    assert meta.deletion_protection == "Disabled"


def test_an_external_key_is_created_pending_import() -> None:
    spec = model.parse_spec({"origin": "EXTERNAL"})
    assert plan.created_metadata(plan.create_call(spec, CLAIM), "k").key_state == "PendingImport"


def test_everything_create_key_accepts_needs_no_follow_up() -> None:
    spec = model.parse_spec(
        {"description": "d", "enableAutomaticRotation": True, "rotationInterval": "30d", "tags": {"a": "b"}}
    )
    assert preview(spec) == []


def test_disabled_and_protected_keys_need_follow_ups_in_the_reconcilers_order() -> None:
    spec = model.parse_spec({"status": "Disabled", "enableDeletionProtection": True})
    assert preview(spec) == ["SetDeletionProtection", "DisableKey"]


def test_enabling_an_external_key_waits_for_key_material() -> None:
    spec = model.parse_spec({"origin": "EXTERNAL", "status": "Enabled"})
    create = plan.create_call(spec, CLAIM)
    observed = plan.observed_after_create(spec, plan.created_metadata(create, "k"), CLAIM)
    changes = diff(spec, observed, created=True)
    assert [b.reason for b in changes.blocked] == ["KeyMaterialPending"]
    assert plan.update_calls(changes, spec, observed, "r") == []
