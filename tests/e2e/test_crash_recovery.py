"""Crash safety: a CreateKey whose status write was lost never leads to a second key.

No module-wide operator runs here: the test starts its own, after staging what a crashed one left.
"""

from __future__ import annotations

import json
from pathlib import Path

from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.conftest import Kubectl
from tests.e2e.conftest import OWNER_TAG, apply, create_key, get, wait_ready
from tests.harness.operator import OperatorProcess


def test_a_create_whose_status_write_was_lost_is_found_by_its_ownership_tag(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    kubectl: Kubectl,
    namespace: str,
    kms: KmsClient,
    crd_installed: list[str],
    tmp_path: Path,
) -> None:
    """The operator died between CreateKey and the status write: the restarted one must not create again."""
    apply(kubectl, namespace, "crashed", {"description": "once"})  # no operator runs for this namespace yet
    uid = get(kubectl, namespace, "crashed")["metadata"]["uid"]
    key_id = create_key(
        kms, description="once", tags=json.dumps([{"TagKey": OWNER_TAG, "TagValue": uid}])
    )  # what the dead operator's CreateKey left behind
    emulator.reset_calls()
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret,
        log_dir=tmp_path,
        kms_ca_file=emulator.ca_file,
        extra_env={"KMSKEY_WEBHOOK_ENABLED": "false", "WATCH_NAMESPACES": namespace},
        name="restarted",
    ).start()
    try:
        body = wait_ready(kubectl, namespace, "crashed")
    finally:
        process.stop()
    assert body["status"]["keyId"] == key_id
    assert emulator.call_counts().get("CreateKey", 0) == 0
