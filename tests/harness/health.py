"""Judge objects the way GitOps tools do: kstatus (Flux, kpt) through the real Go library, and Argo CD's
Lua health check (deploy/argocd/kms.alicloud.dev/KmsKey/health.lua) run by a real Lua interpreter.

kstatus runs as `kstatus` from GO_TOOLS (hack/build-go-tools.sh builds it from sigs.k8s.io/cli-utils and
caches it; `make test` exports GO_TOOLS). The Lua runs in lupa's Lua 5.1, the language version of the
gopher-lua interpreter Argo CD embeds, with `obj` set to the object as Argo CD does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

from tests.harness.processes import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGOCD_CHECK = REPO_ROOT / "deploy" / "argocd" / "kms.alicloud.dev" / "KmsKey"
HEALTH_LUA = ARGOCD_CHECK / "health.lua"


class ToolMissing(RuntimeError):
    pass


def go_tools() -> Path:
    """The directory with kstatus and helm-docs: $GO_TOOLS, else what hack/build-go-tools.sh prints."""
    configured = os.environ.get("GO_TOOLS")
    if configured:
        return Path(configured)
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-go-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        env=child_environment(),
    )
    found = re.search(r"^GO_TOOLS=(.+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not found:
        raise ToolMissing(f"hack/build-go-tools.sh failed (run `make go-tools`):\n{result.stderr[-3000:]}")
    os.environ["GO_TOOLS"] = found.group(1)
    return Path(found.group(1))


def kstatus(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """kstatus's verdict ({namespace, name, status, message}) for each object, in order."""
    binary = go_tools() / "kstatus"
    result = subprocess.run(
        [str(binary)],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kstatus failed: {result.stderr}")
    verdicts: list[dict[str, str]] = json.loads(result.stdout)
    return verdicts


def argocd_health(obj: Mapping[str, Any], script: Path = HEALTH_LUA) -> dict[str, str]:
    """What Argo CD's health check returns for `obj`: {"status": ..., "message": ...}."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(script.read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON values as Argo CD hands them to Lua: objects and arrays become tables (arrays 1-based)."""
    if isinstance(value, Mapping):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value
