"""The operator logs in without the `kubernetes` client: a pod's ServiceAccount, else the kubeconfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kopf

from kmskey_operator.login import in_cluster
from tests.chart.helm import REPO_ROOT


def test_in_a_pod_the_service_account_and_the_service_address_are_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("the-token\n")
    (tmp_path / "ca.crt").write_text("CA")
    (tmp_path / "namespace").write_text("kmskey-system")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    info = in_cluster(kopf.OperatorSettings(), env, tmp_path)
    assert info is not None
    assert info.server == "https://10.96.0.1:443"  # an address, never kubernetes.default.svc (DNS)
    assert info.token == "the-token"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.default_namespace == "kmskey-system"
    ipv6 = in_cluster(kopf.OperatorSettings(), {**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, tmp_path)
    assert ipv6 is not None
    assert ipv6.server == "https://[fd00::1]:443"


def test_outside_a_pod_there_is_no_in_cluster_connection(tmp_path: Path) -> None:
    assert in_cluster(kopf.OperatorSettings(), {}, tmp_path) is None
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(kopf.OperatorSettings(), env, tmp_path) is None  # no token file


def test_setting_up_the_operator_never_imports_the_kubernetes_client() -> None:
    """kopf imports it (≈ 11 MiB RSS) for type shims and to pick a login; the operator hides it from kopf."""
    script = (
        "import sys\n"
        "from kmskey_operator import cli\n"
        "cli.import_kopf_alone()\n"
        "from kmskey_operator import handlers, login\n"
        "from kmskey_operator.settings import Settings\n"
        "registry = handlers.register(Settings.from_env(env={}), login.operator_registry())\n"
        "import kmskey_operator.webhook, kmskey_operator.health, kmskey_operator.metrics\n"
        "import kmskey_operator.kms.gateway, kmskey_operator.reconcile.reconciler\n"
        "import kopf\n"
        "assert kopf.get_default_registry() is registry\n"
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))\n"
        "import kubernetes.client\n"  # still there for the webhook's managed mode
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
