"""`make demo`: the whole product on this machine, no cloud account, told as a story.

    python -m tests.harness.demo

Starts a real kube-apiserver + etcd, the KMS emulator (over HTTPS, as real KMS) and the operator (with its
admission webhook, trusting the emulator's CA), then: applies the seed's example, shows it Ready and the key
as KMS reports it, shows a ForceNew edit refused at admission and a description edit applied in KMS, deletes
the resource and shows that the key is still in KMS. Stops everything it started. Exit code 0 only if every
step behaved as shown.

`run_story` is the story itself; tests/e2e/test_demo.py runs the very same function in `make test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient

from kms_emulator.testing import EmulatorHandle
from tests.harness.kms import sdk_client
from tests.harness.operator import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_EXAMPLE = REPO_ROOT / "examples" / "seed.yaml"
DEMO_INSTANCE_ID = "kst-hzz62ee5fe3b7ifgq5hmg"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


class DemoFailure(AssertionError):
    """A step did not behave as the demo says it does."""


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0

    def heading(self, text: str) -> None:
        self.step += 1
        self.out.write(f"\n==> {self.step}. {text}\n")
        self.out.flush()

    def show(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            self.out.write(f"    {line}\n")
        self.out.flush()

    def ok(self, text: str) -> None:
        self.out.write(f"    ok: {text}\n")
        self.out.flush()


def _describe(kms: KmsClient, key_id: str) -> dict[str, Any]:
    body = kms.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body
    meta: dict[str, Any] = body.key_metadata.to_map()
    return meta


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise DemoFailure(f"timed out after {timeout:.0f}s waiting for {what}")


def run_story(kubectl: Kubectl, kms: KmsClient, namespace: str, out: TextIO) -> None:
    """The demo's steps. Raises DemoFailure when the product does not behave as narrated."""
    say = Narrator(out)
    ns = ("-n", namespace)

    say.heading(
        f"kubectl apply -f {SEED_EXAMPLE.relative_to(REPO_ROOT)}   (the seed's alicloud_kms_key example)"
    )
    say.show(kubectl("apply", *ns, "-f", str(SEED_EXAMPLE)).stdout)

    say.heading("kubectl wait --for=condition=Ready kmskey/seed; kubectl get kmskeys")
    waited = kubectl("wait", *ns, "--for=condition=Ready", "kmskey/seed", "--timeout=90s", check=False)
    if waited.returncode != 0:
        raise DemoFailure(f"the KmsKey did not become Ready: {waited.stderr.strip()}")
    say.show(kubectl("get", *ns, "kmskeys").stdout)
    body = json.loads(kubectl("get", *ns, "kmskey", "seed", "-o", "json").stdout)
    key_id = body["status"]["keyId"]

    say.heading(f"DescribeKey {key_id} through the official Alibaba Cloud SDK")
    meta = _describe(kms, key_id)
    shown = {
        k: meta.get(k)
        for k in (
            "KeyId",
            "KeyState",
            "KeySpec",
            "KeyUsage",
            "Description",
            "AutomaticRotation",
            "RotationInterval",
            "DKMSInstanceId",
            "ProtectionLevel",
        )
    }
    say.show(json.dumps(shown, indent=2))
    expected = {
        "KeyState": "Enabled",
        "AutomaticRotation": "Enabled",
        "RotationInterval": "604800s",
        "Description": "key description example",
        "DKMSInstanceId": DEMO_INSTANCE_ID,
    }
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        raise DemoFailure(f"KMS does not hold the seed's state: {wrong}")
    say.ok("KMS holds the key exactly as the seed describes it")

    say.heading("kubectl patch: change keySpec (ForceNew) -> refused by the admission webhook")
    refused = kubectl(
        "patch", *ns, "kmskey", "seed", "--type=merge", "-p", '{"spec":{"keySpec":"Aliyun_SM4"}}', check=False
    )
    say.show(refused.stderr or refused.stdout)
    if refused.returncode == 0 or "keySpec" not in refused.stderr:
        raise DemoFailure("the ForceNew change to keySpec was not refused with a message naming keySpec")
    say.ok("refused at `kubectl` time, with the field and what to do instead")

    say.heading("kubectl patch: change the description -> UpdateKeyDescription in KMS")
    kubectl(
        "patch", *ns, "kmskey", "seed", "--type=merge", "-p", '{"spec":{"description":"rotated by the demo"}}'
    )
    _wait(
        "the new description in KMS",
        lambda: _describe(kms, key_id).get("Description") == "rotated by the demo",
    )
    say.show(f"DescribeKey -> Description: {_describe(kms, key_id)['Description']!r}")
    say.ok("the description changed in KMS")

    say.heading(
        "kubectl delete kmskey seed   (deletionPolicy Retain: the seed says Terraform cannot destroy it)"
    )
    say.show(kubectl("delete", *ns, "kmskey", "seed", "--timeout=60s").stdout)
    state = _describe(kms, key_id).get("KeyState")
    say.show(f"DescribeKey {key_id} -> KeyState: {state}")
    if state != "Enabled":
        raise DemoFailure(f"the key should still exist and be Enabled after the delete, but it is {state}")
    say.ok("the resource is gone; the KMS key is retained")


def main() -> int:
    """Start everything, tell the story, stop everything."""
    from kms_emulator.testing import run_emulator
    from tests.harness.controlplane import ControlPlane, ControlPlaneError, run_kubectl

    kube_bin = os.environ.get("KUBE_BIN", "")
    out = sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="kmskey-demo-"))
    out.write(
        "==> starting a local control plane (etcd + kube-apiserver), the KMS emulator and the operator\n"
    )
    out.flush()
    try:
        with (
            ControlPlane(kube_bin) as plane,
            run_emulator(quotas=True, instance_ids=(DEMO_INSTANCE_ID,), tls=True) as emu,
        ):

            def kubectl(
                *args: str, check: bool = True, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
                return run_kubectl(plane.kubeconfig, *args, check=check, input=input, timeout=120)

            kubectl("apply", "-f", str(REPO_ROOT / "crds"))
            kubectl("wait", "--for=condition=Established", "crd/kmskeys.kms.alicloud.dev", "--timeout=60s")
            operator = start_operator(plane.kubeconfig, emu, workdir)
            try:
                out.write(
                    f"    kube-apiserver {plane.server}, KMS emulator {emu.url}, operator log "
                    f"{operator.log_path}\n"
                )
                kubectl("create", "namespace", "demo")
                _wait_for_webhook(kubectl)
                run_story(kubectl, sdk_client(emu), "demo", out)
            finally:
                operator.stop()
    except (DemoFailure, ControlPlaneError) as error:
        out.write(f"\nDEMO FAILED: {error}\n(logs in {workdir})\n")
        return 1
    out.write("\n==> done: everything the demo started has been stopped. `make test` runs this story too.\n")
    return 0


def start_operator(kubeconfig: Path, emu: EmulatorHandle, log_dir: Path) -> OperatorProcess:
    """The operator as the demo runs it: against the emulator (over HTTPS when it serves TLS, trusting its
    CA), writing its own webhook configuration."""
    return OperatorProcess(
        kubeconfig=kubeconfig,
        kms_endpoint=emu.endpoint,
        access_key_id=emu.access_key_id,
        access_key_secret=emu.access_key_secret,
        log_dir=log_dir,
        kms_ca_file=emu.ca_file,
        extra_env={"KMSKEY_WEBHOOK_MANAGED": "kmskey-operator-demo", "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true"},
    ).start()


def _wait_for_webhook(kubectl: Kubectl) -> None:
    """The operator writes its ValidatingWebhookConfiguration once it serves; wait for it."""
    _wait(
        "the admission webhook configuration",
        lambda: (
            kubectl("get", "validatingwebhookconfiguration", "kmskey-operator-demo", check=False).returncode
            == 0
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
