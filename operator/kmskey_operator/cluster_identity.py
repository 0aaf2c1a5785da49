"""Which cluster this is, for the claims the operator writes: KMSKEY_CLUSTER_ID, or the kube-system UID.

Two clusters sharing one Alibaba Cloud account must never take each other's keys, so every claim names its
cluster. An explicit KMSKEY_CLUSTER_ID wins; otherwise the UID of the `kube-system` namespace, which every
cluster has, never changes while the cluster lives, and differs between clusters. It is read once, before
kopf starts (kopf's own client logs in only after the startup handlers), through kube.py with login.py's
connection: the same credentials the operator runs with, and never the `kubernetes` package. The chart
grants `get` on that one namespace only. An operator that cannot read it stops at start, naming the
setting, rather than write claims without a cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from kmskey_operator.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

IDENTITY_NAMESPACE = "kube-system"


def resolve(settings: Settings, *, attempts: int = 6, pause_seconds: float = 3.0) -> Settings:
    """`settings` with `cluster_id` filled in; raises SettingsError when it cannot be found out.

    An unreachable API server (it may still be starting) is asked again, with growing pauses; a refusal
    (401, 403, 404) is final.
    """
    if settings.cluster_id:
        return settings
    import kopf

    from kmskey_operator import login
    from kmskey_operator.kube import KubeApi, KubeApiError

    how = (
        f"set KMSKEY_CLUSTER_ID (chart value tenancy.clusterId), or grant the operator `get` on "
        f"namespaces/{IDENTITY_NAMESPACE}"
    )
    kopf_settings = kopf.OperatorSettings()
    try:
        connection = login.connection(kopf_settings)
    except kopf.LoginError as error:
        raise SettingsError(f"KMSKEY_CLUSTER_ID is not set and {error}; {how}") from None

    async def read() -> str:
        api = KubeApi()
        api.use(connection, kopf_settings)
        try:
            namespace = await api.request("GET", f"/api/v1/namespaces/{IDENTITY_NAMESPACE}")
        finally:
            await api.close()
        return str((namespace.get("metadata") or {}).get("uid") or "")

    problem = ""
    for attempt in range(attempts):
        try:
            uid = asyncio.run(read())
        except KubeApiError as error:
            problem = str(error)
            if error.status in (401, 403, 404):
                break
        else:
            if uid:
                logger.info("cluster identity for claims: the %s namespace's UID %s", IDENTITY_NAMESPACE, uid)
                return dataclasses.replace(settings, cluster_id=uid)
            problem = "it has no UID"
        if attempt + 1 < attempts:
            time.sleep(pause_seconds * (attempt + 1))
    raise SettingsError(
        f"KMSKEY_CLUSTER_ID is not set and the UID of the {IDENTITY_NAMESPACE} namespace could not be read "
        f"({problem}); {how}"
    )
