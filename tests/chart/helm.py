"""Run the pinned helm (installed by `make tools` next to this Python) and read what it renders.

helm's own state (repositories, cache, plugins) goes to a throw-away directory, so tests never read or
write the developer's ~/.config/helm. Nothing here contacts a network address other than 127.0.0.1.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.harness.processes import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "kmskey-operator"
_HELM_HOME = Path(tempfile.mkdtemp(prefix="kmskey-helm-home-"))
atexit.register(shutil.rmtree, _HELM_HOME, ignore_errors=True)  # every test process made one, none removed


class HelmError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}"


def find_helm() -> str:
    beside_python = Path(sys.executable).parent / "helm"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("helm")
    if found is None:
        raise FileNotFoundError("helm not found next to Python or on PATH: run `make tools`")
    return found


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    extra = {
        "HELM_CACHE_HOME": str(_HELM_HOME / "cache"),
        "HELM_CONFIG_HOME": str(_HELM_HOME / "config"),
        "HELM_DATA_HOME": str(_HELM_HOME / "data"),
    }
    argv = [find_helm(), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
        extra["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=child_environment(extra), check=False
    )
    if check and result.returncode != 0:
        raise HelmError(result.returncode, argv, result.stdout, result.stderr)
    return result


def set_args(values: Mapping[str, Any]) -> list[str]:
    """`--set-json path=value` for each flat dotted key, so types survive (lists, numbers, booleans)."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def parse(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def template(
    values: Mapping[str, Any] | None = None, *, release: str = "kms", namespace: str = "kmskey-system"
) -> list[dict[str, Any]]:
    """The objects `helm template` renders for these values (dotted keys); each rendering is done once."""
    key = (json.dumps(values or {}, sort_keys=True), release, namespace)
    if key not in _rendered:
        out = helm("template", release, str(CHART), "--namespace", namespace, *set_args(values or {}))
        _rendered[key] = out.stdout
    return parse(_rendered[key])


_rendered: dict[tuple[str, str, str], str] = {}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator container's env, by name (each entry as rendered: value or valueFrom)."""
    return {entry["name"]: entry for entry in container(objects).get("env", [])}
