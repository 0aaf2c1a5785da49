"""Read one live KmsKey from the Kubernetes API (kubeconfig, else in-cluster config), for `plan`."""

from __future__ import annotations

import os
from typing import Any

from kmskey_operator import names


class ClusterError(RuntimeError):
    """The live resource cannot be read; the message says which and why."""


def parse_ref(ref: str) -> tuple[str, str]:
    """`NAMESPACE/NAME` -> (namespace, name)."""
    namespace, _, name = ref.partition("/")
    if not namespace or not name or "/" in name:
        raise ClusterError(f"--from-cluster {ref!r}: write NAMESPACE/NAME, for example default/my-key")
    return namespace, name


def read_kmskey(ref: str) -> dict[str, Any]:
    """The live body of KmsKey `NAMESPACE/NAME`, with its status."""
    namespace, name = parse_ref(ref)
    # Imported here: only --from-cluster needs the Kubernetes client.
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = client.CustomObjectsApi(_api_client())
    try:
        body = api.get_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, name)
    except ApiException as error:
        if error.status == 404:
            raise ClusterError(f"KmsKey {namespace}/{name} not found") from None
        raise ClusterError(f"reading KmsKey {namespace}/{name}: {error.status} {error.reason}") from None
    except (OSError, HTTPError) as error:  # connection refused, DNS, TLS
        raise ClusterError(f"reading KmsKey {namespace}/{name}: {error}") from None
    if not isinstance(body, dict):
        raise ClusterError(f"KmsKey {namespace}/{name}: unexpected answer from the API server")
    return body


def _api_client() -> Any:
    """A client for KUBECONFIG (read here: the library reads it only at import), else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        if os.environ.get("KUBECONFIG") or os.path.exists(path):
            return config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    except ConfigException as error:
        raise ClusterError(f"no usable Kubernetes configuration ({path}, or in-cluster): {error}") from None
