"""``medgw discover vda5050`` against the AGV simulator on a real mosquitto (subscribe only).

Then the printed device block goes through ``config init``, ``config check`` and
``run --test``, which follows the same fleet through the driver.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from gateway.ops.services import MosquittoService, find_binary
from simulators.agv import AgvFleet, FleetConfig
from tests.helpers import wait_until
from tests.integration.dayone.support import free_port, medgw
from tests.integration.gateway.test_secure_mqtt import make_pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def fleet_broker(make_mosquitto: Callable[..., MosquittoService]) -> MosquittoService:
    """The fleet's own broker, logging every packet (to prove discover never publishes)."""
    return make_mosquitto(extra_config=["log_type all"])


@pytest.fixture
def fleet(fleet_broker: MosquittoService) -> Iterator[AgvFleet]:
    """Two vehicles (2.0.0 and 3.0.0) at 10 Hz on the simulator's wall clock."""
    sim = AgvFleet(FleetConfig(port=fleet_broker.port, vehicles=2, rate_hz=10.0))
    sim.start()
    sim.run()
    try:
        wait_until(lambda: len(sim.sent()) >= 4, 10, message="the first states")
        yield sim
    finally:
        sim.stop()


def vehicle_block(output: str, name: str) -> list[str]:
    """The listing lines of one vehicle (its header line and the indented ones after it)."""
    lines = output.splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith(f"  {name}: ")))
    rest = lines[start + 1:]
    end = next((i for i, ln in enumerate(rest) if not ln.startswith("      ")), len(rest))
    return lines[start:start + 1 + end]


def test_discover_vda5050_lists_the_fleet_and_writes_a_block(
        fleet_broker: MosquittoService, fleet: AgvFleet, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = medgw("discover", "vda5050", "--broker", f"127.0.0.1:{fleet_broker.port}",
                  "--seconds", "3", "--name", "agvs", "--out", "fleet.yaml")
    assert found.exit_code == 0, found.output
    out = found.output
    head = next(ln for ln in out.splitlines() if ln.startswith("VDA 5050 fleet broker"))
    assert head.endswith(": 2 vehicle(s)"), head
    one, two = vehicle_block(out, "medgw-sim/agv-01"), vehicle_block(out, "medgw-sim/agv-02")
    assert one[0] == "  medgw-sim/agv-01: interface uagv, topic v2, messages 2.0.0"
    assert two[0] == "  medgw-sim/agv-02: interface uagv, topic v3, messages 3.0.0"
    for lines in (one, two):
        topics = next(ln for ln in lines if "topics seen:" in ln)
        # retained connection and factsheet at subscribe time (once more if it reconnected)
        assert re.search(r"connection \d+, factsheet \d+, state \d+$", topics), topics
        assert "      connection: ONLINE" in lines and "      maps: hospital-L1" in lines
        state = next(ln for ln in lines if ln.startswith("      state: "))
        valid, rate = int(state.split()[1]), float(state.split(" at ")[1].split()[0])
        assert valid > 1 and rate > 0, state
        assert state.endswith(", 0 headerId(s) skipped"), state
        assert not any("refused" in ln for ln in lines)
    assert "manufacturers: medgw-sim (2)" in out
    assert ("protocol versions (vehicles): topic v2 (1), v3 (1);"
            " messages 2.0.0 (1), 3.0.0 (1)") in out

    device = yaml.safe_load(Path("fleet.yaml").read_text())[0]
    options = device["options"]
    assert device["name"] == "agvs" and device["driver"] == "vda5050"
    assert options["broker"] == {"host": "127.0.0.1", "port": fleet_broker.port}
    assert (options["interface_name"], options["major_versions"],
            options["manufacturer"]) == ("uagv", ["v2", "v3"], "medgw-sim")
    assert options["rate_hz"] > 0 and options["maps"] == ["hospital-L1"]

    # read-only: the broker saw discover subscribe and never publish
    log = fleet_broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Received SUBSCRIBE from medgw-vda5050-agvs-discover-" in log
    assert "Received PUBLISH from medgw-vda5050" not in log

    init = medgw("config", "init", "-o", "medgw.yaml", "--device", "fleet.yaml", "--site",
                 "ward", "--gateway", "edge", "--spool-dir", "spool", "--no-interactive")
    assert init.exit_code == 0, init.output
    check = medgw("config", "check", "medgw.yaml")
    assert check.exit_code == 0, check.output
    dry = medgw("run", "--test", "-c", "medgw.yaml", "--seconds", "2")
    assert dry.exit_code == 0, dry.output
    assert "device agvs (vda5050): connected" in dry.output
    for serial in ("agv-01", "agv-02"):
        stream = next(ln for ln in dry.output.splitlines()
                      if ln.startswith(f"  stream {serial}:"))
        assert int(stream.split(": ")[1].split()[0]) > 0, stream


def test_discover_vda5050_says_when_nothing_is_there(fleet_broker: MosquittoService,
                                                     tmp_path: Path) -> None:
    found = medgw("discover", "vda5050", "--broker", f"127.0.0.1:{fleet_broker.port}",
                  "--seconds", "1", "--interface", "uagv", "--out", str(tmp_path / "f.yaml"))
    assert found.exit_code == 0, found.output
    assert "0 vehicle(s)" in found.output and "no vehicle published" in found.output
    options = yaml.safe_load((tmp_path / "f.yaml").read_text())[0]["options"]
    assert options["interface_name"] == "uagv" and options["manufacturer"] == "+"


def test_discover_vda5050_names_a_broker_it_cannot_reach() -> None:
    port = free_port()  # nothing listens there
    found = medgw("discover", "vda5050", "--broker", f"127.0.0.1:{port}", "--seconds", "1")
    assert found.exit_code == 1
    assert f"fleet broker 127.0.0.1:{port}: cannot connect" in found.output
    bad = medgw("discover", "vda5050", "--broker", "127.0.0.1:http")
    assert bad.exit_code == 1 and "give HOST or HOST:PORT" in bad.output


def test_discover_vda5050_over_tls_with_a_password_and_a_read_only_acl(
        make_mosquitto: Callable[..., MosquittoService], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    tool = find_binary("mosquitto_passwd", "mosquitto")
    subprocess.run([tool, "-c", "-b", str(passwd), "reader", "reader-secret"], check=True)
    subprocess.run([tool, "-b", str(passwd), "fleet", "fleet-secret"], check=True)
    acl = tmp_path / "acl"
    acl.write_text("user reader\ntopic read uagv/#\nuser fleet\ntopic readwrite uagv/#\n")
    broker = make_mosquitto(
        allow_anonymous=False, extra_config=[f"password_file {passwd}", f"acl_file {acl}"],
        listener_config=[f"cafile {pki['ca']}", f"certfile {pki['cert']}",
                         f"keyfile {pki['key']}", "tls_version tlsv1.2"])
    sim = AgvFleet(FleetConfig(port=broker.port, vehicles=1, rate_hz=10.0, username="fleet",
                               password="fleet-secret", ca_file=str(pki["ca"])))
    sim.start()
    sim.run()
    monkeypatch.setenv("MEDGW_FLEET_PASSWORD", "reader-secret")
    try:
        found = medgw("discover", "vda5050", "--broker", f"127.0.0.1:{broker.port}",
                      "--seconds", "2", "--username", "reader", "--ca-file", pki["ca"],
                      "--out", tmp_path / "fleet.yaml")
    finally:
        sim.stop()
    assert found.exit_code == 0, found.output
    assert "  medgw-sim/agv-01: interface uagv, topic v2, messages 2.0.0" in found.output
    assert "reader-secret" not in found.output
    broker_block = yaml.safe_load((tmp_path / "fleet.yaml").read_text())[0]["options"]["broker"]
    assert broker_block == {"host": "127.0.0.1", "port": broker.port, "username": "reader",
                            "password": {"env": "MEDGW_FLEET_PASSWORD"},
                            "tls": {"ca_file": str(pki["ca"])}}
