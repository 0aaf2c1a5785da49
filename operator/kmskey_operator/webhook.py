"""The validating admission webhook for KmsKey: kopf's `on.validate` -> validation.py, served over HTTPS.

Importing this module registers the handler in kopf's default registry (kopf's idiom; the operator's CLI
imports it). `configure_admission` wires the HTTPS server into kopf's settings from a startup handler.

Why the operator writes its own ValidatingWebhookConfiguration instead of kopf's managed mode: kopf's
managed mode hard-codes `timeoutSeconds: 30`, cannot express `matchConditions`, and on exit removes every
webhook not marked persistent. This webhook needs a short timeout and, above all, `matchConditions` that skip
objects being deleted and updates that do not change `spec`: with `failurePolicy: Fail`, an operator that is
down would otherwise block its own finalizer removal, and so every deletion. So `ConfiguringWebhookServer`
(a kopf.WebhookServer) writes the configuration itself each time it starts serving or its certificate
changes, which also keeps the `caBundle` current. In a cluster the Helm chart owns the configuration (with
the same rules, pointing at the operator's Service) and `configuration_name` is None.

Run alone (tests, development): `python -m kmskey_operator.webhook`, configured by the KMSKEY_WEBHOOK_*
variables documented on `WebhookSettings.from_env`.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import kopf

from kmskey_operator import certs, directory, login, metrics, names, validation
from kmskey_operator.accounts import admission as account_admission
from kmskey_operator.accounts.kube import KubeReader
from kmskey_operator.kube import KubeApi
from kmskey_operator.settings import Settings

HANDLER_ID = "validate-kmskey"
WEBHOOK_NAME = f"{HANDLER_ID}.{names.GROUP}"
DEFAULT_PORT = 9443

# CEL, evaluated by the kube-apiserver before calling the webhook (GA in Kubernetes 1.30). A request that
# matches none is admitted without a call, so with the webhook down deletions and finalizer or annotation
# patches still go through. An expression error counts as a webhook failure, so each one guards with has().
MATCH_CONDITIONS: tuple[dict[str, str], ...] = (
    {"name": "not-being-deleted", "expression": "!has(object.metadata.deletionTimestamp)"},
    {
        "name": "create-or-spec-change",
        "expression": (
            "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec) "
            "|| object.spec != oldObject.spec"
        ),
    },
)

logger = logging.getLogger(__name__)


@kopf.on.validate(
    names.GROUP,
    names.VERSION,
    names.PLURAL,
    id=HANDLER_ID,
    operations=["CREATE", "UPDATE"],
    persistent=True,
)
async def validate_kmskey(
    *,
    warnings: list[str],
    operation: str | None = None,
    old: kopf.Body | None = None,
    new: kopf.Body | None = None,
    memo: Any = None,
    **kwargs: Any,
) -> None:
    """Refuse invalid specs and ForceNew or identity changes; pass warnings on to kubectl.

    The tenancy rules use the operator's settings (kopf's memo carries them; the webhook-only process reads
    the environment), and the KmsKey indices say whether another KmsKey already names the key.
    """
    # kopf does not filter by `operations` at request time; a hand-written configuration may send anything.
    if operation not in ("CREATE", "UPDATE") or new is None or (operation == "UPDATE" and old is None):
        metrics.observe_admission(operation or "", "allowed")
        return
    settings = _settings(memo)
    namespace = str(new.get("metadata", {}).get("namespace") or "")
    status = old.get("status") if old is not None else None
    scope = validation.Scope.of(settings, namespace, status)
    if operation == "CREATE":
        verdict = validation.validate_spec(new.get("spec"), scope)
    else:
        assert old is not None
        verdict = validation.validate_update(old, new, scope)
    warnings.extend(verdict.warnings)
    warnings.extend(_shared_key_warnings(new, directory.Directory.from_kwargs(kwargs)))
    if not verdict.allowed:
        metrics.observe_admission(operation, "denied")
        raise kopf.AdmissionError(verdict.summary(), code=422)
    # Provider configs (accounts/admission.py): reads the API server only for a KmsKey naming a config.
    accounts = await account_admission.review(
        namespace, new.get("spec"), old if operation == "UPDATE" else None, _config_reader(memo)
    )
    warnings.extend(accounts.warnings)
    if accounts.errors:
        metrics.observe_admission(operation, "denied")
        raise kopf.AdmissionError("; ".join(accounts.errors) + ".", code=422)
    metrics.observe_admission(operation, "warned" if warnings else "allowed")


_READER: list[KubeReader] = []


def _config_reader(memo: Any) -> KubeReader:
    """The operator's reader (kopf's connection, from the memo); the webhook-only process makes its own."""
    reader = memo.get("config_reader") if hasattr(memo, "get") else getattr(memo, "config_reader", None)
    if isinstance(reader, KubeReader):
        return reader
    if not _READER:
        _READER.append(KubeReader())
    return _READER[0]


def _shared_key_warnings(new: Mapping[str, Any], known: directory.Directory) -> list[str]:
    """A warning when another KmsKey of this cluster already names the key this one adopts."""
    key_id = (new.get("spec") or {}).get("keyId")
    if not isinstance(key_id, str) or not key_id:
        return []
    uid = str(new.get("metadata", {}).get("uid") or "")
    others = known.others_naming(key_id, uid)
    if not others:
        return []
    who = ", ".join(e.ref for e in others[:3]) + (" and others" if len(others) > 3 else "")
    return [
        f"spec.keyId: KMS key {key_id} is already named by KmsKey {who}; a key has one owner, so this "
        "KmsKey reports KeyClaimed and writes nothing while another holds the key's claim"
    ]


@functools.cache
def _settings_from_env() -> Settings:
    return Settings.from_env()


def _settings(memo: Any) -> Settings:
    settings = memo.get("settings") if hasattr(memo, "get") else getattr(memo, "settings", None)
    return settings if isinstance(settings, Settings) else _settings_from_env()


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    """How the webhook is served, and which webhook configuration (if any) the operator keeps current."""

    listen_host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    # The host in the configuration's `url` (None: kopf's choice, 127.0.0.1 for a catch-all listen_host).
    advertised_host: str | None = None
    # A mounted kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt); wins over generating a certificate.
    secret_dir: Path | None = None
    # Where to write a generated CA and serving certificate (None: a new temporary directory).
    cert_dir: Path | None = None
    dns_names: tuple[str, ...] = ("localhost",)
    ip_addresses: tuple[str, ...] = ("127.0.0.1",)
    # The ValidatingWebhookConfiguration to create and keep current; None when the Helm chart owns it.
    configuration_name: str | None = None
    # Validate only KmsKeys in these namespaces (a namespaceSelector on their names); empty: everywhere.
    namespaces: tuple[str, ...] = ()
    failure_policy: Literal["Fail", "Ignore"] = "Fail"
    timeout_seconds: int = 5
    # Delete the configuration when the operator stops (tests); otherwise it stays, and failurePolicy holds.
    remove_on_exit: bool = False
    # How often kopf re-reads the certificate files; a change restarts the server with the new certificate
    # and (with configuration_name) rewrites the configuration's caBundle.
    cert_check_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        """Read KMSKEY_WEBHOOK_* variables; unset ones keep the defaults above.

        LISTEN_HOST, PORT, HOST (advertised), SECRET_DIR, CERT_DIR, DNS_NAMES and IP_ADDRESSES
        (comma-separated SANs), MANAGED (configuration name; empty = not managed), NAMESPACES
        (comma-separated), FAILURE_POLICY, TIMEOUT_SECONDS (1-30), REMOVE_ON_EXIT (true/false),
        CERT_CHECK_SECONDS.
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"KMSKEY_WEBHOOK_{name}", "").strip()
            return value or None

        def split(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            value = get(name)
            return default if value is None else tuple(p.strip() for p in value.split(",") if p.strip())

        policy = get("FAILURE_POLICY") or "Fail"
        if policy not in ("Fail", "Ignore"):
            raise ValueError(f"KMSKEY_WEBHOOK_FAILURE_POLICY must be Fail or Ignore, not {policy!r}")
        timeout = int(get("TIMEOUT_SECONDS") or 5)
        if not 1 <= timeout <= 30:
            raise ValueError(f"KMSKEY_WEBHOOK_TIMEOUT_SECONDS must be 1 to 30 (seconds), not {timeout}")
        secret_dir, cert_dir = get("SECRET_DIR"), get("CERT_DIR")
        return cls(
            listen_host=get("LISTEN_HOST") or cls.listen_host,
            port=int(get("PORT") or DEFAULT_PORT),
            advertised_host=get("HOST"),
            secret_dir=Path(secret_dir) if secret_dir else None,
            cert_dir=Path(cert_dir) if cert_dir else None,
            dns_names=split("DNS_NAMES", cls.dns_names),
            ip_addresses=split("IP_ADDRESSES", cls.ip_addresses),
            configuration_name=get("MANAGED"),
            namespaces=split("NAMESPACES", ()),
            failure_policy="Ignore" if policy == "Ignore" else "Fail",
            timeout_seconds=timeout,
            remove_on_exit=(get("REMOVE_ON_EXIT") or "false").lower() == "true",
            cert_check_seconds=float(get("CERT_CHECK_SECONDS") or 60.0),
        )


def serving_certificate(webhook: WebhookSettings) -> certs.ServingCertificate:
    """The mounted Secret's certificate, or a newly generated one that covers the advertised host."""
    if webhook.secret_dir is not None:
        return certs.load_from_directory(webhook.secret_dir)
    ips, dns = list(webhook.ip_addresses), list(webhook.dns_names)
    host = webhook.advertised_host
    if host and host not in ips and host not in dns:
        (ips if _is_ip(host) else dns).append(host)
    directory = webhook.cert_dir or Path(tempfile.mkdtemp(prefix="kmskey-webhook-"))
    return certs.generate_self_signed(directory, ip_addresses=ips, dns_names=dns)


def configure_admission(
    settings: kopf.OperatorSettings, webhook: WebhookSettings, api: KubeApi | None = None
) -> None:
    """Serve the webhook over HTTPS; with `configuration_name`, also keep that configuration current.

    `api` writes the configuration (it needs one when `configuration_name` is set).
    """
    cert = serving_certificate(webhook)
    server_kwargs: dict[str, Any] = {
        "addr": webhook.listen_host,
        "port": webhook.port,
        "host": webhook.advertised_host,
        "certfile": str(cert.certfile),
        "pkeyfile": str(cert.keyfile),
        "cafile": str(cert.cafile),
        "file_check_interval": webhook.cert_check_seconds,
    }
    if webhook.configuration_name is None:
        settings.admission.server = kopf.WebhookServer(**server_kwargs)
    else:
        if api is None:
            raise ValueError("configure_admission: writing the webhook configuration needs a KubeApi")
        settings.admission.server = ConfiguringWebhookServer(webhook=webhook, api=api, **server_kwargs)
    # Never kopf's managed mode: it cannot express matchConditions (see the module docstring).
    settings.admission.managed = None


def build_configuration(webhook: WebhookSettings, client_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration for a client config ({url, caBundle}) yielded by the server."""
    url = str(client_config["url"]).rstrip("/") + f"/{HANDLER_ID}"
    clientconfig: dict[str, Any] = {"url": url}
    if "caBundle" in client_config:
        clientconfig["caBundle"] = client_config["caBundle"]
    webhook_entry: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "clientConfig": clientconfig,
        "rules": [
            {
                "apiGroups": [names.GROUP],
                "apiVersions": [names.VERSION],
                "resources": [names.PLURAL],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
        ],
        "matchConditions": [dict(c) for c in MATCH_CONDITIONS],
        "failurePolicy": webhook.failure_policy,
        "sideEffects": "None",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": webhook.timeout_seconds,
        "admissionReviewVersions": ["v1"],
    }
    if webhook.namespaces:
        webhook_entry["namespaceSelector"] = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(webhook.namespaces)}
            ]
        }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": webhook.configuration_name,
            "labels": {"app.kubernetes.io/managed-by": "kmskey-operator"},
        },
        "webhooks": [webhook_entry],
    }


class ConfiguringWebhookServer(kopf.WebhookServer):  # type: ignore[misc]
    """A kopf.WebhookServer that writes the webhook configuration each time it (re)starts serving."""

    def __init__(self, *, webhook: WebhookSettings, api: KubeApi, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook = webhook
        self.api = api

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        applied = False
        try:
            async for client_config in super().__call__(fn):
                # The server is listening by now, so the apiserver never calls a closed port.
                await self.api.apply_webhook_configuration(build_configuration(self.webhook, client_config))
                applied = True
                yield client_config
        finally:
            if applied and self.webhook.remove_on_exit and self.webhook.configuration_name:
                await self.api.delete_webhook_configuration(self.webhook.configuration_name)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def main() -> None:
    """Serve only the webhook (no reconciler): `python -m kmskey_operator.webhook`."""
    webhook = WebhookSettings.from_env()
    api = KubeApi(relogin=login.connection)
    login.register(kopf.get_default_registry(), on_login=api.use)
    tenancy = Settings.from_env()  # the tenancy rules and the regions served, as the operator has them
    directory.register()  # the KmsKey indices behind the "already named by another KmsKey" warning

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        configure_admission(settings, webhook, api)

    kopf.configure(verbose=False)
    kopf.run(standalone=True, clusterwide=True, memo=kopf.Memo(settings=tenancy))


if __name__ == "__main__":
    main()
