"""``medgw opcua cert``: what OPC UA wants of an application certificate, and the report."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from drivers.opcua import OpcUaOptions, der_bytes, describe, make_certificate, thumbprint
from gateway.errors import ConfigError
from gateway.ops.discover import cert_report
from tests.integration.dayone.support import medgw


def test_certificate_has_what_opc_ua_requires(tmp_path: Path) -> None:
    files = make_certificate(tmp_path, "gw", "urn:site:edge-01:medgw", days=30,
                             hostnames=("edge-01", "10.0.0.5"))
    cert = x509.load_der_x509_certificate(files.certificate.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:site:edge-01:medgw"]
    assert san.get_values_for_type(x509.DNSName) == ["edge-01"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment  # nonRepudiation
    assert usage.key_encipherment and usage.data_encipherment
    ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in ext and ExtendedKeyUsageOID.SERVER_AUTH in ext
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    assert der_bytes(files.certificate_pem.read_bytes()) == files.certificate.read_bytes()
    assert files.info.thumbprint == hashlib.sha1(files.certificate.read_bytes()).hexdigest().upper()
    assert files.info.application_uri == "urn:site:edge-01:medgw"


def test_certificate_is_never_replaced_silently(tmp_path: Path) -> None:
    first = make_certificate(tmp_path)
    with pytest.raises(ConfigError, match="--force"):
        make_certificate(tmp_path)
    again = make_certificate(tmp_path, force=True)
    assert again.info.thumbprint != first.info.thumbprint
    with pytest.raises(ConfigError, match="2048"):
        make_certificate(tmp_path / "small", key_bits=1024)


def test_the_driver_loads_what_cert_writes(tmp_path: Path) -> None:
    files = make_certificate(tmp_path)
    options = OpcUaOptions.model_validate({
        "endpoint": "opc.tcp://127.0.0.1:4840", "certificate": files.certificate,
        "private_key": files.private_key, "server_certificate": files.certificate,
        "browse": [{"pattern": "Fleet/*/*"}]})
    assert options.secure
    assert describe(files.certificate_pem.read_bytes()).thumbprint == thumbprint(
        files.certificate.read_bytes())


def test_report_says_thumbprint_and_where_servers_trust(tmp_path: Path) -> None:
    files = make_certificate(tmp_path)
    text = cert_report(files)
    assert files.info.thumbprint in text
    for server in ("node-opcua", "UA .NET Standard", "open62541", "asyncua"):
        assert server in text
    assert f"certificate: {files.certificate}" in text


def test_cli_writes_into_dir(tmp_path: Path) -> None:
    result = medgw("opcua", "cert", "--dir", tmp_path / "pki", "--uri", "urn:x:y")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pki" / "medgw-client.key").is_file()
    assert "urn:x:y" in result.output
    again = medgw("opcua", "cert", "--dir", tmp_path / "pki")
    assert again.exit_code == 1 and "--force" in again.output


def test_secure_config_without_certificate_says_how_to_make_one() -> None:
    with pytest.raises(ValidationError) as info:
        OpcUaOptions.model_validate({"endpoint": "opc.tcp://127.0.0.1:4840",
                                     "browse": [{"pattern": "*/*"}]})
    text = str(info.value)
    assert "medgw opcua cert" in text
    assert "--save-cert" in text


def test_asyncua_server_validator_accepts_it(tmp_path: Path) -> None:
    """asyncua's own server-side check (time, URI, key usages, EKU, trust list) passes."""
    import asyncio

    from asyncua import ua
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

    files = make_certificate(tmp_path / "pki", application_uri="urn:site:edge-01:medgw")
    store = TrustStore([tmp_path / "pki"], [])
    validator = CertificateValidator(CertificateValidatorOptions.TRUSTED_VALIDATION
                                     | CertificateValidatorOptions.PEER_CLIENT, store)
    cert = x509.load_der_x509_certificate(files.certificate.read_bytes())
    app = ua.ApplicationDescription(ApplicationUri="urn:site:edge-01:medgw",
                                    ApplicationType=ua.ApplicationType.Client)

    async def check() -> None:
        await store.load()
        await validator.validate(cert, app)

    asyncio.run(check())  # raises ServiceError on any failed check
