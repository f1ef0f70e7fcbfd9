"""TLS + username/password + ACL on a real mosquitto: the chain works, refusals are explicit."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import BrokerError
from gateway.ops.services import MosquittoService, find_binary
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, wait_until

pytestmark = pytest.mark.integration
GW_USER, GW_PASSWORD = "gw-test", "gw-secret-1"
INGEST_USER, INGEST_PASSWORD = "ingest", "ingest-secret-2"
TOTAL = 400


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, written as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("medgw test CA"))
               .issuer_name(_name("medgw test CA")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem",
             "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key"], key)
    return paths


@pytest.fixture
def secure_broker(make_mosquitto: Callable[..., MosquittoService],
                  tmp_path: Path) -> tuple[MosquittoService, Path]:
    """mosquitto with TLS only, a password file and an ACL confining the gateway to its site."""
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    tool = find_binary("mosquitto_passwd", "mosquitto")
    subprocess.run([tool, "-c", "-b", str(passwd), GW_USER, GW_PASSWORD], check=True)
    subprocess.run([tool, "-b", str(passwd), INGEST_USER, INGEST_PASSWORD], check=True)
    acl = tmp_path / "acl"
    acl.write_text("\n".join([
        f"user {GW_USER}",
        "topic write medgw/v1/test-site/#",
        "topic read medgw/v1_ctl/ingest/#",
        "topic read medgw/v1_ctl/commit/test-site/#",
        f"user {INGEST_USER}",
        "topic readwrite medgw/#",
        "",
    ]))
    broker = make_mosquitto(
        allow_anonymous=False,
        extra_config=[f"password_file {passwd}", f"acl_file {acl}"],
        listener_config=[f"cafile {pki['ca']}", f"certfile {pki['cert']}",
                         f"keyfile {pki['key']}", "tls_version tlsv1.2"],
    )
    return broker, pki["ca"]


def secure_config(broker: MosquittoService, ca: Path, influx: InfluxTarget, site: str,
                  password_env: str, username: str = GW_USER, **extra: Any) -> Any:
    """A chain config over TLS with a username and a password from the environment."""
    devices = [{"name": "gen", "driver": "synthetic",
                "options": {"total_samples": TOTAL, "tick_ms": 10,
                            "streams": [{"name": "joints", "fields": 2, "rate_hz": 400}]}}]
    loaded = chain_config(broker, influx, devices, site=site,
                          mqtt={"username": username, "password": {"env": password_env},
                                "tls": {"ca_file": str(ca)}}, **extra)
    return loaded


def test_tls_and_password_chain_delivers(secure_broker: tuple[MosquittoService, Path],
                                         influxdb: InfluxTarget,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = secure_broker
    monkeypatch.setenv("GW_PW", GW_PASSWORD)
    monkeypatch.setenv("INGEST_PW", INGEST_PASSWORD)
    gateway_cfg = secure_config(broker, ca, influxdb, "test-site", "GW_PW")
    ingest_cfg = secure_config(broker, ca, influxdb, "test-site", "INGEST_PW", INGEST_USER,
                               ingest={"client_id": "secure-ingest"})
    chain = Chain(gateway_cfg)
    from gateway.server.ingest import Ingest

    chain.ingest = Ingest(ingest_cfg)
    with chain:
        wait_until(lambda: chain.produced() == TOTAL, 20, message="samples")
        chain.stop()
    assert chain.all_acked
    assert influxdb.count("synthetic") == TOTAL
    assert chain.gateway.publisher.last_error is None


def test_wrong_password_is_refused_clearly(secure_broker: tuple[MosquittoService, Path],
                                           influxdb: InfluxTarget,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = secure_broker
    monkeypatch.setenv("GW_PW", "not-the-password")
    from gateway.edge.daemon import Gateway

    gateway = Gateway(secure_config(broker, ca, influxdb, "test-site", "GW_PW"))
    gateway.publisher.start()
    try:
        with pytest.raises(BrokerError) as caught:
            gateway.publisher.wait_connected(5)
    finally:
        gateway.publisher.stop(drain_timeout=1)
    message = str(caught.value)
    print(f"\nwrong password -> {message}")
    assert "refused the connection" in message
    assert "username, password" in message


def test_publish_outside_the_site_prefix_is_refused(secure_broker: tuple[MosquittoService, Path],
                                                    influxdb: InfluxTarget,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = secure_broker
    monkeypatch.setenv("GW_PW", GW_PASSWORD)
    from gateway.edge.daemon import Gateway, GatewayThread

    gateway = Gateway(secure_config(broker, ca, influxdb, "other-site", "GW_PW"))
    runner = GatewayThread(gateway)
    runner.start()
    try:
        gateway.publisher.wait_connected(10)
        wait_until(lambda: gateway.publisher.last_error, 15,
                   message="the broker to refuse a publish")
        refused = wait_until(
            lambda: gateway.metrics.registry.get_sample_value(
                "medgw_samples_dropped_total",
                {"stream": "other-site/gen/joints", "reason": "refused"}),
            15, message="refused samples to be counted")
    finally:
        runner.stop(10)
    error = gateway.publisher.last_error or ""
    print(f"\npublish outside the ACL -> {error} ({refused:.0f} samples refused)")
    assert "broker refused a publish" in error and "ACL" in error
    assert influxdb.count("synthetic") == 0
