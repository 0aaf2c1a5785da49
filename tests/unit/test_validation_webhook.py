"""The webhook's pure parts: the admission handler, its settings, its configuration, and its certificates."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import ssl
import stat
from pathlib import Path
from typing import Any

import kopf
import pytest
from cryptography import x509

from kmskey_operator import certs, names, validation, webhook
from kmskey_operator.kube import KubeApi


def kmskey(spec: dict[str, Any], **status: Any) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "k", "namespace": "n"}, "spec": spec, "status": status})


# --- the handler --------------------------------------------------------------------------------------------


def test_the_handler_is_registered_under_a_dns_safe_id_for_create_and_update() -> None:
    registry = kopf.get_default_registry()
    (handler,) = [h for h in registry._webhooks.get_all_handlers() if h.id == webhook.HANDLER_ID]
    assert handler.selector.group == names.GROUP
    assert set(handler.operations or ()) == {"CREATE", "UPDATE"}
    assert handler.subresource is None


async def test_a_valid_create_passes_and_returns_warnings() -> None:
    warnings: list[str] = []
    await webhook.validate_kmskey(
        warnings=warnings, operation="CREATE", new=kmskey({"rotationInterval": "30d"})
    )
    assert any("spec.rotationInterval is ignored" in w for w in warnings)


async def test_an_invalid_create_is_refused_with_code_422_and_every_field() -> None:
    with pytest.raises(kopf.AdmissionError) as refused:
        await webhook.validate_kmskey(
            warnings=[], operation="CREATE", new=kmskey({"secretName": "s", "status": "PendingDeletion"})
        )
    assert refused.value.code == 422
    assert "spec.secretName" in str(refused.value)
    assert "spec.status" in str(refused.value)


async def test_a_force_new_update_is_refused() -> None:
    old = kmskey({"keySpec": "Aliyun_AES_256"}, keyId="key-1")
    new = kmskey({"keySpec": "Aliyun_SM4"}, keyId="key-1")
    with pytest.raises(kopf.AdmissionError, match=r"Aliyun_AES_256 → Aliyun_SM4"):
        await webhook.validate_kmskey(warnings=[], operation="UPDATE", old=old, new=new)


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT", None])
async def test_other_operations_always_pass(operation: str | None) -> None:
    bad = kmskey({"secretName": "s"})
    await webhook.validate_kmskey(warnings=[], operation=operation, old=bad, new=bad)


def test_every_warning_fits_in_what_the_apiserver_shows_untruncated() -> None:
    # kube-apiserver may truncate admission warnings longer than 256 characters.
    spec = {
        "managementPolicy": "Observe",
        "keyId": "key-1",
        **{f: "Enabled" for f in ("automaticRotation", "status")},
        "description": "d",
        "enableAutomaticRotation": True,
        "enableDeletionProtection": True,
        "policy": '{"Version": "1"}',
        "policyName": "default",
        "rotationInterval": "7d",
        "deletionPolicy": "Delete",
        "pendingWindowInDays": 7,
        "origin": "EXTERNAL",
        "keySpec": "Aliyun_AES_128",
        "protectionLevel": "HSM",
    }
    warnings = list(validation.validate_spec(spec).warnings)
    warnings += validation.validate_spec({"rotationInterval": "7d", "pendingWindowInDays": 7}).warnings
    warnings += validation.validate_spec({"protectionLevel": "HSM", "dkmsInstanceId": "k"}).warnings
    assert len(warnings) >= 5
    for warning in warnings:
        assert len(warning) <= 256, warning


# --- settings -----------------------------------------------------------------------------------------------


def test_settings_default_to_a_fail_closed_short_timeout_unmanaged_webhook() -> None:
    settings = webhook.WebhookSettings.from_env({})
    assert settings == webhook.WebhookSettings()
    assert settings.failure_policy == "Fail"
    assert settings.timeout_seconds == 5
    assert settings.configuration_name is None
    assert settings.port == 9443


def test_settings_are_read_from_kmskey_webhook_variables(tmp_path: Path) -> None:
    settings = webhook.WebhookSettings.from_env(
        {
            "KMSKEY_WEBHOOK_LISTEN_HOST": "127.0.0.1",
            "KMSKEY_WEBHOOK_PORT": "19443",
            "KMSKEY_WEBHOOK_HOST": "127.0.0.1",
            "KMSKEY_WEBHOOK_CERT_DIR": str(tmp_path),
            "KMSKEY_WEBHOOK_DNS_NAMES": "svc.ns.svc, svc.ns.svc.cluster.local",
            "KMSKEY_WEBHOOK_MANAGED": "kmskey.kms.alicloud.dev",
            "KMSKEY_WEBHOOK_NAMESPACES": "a,b",
            "KMSKEY_WEBHOOK_TIMEOUT_SECONDS": "10",
            "KMSKEY_WEBHOOK_REMOVE_ON_EXIT": "true",
        }
    )
    assert settings.port == 19443
    assert settings.cert_dir == tmp_path
    assert settings.dns_names == ("svc.ns.svc", "svc.ns.svc.cluster.local")
    assert settings.configuration_name == "kmskey.kms.alicloud.dev"
    assert settings.namespaces == ("a", "b")
    assert settings.timeout_seconds == 10
    assert settings.remove_on_exit


@pytest.mark.parametrize(
    ("name", "value"), [("FAILURE_POLICY", "Maybe"), ("TIMEOUT_SECONDS", "31"), ("TIMEOUT_SECONDS", "0")]
)
def test_settings_refuse_values_kubernetes_would_refuse(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"KMSKEY_WEBHOOK_{name}"):
        webhook.WebhookSettings.from_env({f"KMSKEY_WEBHOOK_{name}": value})


# --- the webhook configuration ------------------------------------------------------------------------------


def test_the_configuration_matches_only_kmskey_creates_and_updates_with_a_short_timeout() -> None:
    settings = webhook.WebhookSettings(configuration_name="kmskey.test.kms.alicloud.dev")
    config = webhook.build_configuration(settings, {"url": "https://127.0.0.1:19443", "caBundle": "Q0E="})
    assert config["metadata"]["name"] == "kmskey.test.kms.alicloud.dev"
    (entry,) = config["webhooks"]
    assert entry["name"] == "validate-kmskey.kms.alicloud.dev"
    assert entry["clientConfig"] == {"url": "https://127.0.0.1:19443/validate-kmskey", "caBundle": "Q0E="}
    assert entry["rules"] == [
        {
            "apiGroups": ["kms.alicloud.dev"],
            "apiVersions": ["v1alpha1"],
            "resources": ["kmskeys"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert entry["failurePolicy"] == "Fail"
    assert entry["sideEffects"] == "None"
    assert entry["timeoutSeconds"] == 5
    assert "namespaceSelector" not in entry


def test_the_configuration_skips_deletions_and_updates_that_leave_spec_alone() -> None:
    settings = webhook.WebhookSettings(configuration_name="x.y.z")
    (entry,) = webhook.build_configuration(settings, {"url": "https://h:1"})["webhooks"]
    expressions = [c["expression"] for c in entry["matchConditions"]]
    assert "!has(object.metadata.deletionTimestamp)" in expressions
    assert any("object.spec != oldObject.spec" in e for e in expressions)


def test_namespaces_become_a_namespace_selector() -> None:
    settings = webhook.WebhookSettings(configuration_name="x.y.z", namespaces=("a", "b"))
    (entry,) = webhook.build_configuration(settings, {"url": "https://h:1"})["webhooks"]
    assert entry["namespaceSelector"] == {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]
    }


def test_configure_admission_serves_https_and_never_uses_kopf_managed_mode(tmp_path: Path) -> None:
    settings = kopf.OperatorSettings()
    webhook.configure_admission(
        settings, webhook.WebhookSettings(listen_host="127.0.0.1", port=19443, cert_dir=tmp_path)
    )
    server = settings.admission.server
    assert type(server) is kopf.WebhookServer
    assert settings.admission.managed is None
    assert (server.addr, server.port) == ("127.0.0.1", 19443)
    assert Path(server.cafile) == tmp_path / "ca.crt"

    managed = kopf.OperatorSettings()
    webhook.configure_admission(
        managed, webhook.WebhookSettings(cert_dir=tmp_path / "m", configuration_name="x.y.z"), KubeApi()
    )
    assert isinstance(managed.admission.server, webhook.ConfiguringWebhookServer)
    assert managed.admission.managed is None


# --- certificates -------------------------------------------------------------------------------------------


def test_a_generated_certificate_is_signed_by_its_ca_and_names_its_hosts(tmp_path: Path) -> None:
    cert = certs.generate_self_signed(tmp_path, ip_addresses=["127.0.0.1"], dns_names=["svc.ns.svc"])
    leaf = x509.load_pem_x509_certificate(cert.certfile.read_bytes())
    (ca,) = x509.load_pem_x509_certificates(cert.ca_pem)
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert cert.cafile.read_bytes() == cert.ca_pem
    assert stat.S_IMODE(cert.keyfile.stat().st_mode) == 0o600


def test_a_generated_certificate_passes_a_tls_handshake_that_checks_the_ip_san(tmp_path: Path) -> None:
    cert = certs.generate_self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert.certfile, cert.keyfile)
    client = ssl.create_default_context(cafile=str(cert.cafile))
    c_out, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_out, s_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_out, c_out, server_side=True)
    for _ in range(10):
        for end in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
    assert c.version() is not None
    assert c.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))


def test_the_advertised_host_is_added_to_the_generated_sans(tmp_path: Path) -> None:
    cert = webhook.serving_certificate(
        webhook.WebhookSettings(advertised_host="10.1.2.3", cert_dir=tmp_path, ip_addresses=("127.0.0.1",))
    )
    leaf = x509.load_pem_x509_certificate(cert.certfile.read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in sans.get_values_for_type(x509.IPAddress)


def test_a_mounted_secret_is_read_with_its_ca(tmp_path: Path) -> None:
    made = certs.generate_self_signed(tmp_path)
    loaded = certs.load_from_directory(tmp_path)
    assert loaded == made
    assert webhook.serving_certificate(webhook.WebhookSettings(secret_dir=tmp_path)) == made


def test_a_mounted_secret_without_ca_uses_its_certificate_as_the_bundle(tmp_path: Path) -> None:
    certs.generate_self_signed(tmp_path)
    (tmp_path / "ca.crt").unlink()
    loaded = certs.load_from_directory(tmp_path)
    assert loaded.cafile == tmp_path / "tls.crt"
    assert base64.b64encode(loaded.ca_pem)


def test_a_mounted_secret_without_a_key_is_an_error_naming_the_file(tmp_path: Path) -> None:
    certs.generate_self_signed(tmp_path)
    (tmp_path / "tls.key").unlink()
    with pytest.raises(certs.CertificateError, match=r"tls\.key is missing"):
        certs.load_from_directory(tmp_path)
