"""Fixtures for end-to-end tests: the real operator, the KMS emulator and the real API server together.

KMS is reached over HTTPS, as real KMS is: the emulator serves TLS with its own CA, the operator trusts that
CA through its extra-CA setting (KMSKEY_KMS_CA_BUNDLE), and the `kms` client verifies it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.calllog import CallRecord
from kms_emulator.testing import EmulatorHandle, run_emulator
from kmskey_operator import names
from tests.conftest import Kubectl
from tests.harness.kms import sdk_client
from tests.harness.operator import OperatorProcess


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(quotas=False, tls=True) as emu:
        yield emu


def operator_on(
    emulator: EmulatorHandle, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> OperatorProcess:
    """An operator process, not started, on this API server and emulator, trusting its CA; `env` added."""
    return OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret,
        log_dir=tmp_path_factory.mktemp("operator"),
        kms_ca_file=emulator.ca_file,
        extra_env=env,
    )


@pytest.fixture(scope="module")
def operator(
    emulator: EmulatorHandle,
    kubeconfig: Path,
    crd_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = operator_on(
        emulator,
        kubeconfig,
        tmp_path_factory,
        {
            "KMSKEY_WEBHOOK_ENABLED": "false",
            "KMSKEY_RESYNC_SECONDS": "3",
            "KMSKEY_RESYNC_JITTER": "0",
        },
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def kms(emulator: EmulatorHandle) -> KmsClient:
    """The official SDK, pointed at the emulator over HTTPS: how tests look at KMS as a user would."""
    return sdk_client(emulator)


def apply(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any], **meta: Any) -> None:
    body = {
        "apiVersion": "kms.alicloud.dev/v1alpha1",
        "kind": "KmsKey",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": spec,
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl("get", "kmskey", name, "-n", namespace, "-o", "json").stdout)
    return result


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for entry in body.get("status", {}).get("conditions", []):
        if entry.get("type") == type_:
            return dict(entry)
    return {}


def wait_for(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
    what: str = "condition",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = get(kubectl, namespace, name)
        if predicate(body):
            return body
        time.sleep(0.2)
    raise AssertionError(
        f"{namespace}/{name}: {what} not reached in {timeout}s; last body:\n{json.dumps(body, indent=1)}"
    )


def wait_ready(kubectl: Kubectl, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(
        kubectl,
        namespace,
        name,
        lambda b: (
            condition(b, "Ready").get("status") == "True"
            and condition(b, "Synced").get("status") == "True"
            and b["status"].get("observedGeneration") == b["metadata"].get("generation")
        ),
        timeout,
        "Ready=True and Synced=True",
    )


OWNER_TAG = names.OWNER_TAG_KEY
READ_PREFIXES = ("Describe", "List", "Get")


def creates_for(emulator: EmulatorHandle, *uids: str) -> list[CallRecord]:
    """CreateKey calls for these KmsKeys (their ownership tag names them), or for no KmsKey at all.

    The module's operator serves every KmsKey of the module, so a test counts only the creates of its own
    resources; a create with no ownership tag is nobody's, and so counted against every test.
    """
    return [
        c
        for c in emulator.calls()
        if c.action == "CreateKey"
        and (OWNER_TAG not in json.dumps(c.params) or any(uid in json.dumps(c.params) for uid in uids))
    ]


def describe(kms: KmsClient, key_id: str) -> kms_models.DescribeKeyResponseBodyKeyMetadata:
    """The key as KMS reports it, through the official SDK."""
    return kms.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata


def create_key(kms: KmsClient, **kwargs: object) -> str:
    """A key made outside the operator, as a user with the SDK would."""
    body = kms.create_key(kms_models.CreateKeyRequest(**kwargs)).body  # type: ignore[arg-type]
    return str(body.key_metadata.key_id)
