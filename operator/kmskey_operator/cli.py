"""`kmskey-operator`: run the operator (`run`, the default), or inspect KMS (`plan`, `import`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from kmskey_operator.settings import Settings, SettingsError, add_arguments, flags_from
from kmskey_operator.tools import importer, plan


def import_kopf_alone() -> None:
    """Import kopf with the `kubernetes` client hidden from it.

    When that client is installed kopf imports it at once (type shims; its default registry, to choose a
    login): every generated API and model module, about 11 MiB of RSS that the operator never uses, since it
    logs in through login.py and writes through kube.py. Afterwards `kubernetes` imports normally again
    (nothing in the operator process imports it).
    """
    if "kopf" in sys.modules or "kubernetes" in sys.modules:
        return
    sys.modules["kubernetes"] = None  # type: ignore[assignment]  # `import kubernetes` raises ImportError
    try:
        import kopf  # noqa: F401
    finally:
        del sys.modules["kubernetes"]


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import_kopf_alone()
    import kopf
    from kopf._core.engines import peering  # kopf.run() takes an Identity but kopf does not export the type

    from kmskey_operator import cluster_identity, directory, handlers, identity, login, logs
    from kmskey_operator.kms.gateway import KmsGateway
    from kmskey_operator.kube import KubeApi
    from kmskey_operator.reconcile.reconciler import Reconciler

    settings = Settings.from_env(flags=flags_from(args))
    if args.namespace:
        settings = dataclasses.replace(settings, namespaces=tuple(args.namespace))
    logs.configure(settings)
    settings = cluster_identity.resolve(settings)  # the cluster named in claims; refuses to start without one

    from kmskey_operator.kms import sts

    # STS through the credentials library trusts KMSKEY_KMS_CA_BUNDLE too (it has no CA option of its own).
    sts.trust_extra_ca(settings.kms_ca_bundle)
    # Not kopf's default registry, which imports the `kubernetes` client only to choose a login (login.py).
    # kube.py, the operator's own API access, uses the same connection as kopf.
    kube = KubeApi(relogin=login.connection)
    registry = handlers.register(settings, login.operator_registry(on_login=kube.use))
    directory.register(registry)
    webhook_enabled = os.environ.get("KMSKEY_WEBHOOK_ENABLED", "true").lower() != "false"
    if webhook_enabled:
        import kmskey_operator.webhook  # noqa: F401  (registers the validating admission handler)

    from kmskey_operator import health, heartbeat, memory, metrics, provider_configs
    from kmskey_operator.accounts.kube import KubeReader
    from kmskey_operator.accounts.registry import Registry

    gateway = KmsGateway(settings, observer=metrics.observe_kms_call)
    # Provider configs: which account, credentials and rate limiter serve each KmsKey (accounts/).
    reader = KubeReader(kube)
    accounts = Registry(settings, reader=reader, operator_gateway=gateway, observer=metrics.observe_kms_call)
    checker = provider_configs.StatusChecker(
        accounts,
        provider_configs.status_writer(reader),
        interval=settings.provider_config_check_seconds,
        retry=settings.provider_config_retry_seconds,
    )
    provider_configs.register(registry, accounts, checker)
    reconciler = Reconciler(gateway, settings, accounts=accounts)
    runtime = handlers.Runtime(settings=settings, reconciler=reconciler, kube=kube)
    accounts.waiting.on_usable = runtime.wake  # a fixed config's KmsKeys reconcile now (accounts/waiting.py)
    # The probes are served from a thread of their own and report the main loop's heartbeat (health.py).
    loop_heartbeat = heartbeat.LoopHeartbeat(
        stall_seconds=settings.liveness_stall_seconds, on_lag=metrics.observe_loop_lag
    )
    metrics.track_heartbeat(loop_heartbeat.waiting)
    readiness = health.Readiness(webhook_enabled=webhook_enabled, heartbeat=loop_heartbeat)
    probes = health.ProbeServer(
        loop_heartbeat,
        readiness,
        host=settings.health_host,
        health_port=settings.health_port,
        ready_port=settings.ready_port,
    )
    metrics.track_peering(peering=settings.peering_name is not None)
    metrics.on_activity(runtime.set_active)
    background: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        loop_heartbeat.attach()  # the probes' ticks go to this loop (kopf's) from now on
        # kopf hands every handler its indices; the reconciler asks them whether a claimant still exists.
        runtime.reconciler.liveness = directory.Directory.from_kwargs(
            kwargs, namespaces=runtime.settings.namespaces
        )
        handlers.configure_kopf(settings, runtime.settings)
        if webhook_enabled:
            from kmskey_operator import webhook

            webhook.configure_admission(settings, webhook.WebhookSettings.from_env(), kube)
            settings.admission.server = readiness.track_webhook(settings.admission.server)
        metrics.start_server(runtime.settings.metrics_port, runtime.settings.metrics_host)
        background.append(asyncio.create_task(runtime.scheduler.run_forever(), name="resync scheduler"))
        # After a wave of reconciles, hand the memory they freed back to the OS (see memory.py).
        background.append(
            asyncio.create_task(
                memory.release_after_waves(
                    lambda: runtime.reconciles_started, running=lambda: runtime.reconciles_running
                )
            )
        )
        background.append(asyncio.create_task(checker.run()))

    @kopf.on.cleanup(registry=registry)
    async def stop_background(**_: Any) -> None:
        for task in background:
            task.cancel()
        await kube.close()

    probes.start()
    try:
        kopf.run(
            registry=registry,
            memo=kopf.Memo(runtime=runtime, settings=settings, config_reader=reader),
            ready_flag=readiness.started,
            insights=readiness.insights,
            # Our own identity: kopf's default asks the passwd database (no entry for the image's uid).
            identity=peering.Identity(identity.peer_identity()),
            standalone=settings.peering_name is None,
            peering_name=settings.peering_name,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
        )
    finally:
        probes.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kmskey-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the operator (default)")
    run.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    add_arguments(run)
    plan_parser = sub.add_parser("plan", help="show what the operator would change in KMS (read-only)")
    plan.add_arguments(plan_parser)
    import_parser = sub.add_parser("import", help="print a KmsKey manifest that adopts an existing key")
    importer.add_arguments(import_parser)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["run"])
    try:
        if args.command in (None, "run"):
            return _run(args)
        if args.command == "plan":
            return plan.run(args)
        if args.command == "import":
            return importer.run(args)
    except SettingsError as error:
        print(f"kmskey-operator: {error}", file=sys.stderr)
        return 1
    parser.print_help()
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
