"""HIL: AGV simulator (v2 + v3) -> fleet broker -> vda5050 driver -> gateway -> broker ->
ingest -> InfluxDB, exact by InfluxQL, with source gaps where states were dropped on purpose.

Two real mosquittos (the fleet's and medgw's), the gateway daemon, one ingest worker and
influxd. Expected counts come from the simulator's history of headerIds taken and sent.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.vda5050 import Vda5050Driver
from drivers.vda5050.mapping import EventCode
from gateway.ops.services import MosquittoService
from simulators.agv import AgvFleet, FleetConfig
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, wait_until

pytestmark = [pytest.mark.hil, pytest.mark.integration]

SERIALS = ("agv-01", "agv-02", "agv-03", "agv-04")  # 2.0.0, 3.0.0, 2.1.0, 3.0.0
DROPS = {"agv-01": [(10, 3), (20, 1)], "agv-02": [(15, 2)], "agv-03": [], "agv-04": [(5, 4)]}


def where(stream: str) -> str:
    """InfluxQL filter of one stream of the fleet device."""
    return f"\"device\"='agv-fleet' AND \"stream\"='{stream}'"


def run_script(sim: AgvFleet) -> None:
    """30 ticks with dropped states, a FATAL error, an e-stop and a field violation."""
    for tick in range(30):
        for serial, drops in DROPS.items():
            for at, count in drops:
                if at == tick:
                    sim.drop_states(serial, count)
        if tick == 8:
            sim.error("agv-02", "batteryFault", "FATAL", "cell 3 over temperature")
            sim.estop("agv-03", "MANUAL")
        if tick == 12:
            sim.field_violation("agv-04")
        if tick == 18:
            sim.clear_errors("agv-02")
            sim.estop("agv-03", "NONE")
            sim.field_violation("agv-04", False)
        sim.tick()


def test_mixed_fleet_lands_in_influxdb_exactly(
        mosquitto: MosquittoService, make_mosquitto: Callable[..., MosquittoService],
        influxdb: InfluxTarget) -> None:
    fleet_broker = make_mosquitto()
    sim = AgvFleet(FleetConfig(port=fleet_broker.port, vehicles=4, rate_hz=10,
                               versions=("2.0.0", "3.0.0", "2.1.0", "3.0.0")))
    device = {"name": "agv-fleet", "driver": "vda5050", "options": {
        "broker": {"port": fleet_broker.port}, "maps": ["hospital-L1"], "rate_hz": 10}}
    loaded = chain_config(mosquitto, influxdb, [device])
    with Chain(loaded) as chain:
        driver = chain.gateway.devices[0].driver
        assert isinstance(driver, Vda5050Driver)
        wait_until(lambda: driver.sessions == 1, 15, message="the driver's fleet session")
        sim.start()
        try:
            wait_until(lambda: len(driver.fleet.vehicles) == 4, 15, message="every vehicle")
            run_script(sim)

            def delivered() -> bool:
                return all(driver.fleet.vehicles[("medgw-sim", s)].stats.states
                           == len(sim.sent(s)) for s in SERIALS)

            wait_until(delivered, 20, message="every sent state in the driver")
        finally:
            sim.stop()
        wait_until(lambda: all(
            "connection OFFLINE" in " ".join(_texts(chain, f"{s}.events")) for s in SERIALS),
            15, message="OFFLINE of every vehicle")
        events = {s: _texts(chain, f"{s}.events") for s in SERIALS}
        chain.stop()
    assert chain.all_acked

    for serial in SERIALS:
        sent = sim.sent(serial)
        taken = [p for p in sim.history if p.serial == serial]
        # every state sent is one point, with its own headerId
        assert influxdb.count("vda5050_state", "header_id", where(serial)) == len(sent)
        rows = influxdb.query(f"SELECT header_id FROM vda5050_state WHERE {where(serial)}")
        assert sorted(int(r["header_id"]) for r in rows) == [p.header_id for p in sent]
        # the source gaps: exactly the headerIds dropped on purpose
        dropped = [p.header_id for p in taken if p.dropped]
        gaps = influxdb.query("SELECT from_seq, to_seq, missing FROM medgw_source_gap WHERE "
                              f"{where(serial + '.source_gap')} ORDER BY time")
        stored = [h for g in gaps for h in range(int(g["from_seq"]), int(g["to_seq"]) + 1)]
        assert stored == dropped, serial
        assert sum(int(g["missing"]) for g in gaps) == sum(c for _a, c in DROPS[serial])
        assert len(gaps) == len(DROPS[serial])
        # every event the driver produced is stored
        assert influxdb.count("vda5050_event", "code", where(f"{serial}.events")) == len(
            events[serial]), serial
    assert influxdb.count("medgw_gap", "missing") == 0  # nothing lost inside medgw

    def event_texts(serial: str, code: EventCode) -> list[str]:
        rows = influxdb.query(f"SELECT \"text\" FROM vda5050_event WHERE "
                              f"{where(serial + '.events')} AND code = {int(code)} "
                              "ORDER BY time")
        return [r["text"] for r in rows]

    assert event_texts("agv-02", EventCode.ERROR) == [
        "FATAL batteryFault: cell 3 over temperature",
        "FATAL batteryFault: cell 3 over temperature (cleared)"]
    assert event_texts("agv-03", EventCode.ESTOP) == ["e-stop MANUAL", "e-stop released"]
    assert event_texts("agv-04", EventCode.FIELD_VIOLATION) == [
        "protective field violated", "protective field clear"]
    for serial in SERIALS:
        assert event_texts(serial, EventCode.CONNECTION) == ["connection ONLINE",
                                                            "connection OFFLINE"]
        assert len(event_texts(serial, EventCode.FACTSHEET)) == 1
    # 2.x and 3.0 vehicles land in the same fields: battery and position of every vehicle
    for serial in SERIALS:
        rows = influxdb.query("SELECT battery_charge, x, map FROM vda5050_state WHERE "
                              f"{where(serial)} ORDER BY time DESC LIMIT 1")
        assert 0 < rows[0]["battery_charge"] <= 100 and rows[0]["map"] == 1.0


def _texts(chain: Chain, stream: str) -> list[str]:
    ring = chain.gateway.store.ring(f"test-site/agv-fleet/{stream}")
    batch = ring.snapshot()
    return list(batch.text or ()) if batch is not None else []
