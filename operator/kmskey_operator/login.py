"""How the operator logs in to Kubernetes: kopf's own credential readers, never the `kubernetes` client.

kopf's default registry logs in through the `kubernetes` client whenever that package is importable, and
imports it (all of its generated API and model modules, about 11 MiB of RSS) just to find out. The operator
therefore runs on a plain registry with this login handler: inside a pod, the ServiceAccount token and CA
with the API server's address from KUBERNETES_SERVICE_HOST/PORT (as client-go's in-cluster config does:
an IP, no DNS lookup); elsewhere the kubeconfig. kopf calls the handler again when a token is refused, so a
rotated ServiceAccount token is picked up. `on_login` hands each connection to kube.py too, which the
operator uses for the API writes it makes outside kopf's handlers (and which logs in again by `connection`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster(
    settings: kopf.OperatorSettings,
    environ: Mapping[str, str] | None = None,
    directory: Path = SERVICE_ACCOUNT_DIR,
) -> kopf.ConnectionInfo | None:
    """The pod's ServiceAccount connection, or None outside a pod."""
    environ = os.environ if environ is None else environ
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token, ca, namespace = directory / "token", directory / "ca.crt", directory / "namespace"
    if not (host and port and token.is_file()):
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(ca) if ca.is_file() else None,
        token=token.read_text().strip() or None,
        default_namespace=namespace.read_text().strip() if namespace.is_file() else None,
        trust_env=settings.networking.trust_env,
    )


def _has_credentials(info: kopf.ConnectionInfo) -> bool:
    return bool(
        info.token or info.certificate_path or info.certificate_data or info.username or info.password
    )


def connection(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo:
    """The pod's ServiceAccount, else the kubeconfig; LoginError when there is neither."""
    found = in_cluster(settings) or kopf.login_with_kubeconfig(settings=settings, **kwargs)
    if found is not None and not _has_credentials(found):
        # An exec plugin or auth provider in the kubeconfig: only the full client can run those.
        found = kopf.login_via_client(settings=settings, **kwargs)
    if found is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: neither a pod's ServiceAccount "
            f"({SERVICE_ACCOUNT_DIR}, KUBERNETES_SERVICE_HOST/PORT) nor a kubeconfig (KUBECONFIG)"
        )
    return found


LoginListener = Callable[[kopf.ConnectionInfo, kopf.OperatorSettings], None]


def register(registry: kopf.OperatorRegistry, on_login: LoginListener | None = None) -> None:
    """This login as `registry`'s kopf login handler; `on_login` also gets every connection it finds."""

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        found = connection(settings, **kwargs)
        if on_login is not None:
            on_login(found, settings)
        return found


def operator_registry(on_login: LoginListener | None = None) -> kopf.OperatorRegistry:
    """A plain kopf registry with this login handler, made kopf's default (so kopf.on.* lands in it too)."""
    registry = kopf.OperatorRegistry()
    kopf.set_default_registry(registry)
    register(registry, on_login)
    return registry
