"""The gateway's own OPC UA application certificate: make it, describe it, describe a server's.

OPC UA (Part 6, 6.2.2) wants an X.509 v3 certificate whose subjectAltName carries the
application URI (the client sends the same URI in CreateSession), key usages
digitalSignature, nonRepudiation, keyEncipherment and dataEncipherment, extended key
usages clientAuth (and serverAuth, which many servers accept or expect), RSA 2048+ with
SHA-256 for Basic256Sha256. Self-signed as UA .NET makes them: CA false, keyCertSign set
(the certificate is its own issuer). Written with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.opcua.options import DEFAULT_CLIENT_URI
from gateway.errors import ConfigError
from gateway.files import atomic_write

TRUST_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("node-opcua", "<server pki>/trusted/certs/ (rejected ones wait in <server pki>/rejected/)"),
    ("UA .NET Standard", "%LocalApplicationData%/OPC Foundation/pki/trusted/certs/ "
                         "(or the server's pki/trusted/certs/); rejected: pki/rejected/certs/"),
    ("open62541", "the directory or file given to the server as its trust list "
                  "(e.g. ./pki/trusted/, set with --trustlist)"),
    ("asyncua (Python)", "whatever the server passes to its certificate validator "
                         "(e.g. a trusted/ directory loaded into a TrustStore)"),
    ("UaExpert / vendor servers", "usually a GUI: Certificates -> Trust, or a pki/trusted/ folder"),
)
"""Where typical OPC UA servers keep the client certificates they trust."""


@dataclass(frozen=True)
class CertificateInfo:
    """What a user needs to know about a certificate (as UaExpert shows it)."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    thumbprint: str  # SHA-1 of the DER, hex upper case
    application_uri: str | None
    key_bits: int | None
    signature_hash: str | None
    self_signed: bool


@dataclass(frozen=True)
class CertificateFiles:
    """The files ``make_certificate`` wrote."""

    certificate: Path  # DER, as the driver and most servers load it
    certificate_pem: Path
    private_key: Path  # PEM, unencrypted, mode 0600
    info: CertificateInfo


def thumbprint(der: bytes) -> str:
    """Return the SHA-1 thumbprint of a DER certificate as UaExpert shows it (hex, upper)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a certificate in DER or PEM; ValueError if it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def describe(data: bytes) -> CertificateInfo:
    """Describe a certificate (DER or PEM bytes): subject, validity, thumbprint, URI."""
    cert = load_certificate(data)
    uri = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        uri = uris[0] if uris else None
    except x509.ExtensionNotFound:
        pass
    key = cert.public_key()
    digest = cert.signature_hash_algorithm
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        thumbprint=thumbprint(cert.public_bytes(serialization.Encoding.DER)),
        application_uri=uri, key_bits=getattr(key, "key_size", None),
        signature_hash=digest.name if digest is not None else None,
        self_signed=cert.subject == cert.issuer)


def der_bytes(data: bytes) -> bytes:
    """Return a certificate (DER or PEM bytes) as DER, the form the driver pins."""
    return load_certificate(data).public_bytes(serialization.Encoding.DER)


def make_certificate(directory: Path, name: str = "medgw-client",
                     application_uri: str | None = None, days: int = 730,
                     hostnames: tuple[str, ...] = (), key_bits: int = 2048,
                     organization: str = "medgw", force: bool = False) -> CertificateFiles:
    """Write ``<name>.der``, ``<name>.pem`` (certificate) and ``<name>.key`` (key, 0600).

    ``application_uri`` defaults to the driver's default client URI.

    Refuses (ConfigError) to overwrite existing files unless ``force``: a server trusts one
    certificate, and a new key silently replacing it would lock the gateway out.
    """
    if key_bits < 2048:
        raise ConfigError(f"key_bits {key_bits}: Basic256Sha256 needs RSA 2048 or more")
    files = (directory / f"{name}.der", directory / f"{name}.pem", directory / f"{name}.key")
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist: a server that trusts that"
                          " certificate would reject a new one; use --force to replace it")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    cert = _build(key, name, application_uri or DEFAULT_CLIENT_URI, days,
                  hostnames or _default_hosts(), organization)
    der = cert.public_bytes(serialization.Encoding.DER)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(files[2], key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), mode=0o600)
        atomic_write(files[0], der)
        atomic_write(files[1], cert.public_bytes(serialization.Encoding.PEM))
    except OSError as err:
        raise ConfigError(f"cannot write the certificate into {directory}: {err}") from err
    return CertificateFiles(files[0], files[1], files[2], describe(der))


def _default_hosts() -> tuple[str, ...]:
    return tuple(dict.fromkeys(("localhost", socket.gethostname(), "127.0.0.1")))


def _alt_names(application_uri: str, hostnames: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _build(key: rsa.RSAPrivateKey, name: str, application_uri: str, days: int,
           hostnames: tuple[str, ...], organization: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # clock skew of peers
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(application_uri, hostnames)),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                     key_encipherment=True, data_encipherment=True,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                              ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
