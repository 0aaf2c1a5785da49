"""The one home that answers "which credentials and which rate limiter serve this KmsKey".

`Registry.target_for(resource)` resolves spec.providerConfigRef (or the defaults, see selection.py) to a
provider config, the config to credentials, and the credentials to an account (STS GetCallerIdentity), and
hands the reconciler a `Target`: the gateway to call, the region of keys that declare none, and what to
record in status. Per account (and region) there is one client-side rate limiter, shared by every config
that resolves to that account and by the operator's own credentials when they act in it (their account is
asked of STS once), so account A's burst never waits on account B's quota and no account gets two budgets;
per credentials there is one gateway (its SDK clients per endpoint).

Secrets are re-read on use, not watched: a Secret read more than `credentials_recheck_seconds` ago is read
again before the next call, and at once after KMS refuses the credentials, so a rotated Secret takes effect
within that time without a restart. (A watch would need list/watch on every Secret of every namespace the
operator serves, and would hold them all in memory; a read by name needs only `get`, and only where configs
live.) ServiceAccount tokens for RRSA are requested (TokenRequest) and written to a private file that the
credentials library reads; they are renewed at half their lifetime. Credential values exist only inside the
credentials providers: the registry keeps a fingerprint, never the values, and registers them with the log
redactor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kmskey_operator import names, redact
from kmskey_operator.accounts import selection, waiting
from kmskey_operator.accounts.config import (
    AssumeRoleSource,
    BaseSource,
    DefaultSource,
    InvalidSource,
    ProviderConfig,
    RrsaSource,
    SecretSource,
    Source,
    config_or_invalid,
    uses_operator_credentials,
)
from kmskey_operator.accounts.kube import ClusterReader, ReadError
from kmskey_operator.accounts.refs import ConfigKind, ConfigRef, parse_record, parse_ref
from kmskey_operator.accounts.selection import Refused, Selected
from kmskey_operator.kms import sts
from kmskey_operator.kms.errors import KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.ratelimit import RateLimiter
from kmskey_operator.settings import Settings

logger = logging.getLogger(__name__)

PROVIDER_CONFIG_NOT_READY = names.REASON_PROVIDER_CONFIG_NOT_READY
ACCOUNT_CHANGED = names.REASON_PROVIDER_CONFIG_ACCOUNT_CHANGED
TOKEN_SECONDS = 3600
OPERATOR_IDENTITY_RETRY_SECONDS = 60.0  # after STS could not say whose the operator's own credentials are
ABSENT_MARGIN = 2.0  # seconds: creationTimestamp's granularity plus clock skew with the API server
_CREDENTIAL_ERRORS = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "InvalidCredentials",
    "Forbidden.AccessKey",
    "IncompleteSignature",
)


def is_credentials_error(error: KmsError) -> bool:
    """KMS refused who signed, not what was asked: the credentials are wrong, expired or disabled."""
    return error.code.startswith(_CREDENTIAL_ERRORS)


@dataclasses.dataclass(frozen=True)
class Target:
    """What serves one KmsKey: the gateway to call, its default region, and what status records."""

    gateway: KmsGateway
    default_region: str
    record: str  # status.providerConfig
    account_id: str  # "" for the operator's own credentials (their account is read from key ARNs)
    ref: ConfigRef | None
    name: str  # how messages name it

    def status_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"providerConfig": self.record}
        if self.account_id:
            fields["accountId"] = self.account_id
        return fields


@dataclasses.dataclass(frozen=True)
class Unresolved:
    """No target: `reason` is a Synced=False reason, `message` names the config and what to do."""

    reason: str
    message: str
    waits_for: ConfigRef | None = None  # the config whose creation or fix would serve the key (waiting.py)


@dataclasses.dataclass(frozen=True)
class ConfigCheck:
    """A config's health, for its status."""

    ready: bool
    reason: str
    message: str
    account_id: str = ""
    identity_arn: str = ""


class CredentialsProblem(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass
class _Resolved:
    fingerprint: str
    generation: int
    identity: sts.CallerIdentity
    gateway: KmsGateway
    read_at: float
    credential: Any  # the credentials client (holds the provider and its STS cache)
    provider: Any = None  # the provider inside it (role providers cache their STS credentials)


class Registry:
    def __init__(
        self,
        settings: Settings,
        *,
        reader: ClusterReader,
        operator_gateway: KmsGateway,
        observer: Any = None,
        gateway_class: type[KmsGateway] = KmsGateway,
        gateway_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        token_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.policy = selection.Policy(
            cluster_default=settings.cluster_provider_config or None,
            operator_fallback=settings.operator_credentials_fallback,
        )
        self._reader = reader
        self._operator = operator_gateway
        self._observer = observer
        self._gateway_class = _with_credentials_context(gateway_class)
        # Every gateway shares the process's one call pool (kms/transport.py): one bound on calls in flight.
        self._gateway_options = dict(gateway_options or {})
        self._clock = clock
        self._configs: dict[ConfigRef, ProviderConfig] = {}
        # When a read last found a config absent (wall clock, for comparison with creationTimestamps).
        self._absent: dict[ConfigRef, float] = {}
        self._resolved: dict[ConfigRef, _Resolved] = {}
        # Credentials STS last refused, per config (fingerprint, message): quick checks skip STS for them.
        self._refusals: dict[ConfigRef, tuple[str, str]] = {}
        # KmsKeys that wait on a config: the status checker wakes them when it becomes usable.
        self.waiting = waiting.Waiting()
        self._limiters: dict[str, RateLimiter] = {}
        # The account of the operator's own credentials (STS, asked once when a config first resolves): a
        # config in that account shares the operator gateway's limiter, so the account's quota is one budget.
        self._operator_account = ""
        self._operator_account_asked = float("-inf")
        self._labels: dict[str, tuple[Mapping[str, str], float]] = {}
        self._tokens: dict[tuple[str, str, str], tuple[Path, float, float]] = {}
        self._token_dir = token_dir
        # Called with a config whose credentials KMS or STS refused (the status checker re-checks it).
        self.on_trouble: Callable[[ConfigRef], None] | None = None

    # -- the index of configs (fed by the kopf handlers of both kinds) ---------------------------------------

    def upsert(self, body: Mapping[str, Any], kind: ConfigKind) -> ProviderConfig:
        config = config_or_invalid(body, kind)
        self._configs[config.ref] = config
        self._absent.pop(config.ref, None)
        return config

    def remove(self, ref: ConfigRef) -> None:
        self._configs.pop(ref, None)
        self._resolved.pop(ref, None)
        self._refusals.pop(ref, None)

    def lookup(self, ref: ConfigRef) -> ProviderConfig | None:
        return self._configs.get(ref)

    def invalidate(self, ref: ConfigRef) -> None:
        """Re-read the config's credentials before its next use."""
        resolved = self._resolved.get(ref)
        if resolved is not None:
            resolved.read_at = float("-inf")

    def refused(self, ref: ConfigRef) -> None:
        """KMS refused the config's credentials: re-read them before the next use, and re-check the config."""
        self.invalidate(ref)
        resolved = self._resolved.get(ref)
        if resolved is not None and isinstance(resolved.provider, sts.RoleCredentialsCache):
            resolved.provider.forget()  # role credentials too: assume the role again
        if self.on_trouble is not None:
            self.on_trouble(ref)

    def configs(self) -> list[ProviderConfig]:
        return list(self._configs.values())

    @property
    def queued_calls(self) -> int:
        """KMS calls waiting on any client-side rate limiter now."""
        return self._operator.queued_calls + sum(limiter.waiting for limiter in self._limiters.values())

    # -- resolution ------------------------------------------------------------------------------------------

    async def target_for(
        self,
        namespace: str,
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
        *,
        created_at: float | None = None,
    ) -> Target | Unresolved:
        """The target serving a KmsKey of `namespace` with this spec and status (`created_at`: its
        creationTimestamp, which lets one read of the API server answer for every KmsKey created before)."""
        try:
            declared = parse_ref(spec.get("providerConfigRef"), namespace)
        except ValueError as error:
            return Unresolved(selection.PROVIDER_CONFIG_NOT_ALLOWED, f"spec.providerConfigRef: {error}")
        recorded = parse_record(status.get("providerConfig"), namespace)
        has_key = bool(status.get("keyId"))
        try:
            await self._confirm_absent(namespace, declared, recorded, has_key, created_at)
        except ReadError as error:
            return Unresolved(PROVIDER_CONFIG_NOT_READY, f"cannot read provider configs: {error}")
        labels: Mapping[str, str] = {}
        if self._needs_labels(namespace, declared, recorded, has_key):
            try:
                labels = await self._namespace_labels(namespace)
            except ReadError as error:
                return Unresolved(
                    PROVIDER_CONFIG_NOT_READY, f"cannot check cluster provider configs: {error}"
                )
        chosen = selection.select(
            namespace,
            declared,
            recorded,
            has_recorded_key=has_key,
            namespace_labels=labels,
            lookup=self.lookup,
            policy=self.policy,
        )
        if isinstance(chosen, Refused):
            return Unresolved(chosen.reason, chosen.message, chosen.waits_for)
        return await self._target(chosen)

    async def target_for_ref(self, ref: ConfigRef | None) -> Target | Unresolved:
        """The target of one config (None: the operator's own credentials), e.g. for `plan` and `import`."""
        if ref is None:
            return await self._target(Selected(None, "the operator's own credentials"))
        if ref not in self._configs:
            try:
                body = await self._reader.provider_config(ref)
            except ReadError as error:
                return Unresolved(PROVIDER_CONFIG_NOT_READY, f"cannot read {ref.describe()}: {error}")
            if body is not None:
                self.upsert(body, ref.kind)
        config = self.lookup(ref)
        if config is None:
            return Unresolved(selection.PROVIDER_CONFIG_NOT_FOUND, f"{ref.describe()} does not exist")
        return await self._target(Selected(config, "the named config"))

    async def check(self, ref: ConfigRef, *, quick: bool = False) -> ConfigCheck:
        """Resolve the config's credentials afresh and ask STS who they are: its status.

        `quick` (the frequent re-checks while KmsKeys wait on a broken config): credentials that STS
        refused before and that have not changed since (the same Secret data) are not sent to STS again;
        they are not ready until they change, or until the next full check asks STS.
        """
        config = self.lookup(ref)
        if config is None:
            return ConfigCheck(False, selection.PROVIDER_CONFIG_NOT_FOUND, f"{ref.describe()} does not exist")
        refusal = self._refusals.get(ref)
        if quick and refusal is not None:
            try:
                material = await self._material(config, config.source)
            except CredentialsProblem as problem:
                return ConfigCheck(False, _problem_reason(config), problem.message)
            if _fingerprint(config, material) == refusal[0]:
                return ConfigCheck(False, "CredentialsUnavailable", refusal[1])
        self.invalidate(ref)
        before = self._resolved.get(ref)
        try:
            resolved = await self._resolve(config)
            identity = resolved.identity
            if resolved is before:
                # Unchanged credentials come back from the cache: ask STS again, they may be revoked.
                identity = await sts.caller_identity(resolved.credential, self._sts_endpoint(config))
        except CredentialsProblem as problem:
            return ConfigCheck(False, _problem_reason(config), problem.message)
        except KmsError as error:
            self.invalidate(ref)
            message = f"STS refused the credentials: {error.describe()}"
            if before is not None:
                self._refusals[ref] = (before.fingerprint, message)
            return ConfigCheck(False, "CredentialsUnavailable", message)
        self._refusals.pop(ref, None)
        return ConfigCheck(
            True,
            "CredentialsVerified",
            f"the credentials act as {identity.arn or identity.identity_type} in account "
            f"{identity.account_id}",
            identity.account_id,
            identity.arn,
        )

    async def _target(self, chosen: Selected) -> Target | Unresolved:
        config = chosen.config
        if config is None:
            return Target(
                gateway=self._operator,
                default_region=self.settings.region_id,
                record=chosen.record,
                account_id="",
                ref=None,
                name="the operator's own credentials",
            )
        try:
            resolved = await self._resolve(config)
        except CredentialsProblem as problem:
            return Unresolved(
                PROVIDER_CONFIG_NOT_READY, f"{config.ref.describe()}: {problem.message}", config.ref
            )
        return Target(
            gateway=resolved.gateway,
            default_region=config.region_id or self.settings.region_id,
            record=chosen.record,
            account_id=resolved.identity.account_id,
            ref=config.ref,
            name=f"{config.ref.describe()} (account {resolved.identity.account_id})",
        )

    async def _confirm_absent(
        self,
        namespace: str,
        declared: ConfigRef | None,
        recorded: ConfigRef | str | None,
        has_key: bool,
        created_at: float | None,
    ) -> None:
        """Ask the API server for each config selection may consult that the index does not hold.

        The index follows a watch, which can lag behind: a config applied just before its KmsKey may not be
        in it yet, and treating it as absent would serve the key from a default (another account), for
        good. A key that exists is pinned to its recorded config, so this costs reads only until then; and
        a read that found a config absent answers for every KmsKey created ABSENT_MARGIN seconds before it
        started (creationTimestamp has whole seconds, and the API server's clock may be a little off ours), so
        a burst of new KmsKeys costs one read.
        """
        wanted: list[ConfigRef] = [r for r in (declared, recorded) if isinstance(r, ConfigRef)]
        if declared is None and recorded is None and not has_key:
            wanted.append(ConfigRef(ConfigKind.NAMESPACED, selection.NAMESPACE_DEFAULT, namespace))
            if self.policy.cluster_default:
                wanted.append(ConfigRef(ConfigKind.CLUSTER, self.policy.cluster_default))
        for ref in wanted:
            if ref in self._configs:
                continue
            if ref.kind is ConfigKind.CLUSTER and not self.settings.cluster_provider_configs:
                continue
            if ref.kind is ConfigKind.NAMESPACED and ref.namespace != namespace:
                continue  # refused by selection whatever exists
            absent_since = self._absent.get(ref)
            if (
                absent_since is not None
                and created_at is not None
                and created_at + ABSENT_MARGIN <= absent_since
            ):
                continue
            started = time.time()
            body = await self._reader.provider_config(ref)
            if body is not None:
                self.upsert(body, ref.kind)
            else:
                self._absent[ref] = max(started, self._absent.get(ref, 0.0))

    def _needs_labels(
        self, namespace: str, declared: ConfigRef | None, recorded: ConfigRef | str | None, has_key: bool
    ) -> bool:
        named = [r for r in (declared, recorded) if isinstance(r, ConfigRef)]
        if any(r.kind is ConfigKind.CLUSTER for r in named):
            return True
        if named or recorded is not None or has_key or not self.policy.cluster_default:
            return False
        return self.lookup(ConfigRef(ConfigKind.NAMESPACED, selection.NAMESPACE_DEFAULT, namespace)) is None

    async def _namespace_labels(self, namespace: str) -> Mapping[str, str]:
        cached = self._labels.get(namespace)
        now = self._clock()
        if cached is not None and now - cached[1] < self.settings.credentials_recheck_seconds:
            return cached[0]
        labels = await self._reader.namespace_labels(namespace)
        self._labels[namespace] = (labels, now)
        return labels

    # -- credentials ---------------------------------------------------------------------------------------

    async def _resolve(self, config: ProviderConfig) -> _Resolved:
        cached = self._resolved.get(config.ref)
        now = self._clock()
        if (
            cached is not None
            and cached.generation == config.generation
            and now - cached.read_at < self.settings.credentials_recheck_seconds
        ):
            return cached
        material = await self._material(config, config.source)
        fingerprint = _fingerprint(config, material)
        if (
            cached is not None
            and cached.fingerprint == fingerprint
            and cached.generation == config.generation
        ):
            cached.read_at = now
            return cached
        credential = sts.client(material.provider)
        try:
            identity = await sts.caller_identity(credential, self._sts_endpoint(config))
        except KmsError as error:
            message = f"STS refused the credentials: {error.describe()}"
            self._refusals[config.ref] = (fingerprint, message)
            raise CredentialsProblem(message) from None
        self._refusals.pop(config.ref, None)
        if cached is not None and cached.identity.account_id != identity.account_id:
            logger.warning(
                "%s: the credentials now act in account %s (they acted in %s)",
                config.ref.describe(),
                identity.account_id,
                cached.identity.account_id,
            )
        gateway_settings = self.settings
        if config.endpoint:
            gateway_settings = dataclasses.replace(gateway_settings, kms_endpoint=config.endpoint)
        gateway = self._gateway_class(
            gateway_settings,
            limiter=await self._limiter(identity.account_id),
            observer=self._observer,
            credential=credential,
            **self._gateway_options,
        )
        assert isinstance(gateway, _CredentialsContext)
        gateway.bind(
            f"{config.ref.describe()} (account {identity.account_id})", lambda: self.refused(config.ref)
        )
        resolved = _Resolved(
            fingerprint, config.generation, identity, gateway, now, credential, material.provider
        )
        self._resolved[config.ref] = resolved
        logger.info(
            "%s resolved to account %s as %s",
            config.ref.describe(),
            identity.account_id,
            identity.arn or identity.identity_type,
        )
        return resolved

    async def _limiter(self, account_id: str) -> RateLimiter:
        """The one limiter of `account_id`: the operator gateway's when its own credentials act there."""
        limiter = self._limiters.get(account_id)
        if limiter is None:
            if account_id == await self._own_account():
                limiter = self._operator.limiter
            else:
                s = self.settings
                limiter = RateLimiter(s.create_qps, s.read_qps, s.write_qps)
            self._limiters[account_id] = limiter
        return limiter

    async def _own_account(self) -> str:
        """The account of the operator's own credentials ("" when STS cannot say: none configured, or a
        failure, asked again after OPERATOR_IDENTITY_RETRY_SECONDS)."""
        now = self._clock()
        if self._operator_account or now - self._operator_account_asked < OPERATOR_IDENTITY_RETRY_SECONDS:
            return self._operator_account
        self._operator_account_asked = now
        s = self.settings
        endpoint = sts.StsEndpoint(
            host=s.sts_endpoint_for(s.region_id),
            protocol=s.kms_protocol,
            ca_bundle=getattr(s, "kms_ca_bundle", None),
            connect_timeout_ms=s.kms_connect_timeout_ms,
            read_timeout_ms=s.kms_read_timeout_ms,
        )
        credential = self._operator.credential
        try:
            # Resolve (refresh, for RRSA) in a thread first: the gateway's worker threads share this chain and
            # its lock, which the library's async path would wait on with the event loop blocked.
            await asyncio.to_thread(credential.get_credential)
        except Exception as error:  # no usable credentials in the chain (CredentialException and kin)
            logger.info("the operator's own credentials are not usable: %s", error)
            return ""
        try:
            identity = await sts.caller_identity(credential, endpoint)
        except KmsError as error:
            logger.info("the operator's own credentials have no account STS can name: %s", error.describe())
            return ""
        self._operator_account = identity.account_id
        return self._operator_account

    def _sts_endpoint(self, config: ProviderConfig) -> sts.StsEndpoint:
        s = self.settings
        return sts.StsEndpoint(
            host=config.sts_endpoint or s.sts_endpoint_for(config.region_id or s.region_id),
            protocol=s.kms_protocol,
            ca_bundle=getattr(s, "kms_ca_bundle", None),
            connect_timeout_ms=s.kms_connect_timeout_ms,
            read_timeout_ms=s.kms_read_timeout_ms,
        )

    async def _material(self, config: ProviderConfig, source: Source) -> _Material:
        if isinstance(source, InvalidSource):
            raise CredentialsProblem(f"the spec is invalid: {source.message}")
        if uses_operator_credentials(source) and not self._operator_credentials_allowed(config):
            raise CredentialsProblem(
                "source Default (the operator's own credentials) is not allowed in "
                f"{'cluster' if config.ref.kind is ConfigKind.CLUSTER else 'namespaced'} provider configs "
                "by this installation (providerConfigs.defaultCredentials="
                f"{self.settings.default_credentials})"
            )
        if isinstance(source, AssumeRoleSource):
            base = await self._base_material(config, source.base)
            provider = sts.assume_role(
                base.provider,
                role_arn=source.role_arn,
                session_name=source.session_name,
                duration_seconds=source.duration_seconds,
                external_id=source.external_id,
                endpoint=self._sts_endpoint(config),
            )
            parts = [base.fingerprint, source.role_arn, source.external_id or "", source.session_name]
            return _Material(provider, "assume:" + "|".join([*parts, str(source.duration_seconds)]))
        return await self._base_material(config, source)

    async def _base_material(self, config: ProviderConfig, source: BaseSource) -> _Material:
        if isinstance(source, DefaultSource):
            return _Material(sts.default_chain(), "default")
        if isinstance(source, SecretSource):
            return await self._secret_material(source)
        return await self._rrsa_material(config, source)

    async def _secret_material(self, source: SecretSource) -> _Material:
        where = f"Secret {source.namespace}/{source.name}"
        try:
            data = await self._reader.secret_data(source.namespace, source.name)
        except ReadError as error:
            raise CredentialsProblem(str(error)) from None
        values: dict[str, str] = {}
        for role, key in (
            ("access key ID", source.access_key_id_key),
            ("access key secret", source.access_key_secret_key),
            ("security token", source.security_token_key),
        ):
            if key is None:
                continue
            raw = data.get(key)
            if not raw:
                raise CredentialsProblem(
                    f"{where} has no key {key!r} (the {role}); add it, or set the key name"
                )
            try:
                values[key] = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise CredentialsProblem(f"{where}: key {key!r} is not UTF-8 text") from None
        key_id = values[source.access_key_id_key]
        secret = values[source.access_key_secret_key]
        token = values.get(source.security_token_key) if source.security_token_key else None
        for value in (secret, token):
            if value:
                redact.register_secret(value)
        digest = hashlib.sha256("\n".join([key_id, secret, token or ""]).encode()).hexdigest()
        return _Material(sts.static_keys(key_id, secret, token), f"secret:{digest}")

    async def _rrsa_material(self, config: ProviderConfig, source: RrsaSource) -> _Material:
        if source.service_account is None:
            token_file = os.environ.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "")
            if not token_file or not await asyncio.to_thread(os.path.isfile, token_file):
                raise CredentialsProblem(
                    "RRSA without serviceAccountRef uses the operator's own projected token, but "
                    "ALIBABA_CLOUD_OIDC_TOKEN_FILE is not set or names no file (chart: "
                    "credentials.source=rrsa)"
                )
            who = "operator"
        else:
            namespace, name = source.service_account
            token_file = str(await self._token_file(namespace, name, source.audience))
            who = f"{namespace}/{name}"
        provider = sts.assume_role_with_oidc(
            role_arn=source.role_arn,
            oidc_provider_arn=source.oidc_provider_arn,
            token_file=token_file,
            session_name=source.session_name,
            duration_seconds=source.duration_seconds,
            endpoint=self._sts_endpoint(config),
        )
        parts = [source.role_arn, source.oidc_provider_arn, who, source.audience, source.session_name]
        return _Material(provider, "rrsa:" + "|".join([*parts, str(source.duration_seconds)]))

    async def _token_file(self, namespace: str, name: str, audience: str) -> Path:
        """A file holding a fresh token of the ServiceAccount, renewed at half its lifetime."""
        key = (namespace, name, audience)
        now = time.time()
        known = self._tokens.get(key)
        if known is not None:
            path, issued, expires = known
            if now < issued + (expires - issued) / 2:
                return path
        try:
            token, expires = await self._reader.service_account_token(
                namespace, name, audience=audience, seconds=TOKEN_SECONDS
            )
        except ReadError as error:
            raise CredentialsProblem(str(error)) from None
        redact.register_secret(token)
        if self._token_dir is None:
            self._token_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kmskey-oidc-"))
        digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
        path = self._token_dir / f"{digest}.token"
        await asyncio.to_thread(_write_private, path, token)
        self._tokens[key] = (path, now, expires)
        return path

    def _operator_credentials_allowed(self, config: ProviderConfig) -> bool:
        scope = self.settings.default_credentials
        if scope == "all":
            return True
        return scope == "cluster" and config.ref.kind is ConfigKind.CLUSTER


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by this user only, replacing the file at once (never half a token)."""
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _fingerprint(config: ProviderConfig, material: _Material) -> str:
    """Identifies the config's credentials and endpoints, without holding the credentials."""
    parts = [material.fingerprint, config.endpoint or "", config.sts_endpoint or ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _problem_reason(config: ProviderConfig) -> str:
    if isinstance(config.source, InvalidSource):
        return "InvalidSpec"
    return "CredentialsUnavailable"


@dataclasses.dataclass(frozen=True)
class _Material:
    provider: Any  # an alibabacloud-credentials provider
    fingerprint: str  # identifies the credentials without holding them


class _CredentialsContext(KmsGateway):
    """A gateway that names its config in credential errors, and has the config re-read after them."""

    _context = ""
    _on_rejected: Callable[[], None] | None = None

    def bind(self, context: str, on_rejected: Callable[[], None]) -> None:
        self._context = context
        self._on_rejected = on_rejected

    async def call(self, region_id: str, call: Any) -> dict[str, Any]:
        try:
            return await super().call(region_id, call)
        except KmsError as error:
            if not is_credentials_error(error):
                raise
            if self._on_rejected is not None:
                self._on_rejected()
            raise KmsError(
                error.action,
                error.code,
                f"{error.message} [credentials of {self._context}]",
                http_status=error.http_status,
                request_id=error.request_id,
                retry_after_seconds=error.retry_after_seconds,
            ) from None


_CLASSES: dict[type[KmsGateway], type[KmsGateway]] = {}


def _with_credentials_context(base: type[KmsGateway]) -> type[KmsGateway]:
    """`base` (KmsGateway, or the read-only gateway of the tools) with _CredentialsContext in front."""
    if issubclass(base, _CredentialsContext):
        return base
    made = _CLASSES.get(base)
    if made is None:
        made = _CLASSES[base] = type(f"Config{base.__name__}", (_CredentialsContext, base), {})
    return made
