"""The driver on a fleet broker with TLS, a password from the environment and a read-only ACL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.ops.services import MosquittoService, find_binary
from simulators.agv import AgvFleet, FleetConfig
from tests.helpers import wait_until
from tests.integration.gateway.test_secure_mqtt import make_pki
from tests.integration.vda5050.vda_broker import DriverThread

pytestmark = pytest.mark.integration
READER, READER_PASSWORD = "medgw-reader", "reader-secret-1"
FLEET, FLEET_PASSWORD = "fleet", "fleet-secret-2"


@pytest.fixture
def secure_fleet_broker(make_mosquitto: Callable[..., MosquittoService],
                        tmp_path: Path) -> tuple[MosquittoService, Path]:
    """TLS only, passwords, and an ACL: medgw may read uagv/#, never write anything."""
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    tool = find_binary("mosquitto_passwd", "mosquitto")
    subprocess.run([tool, "-c", "-b", str(passwd), READER, READER_PASSWORD], check=True)
    subprocess.run([tool, "-b", str(passwd), FLEET, FLEET_PASSWORD], check=True)
    acl = tmp_path / "acl"
    acl.write_text(f"user {READER}\ntopic read uagv/#\nuser {FLEET}\ntopic readwrite uagv/#\n")
    broker = make_mosquitto(
        allow_anonymous=False,
        extra_config=[f"password_file {passwd}", f"acl_file {acl}", "log_type all"],
        listener_config=[f"cafile {pki['ca']}", f"certfile {pki['cert']}",
                         f"keyfile {pki['key']}", "tls_version tlsv1.2"])
    return broker, pki["ca"]


def test_tls_password_and_read_only_acl(secure_fleet_broker: tuple[MosquittoService, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = secure_fleet_broker
    monkeypatch.setenv("TEST_FLEET_PASSWORD", READER_PASSWORD)
    sim = AgvFleet(FleetConfig(port=broker.port, vehicles=2, username=FLEET,
                               password=FLEET_PASSWORD, ca_file=str(ca)))
    sim.start()
    try:
        broker_options = {"port": broker.port, "username": READER,
                          "password": {"env": "TEST_FLEET_PASSWORD"},
                          "tls": {"ca_file": str(ca)}, "client_id": "medgw-secure"}
        with DriverThread(broker, broker=broker_options) as driver:
            wait_until(lambda: len(driver.driver.fleet.vehicles) == 2, 10,
                       message="both vehicles over TLS")
            for _ in range(5):
                sim.tick()
            wait_until(lambda: all(driver.states(s) == len(sim.sent(s))
                                   for s in ("agv-01", "agv-02")), 10, message="states")
        assert [driver.states(s) for s in ("agv-01", "agv-02")] == [5, 5]
    finally:
        sim.stop()
    log = broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Received SUBSCRIBE from medgw-secure" in log
    assert "Received PUBLISH from medgw-secure" not in log


def test_wrong_password_is_a_device_error_and_no_session(
        secure_fleet_broker: tuple[MosquittoService, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = secure_fleet_broker
    monkeypatch.setenv("TEST_FLEET_PASSWORD", "wrong")
    broker_options = {"port": broker.port, "username": READER,
                      "password": {"env": "TEST_FLEET_PASSWORD"}, "tls": {"ca_file": str(ca)}}
    with DriverThread(broker, broker=broker_options) as driver:
        wait_until(lambda: driver.ctx.state.last_error, 10, message="the refusal")
        error = driver.ctx.state.last_error
        assert driver.driver.sessions == 0 and not driver.ctx.state.connected
    assert error is not None and "connection refused" in error
    assert "wrong" not in error
