"""`make demo`'s story, run in `make test` through the same code, so the README's first command cannot rot."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms_emulator.testing import run_emulator
from tests.conftest import Kubectl
from tests.harness import demo
from tests.harness.kms import sdk_client
from tests.harness.operator import OperatorProcess


@pytest.fixture
def demo_operator(
    kubeconfig: Path, crd_installed: list[str], tmp_path: Path, kubectl: Kubectl
) -> Iterator[tuple[OperatorProcess, demo.KmsClient]]:
    with run_emulator(quotas=True, instance_ids=(demo.DEMO_INSTANCE_ID,), tls=True) as emu:
        process = demo.start_operator(kubeconfig, emu, tmp_path)
        try:
            demo._wait_for_webhook(kubectl)
            yield process, sdk_client(emu)
        finally:
            process.stop()


def test_the_demo_story_behaves_as_narrated(
    demo_operator: tuple[OperatorProcess, demo.KmsClient], kubectl: Kubectl, namespace: str
) -> None:
    _, kms = demo_operator
    out = io.StringIO()

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, check=check, input=input)

    demo.run_story(run, kms, namespace, out)
    story = out.getvalue()
    assert "refused" in story
    assert "the KMS key is retained" in story
    assert story.count("==>") == 6
