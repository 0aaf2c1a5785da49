"""`make dev-up` / `dev-status` / `dev-down` as a human uses them: one environment file that names each
variable once and works with kubectl, a status that shows it, and a down that leaves nothing running."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.harness import devenv
from tests.harness.controlplane import run_kubectl
from tests.harness.processes import ProcessRecord


def env_lines(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        (unquoted,) = shlex.split(value) or [""]
        pairs.append((name, unquoted))
    return pairs


def test_dev_up_writes_each_variable_once_and_dev_down_stops_what_it_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert os.environ.get("KUBE_BIN"), "the dev environment needs KUBE_BIN (run `make control-plane`)"
    dev_dir = tmp_path / "dev"
    dev_dir.mkdir()
    records: list[ProcessRecord] = []
    try:
        assert devenv.up(dev_dir) == 0
        records = devenv._read_records(dev_dir)
        pairs = env_lines(dev_dir / "env")
        names = [name for name, _ in pairs]
        assert sorted(names) == sorted(set(names)), (dev_dir / "env").read_text()
        env = dict(pairs)
        assert {"KUBECONFIG", "KMS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID"} <= set(env)
        assert env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] == "true"
        listed = run_kubectl(Path(env["KUBECONFIG"]), "get", "kmskeys", "-A", "-o", "name")
        assert listed.returncode == 0

        capsys.readouterr()
        assert devenv.status(dev_dir) == 0
        shown = capsys.readouterr().out
        for name in names:
            assert shown.count(f"\n{name}=") + shown.startswith(f"{name}=") == 1, shown
        assert {r.name for r in records} >= {"etcd", "kube-apiserver", "kms-emulator", "operator"}
    finally:
        devenv.down(dev_dir)
    assert [r.name for r in records if r.alive()] == []
    assert not (dev_dir / "env").exists()
