"""The webhook's TLS serving certificate: generated with `cryptography`, or read from a mounted Secret.

kopf's own self-signed path (certbuilder + oscrypto) fails against OpenSSL 3, so the operator makes its own:
a throw-away CA and a serving certificate signed by it, both EC P-256. The CA goes into the webhook
configuration's `caBundle`; the kube-apiserver (Go TLS) checks the serving certificate's SANs against the URL
host, so an IP address such as 127.0.0.1 must be an IP SAN, not a CN. In a cluster the certificate usually
comes from cert-manager as a Secret (`tls.crt`, `tls.key`, `ca.crt`) mounted into the pod.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"


class CertificateError(RuntimeError):
    """A certificate directory is missing a file or holds something unreadable."""


@dataclasses.dataclass(frozen=True)
class ServingCertificate:
    """Where the serving certificate and key are, and the PEM CA bundle that verifies them."""

    certfile: Path
    keyfile: Path
    cafile: Path
    ca_pem: bytes


def self_signed_ca(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    path_length: int | None = 0,
) -> x509.Certificate:
    """A CA certificate for `key`, signing itself: may sign certificates (and CRLs), nothing else."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def generate_self_signed(
    directory: Path | str,
    *,
    ip_addresses: Iterable[str] = ("127.0.0.1",),
    dns_names: Iterable[str] = ("localhost",),
    valid_days: int = 365,
) -> ServingCertificate:
    """Write a new CA (`ca.crt`) and a serving certificate it signed (`tls.crt`, `tls.key`) to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=valid_days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = self_signed_ca(ca_key, "kmskey-operator webhook CA", not_before, not_after)
    ca_name = ca_cert.subject

    ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
    dns = list(dns_names)
    if not ips and not dns:
        raise CertificateError("a serving certificate needs at least one IP address or DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = dns[0] if dns else str(ips[0])
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certfile, keyfile, cafile = directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE
    _write(keyfile, key_pem, mode=0o600)
    _write(certfile, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    _write(cafile, ca_pem, mode=0o644)
    return ServingCertificate(certfile=certfile, keyfile=keyfile, cafile=cafile, ca_pem=ca_pem)


def load_from_directory(directory: Path | str) -> ServingCertificate:
    """Read a mounted kubernetes.io/tls Secret: `tls.crt`, `tls.key` and, if present, `ca.crt`.

    Without `ca.crt` the certificate file itself is the CA bundle (a self-signed certificate, or a chain that
    ends in its root).
    """
    directory = Path(directory)
    certfile, keyfile, cafile = directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE
    for required in (certfile, keyfile):
        if not required.is_file():
            raise CertificateError(f"{required} is missing: mount a kubernetes.io/tls Secret at {directory}")
    if not cafile.is_file():
        cafile = certfile
    ca_pem = cafile.read_bytes()
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as error:
        raise CertificateError(f"{cafile} holds no PEM certificate: {error}") from None
    return ServingCertificate(certfile=certfile, keyfile=keyfile, cafile=cafile, ca_pem=ca_pem)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Create with the final mode, then replace atomically: the key is never readable by others, and a
    # reader (kopf re-hashes the files every minute) never sees half a file.
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
