"""What every test module's end does to the session's cluster (tests/conftest.py): no KmsKey outlives it.

`ControlPlane.remove_every` deletes every KmsKey in every namespace, also those whose finalizer no
operator will ever remove (their operator stopped with the module), so that the next module's operator,
which watches the whole cluster, never reconciles them against its own emulator.
"""

from __future__ import annotations

import json

import pytest

from kmskey_operator import names
from tests.conftest import Kubectl
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.k8s


def kmskey(namespace: str, name: str, **metadata: object) -> str:
    return json.dumps(
        {
            "apiVersion": f"{names.GROUP}/{names.VERSION}",
            "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace, **metadata},
            "spec": {"description": name},
        }
    )


def every_kmskey(kubectl: Kubectl) -> list[str]:
    listed = json.loads(kubectl("get", "kmskeys", "-A", "-o", "json").stdout)["items"]
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in listed)


def test_every_kmskey_goes_in_every_namespace_even_one_whose_finalizer_nobody_removes(
    control_plane: ControlPlane, crd_installed: list[str], kubectl: Kubectl, namespace: str
) -> None:
    other = f"{namespace}-b"
    kubectl("create", "namespace", other)
    kubectl("apply", "-f", "-", input=kmskey(namespace, "plain"))
    kubectl("apply", "-f", "-", input=kmskey(other, "finalized", finalizers=[names.FINALIZER]))
    # No operator runs: a deletion alone would leave the finalized one Terminating forever.
    kubectl("delete", "kmskey", "finalized", "-n", other, "--wait=false")
    assert f"{other}/finalized" in every_kmskey(kubectl)

    removed = control_plane.remove_every(names.GROUP, names.VERSION, names.PLURAL)

    assert {f"{namespace}/plain", f"{other}/finalized"} <= set(removed)
    assert every_kmskey(kubectl) == []


def test_a_resource_that_is_not_installed_has_nothing_to_remove(control_plane: ControlPlane) -> None:
    assert control_plane.remove_every("nothing.example.test", "v1", "widgets") == []
