"""HTTPS for the emulator: its own CA, a serving certificate for the names it answers to, a handshake counter.

Real KMS accepts HTTPS only, so clients are tested and measured over TLS. The emulator makes a CA of its own
(EC P-256, with `cryptography`) and writes the CA certificate to `ca.crt` in its TLS directory, where a client
picks it up (the SDK's `ca`, the operator's extra CA bundle). A CA already in the directory is reused, so an
emulator restarted on the same directory keeps the trust its clients were given. The serving certificate is
new at every start and names 127.0.0.1, ::1, localhost, the bound host and any extra names.

`Handshakes` counts TLS handshakes (one per ClientHello, so one per new connection): the way tests and the
benchmark tell a client that keeps its connections from one that opens a new one per call.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
ALWAYS_NAMED = ("127.0.0.1", "::1", "localhost")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 365


class TlsError(RuntimeError):
    """The TLS directory holds something the emulator cannot use (the message names the file)."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the emulator's CA certificate (what clients trust) and its serving certificate are."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path


def prepare(directory: Path | str, host: str = "127.0.0.1", extra_names: Iterable[str] = ()) -> TlsFiles:
    """Make (or reuse) the CA in `directory` and write a serving certificate for `host` and `extra_names`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _load_or_create_ca(directory, now)

    names = list(dict.fromkeys([*ALWAYS_NAMED, *([] if host in _WILDCARD_HOSTS else [host]), *extra_names]))
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms-emulator")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory, directory / CA_CERT_FILE, directory / CERT_FILE, directory / KEY_FILE)
    _write(files.key_file, _private_pem(key), 0o600)
    # The chain a client needs: the serving certificate only; the CA is what it trusts.
    _write(files.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def _load_or_create_ca(
    directory: Path, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as error:
            raise TlsError(
                f"{directory}: unreadable CA ({error}); delete {CA_CERT_FILE} and {CA_KEY_FILE}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{key_path}: not an EC private key; delete it and {CA_CERT_FILE}")
        if cert.not_valid_after_utc > now + datetime.timedelta(days=CERT_VALID_DAYS):
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms-emulator CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
    _write(key_path, _private_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


class Handshakes:
    """Counts TLS handshakes the server saw and can hold each one (a slow TLS peer, for tests).

    It is the context's `sni_callback`, which OpenSSL calls for every ClientHello, with or without SNI. A
    held handshake holds the emulator's event loop too: the whole server is slow to greet, as a congested
    TLS terminator would be.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._delay_seconds = 0.0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def delay_ms(self) -> int:
        with self._lock:
            return round(self._delay_seconds * 1000)

    def set_delay_ms(self, milliseconds: int) -> None:
        if milliseconds < 0:
            raise ValueError("a handshake delay is 0 or more milliseconds")
        with self._lock:
            self._delay_seconds = milliseconds / 1000

    def __call__(self, _socket: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        with self._lock:
            self._count += 1
            delay = self._delay_seconds
        if delay:
            time.sleep(delay)


def server_context(files: TlsFiles, handshakes: Handshakes) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # what KMS accepts
    context.load_cert_chain(files.cert_file, files.key_file)
    context.sni_callback = handshakes
    return context


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create with the final mode, then replace atomically: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
