"""Self-signed OPC UA application certificates, generated at runtime (simulator and tests)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

SERVER_URI = "urn:medgw:sim:transport-carrier:server"
CLIENT_URI = "urn:medgw:gateway:opcua-client"


@dataclass(frozen=True)
class CertPair:
    """A DER certificate file and its PEM private key file."""

    cert: Path
    key: Path


def make_app_certificate(directory: Path, name: str, app_uri: str, server: bool,
                         days: int = 365) -> CertPair:
    """Write ``<name>.der`` and ``<name>.pem`` for an OPC UA application into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(app_uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),  # asyncua checks the local host name
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = generate_self_signed_app_certificate(
        key, name, {"organizationName": "medgw"}, alt_names, extended=usage, days=days
    )
    pair = CertPair(directory / f"{name}.der", directory / f"{name}.pem")
    pair.cert.write_bytes(cert.public_bytes(Encoding.DER))
    pair.key.write_bytes(dump_private_key_as_pem(key))
    pair.key.chmod(0o600)
    return pair


def server_certificate(directory: Path, name: str = "carrier-sim") -> CertPair:
    """Create the simulator's server certificate (SAN URI = SERVER_URI)."""
    return make_app_certificate(directory, name, SERVER_URI, server=True)


def client_certificate(directory: Path, name: str = "medgw-client",
                       app_uri: str = CLIENT_URI) -> CertPair:
    """Create a gateway client certificate (SAN URI = ``app_uri``)."""
    return make_app_certificate(directory, name, app_uri, server=False)
