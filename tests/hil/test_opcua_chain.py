"""HIL: carrier simulator -> OPC UA driver -> MQTT -> ingest -> InfluxDB, exact by InfluxQL.

Real components only: the asyncua simulator (in a thread with its own event loop, manual
clock so every value is known), the gateway daemon with the opcua driver, mosquitto,
the ingest worker and influxd. Expected counts come from the simulator's write history.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from asyncua import ua

from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.mapping import snake_case
from gateway.ops.services import MosquittoService
from simulators.transport_carrier import CarrierSim, SimConfig, WriteRecord
from simulators.transport_carrier.fleet import COLD_CHAIN_MAX_C, COLD_CHAIN_MIN_C
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, wait_until

pytestmark = [pytest.mark.hil, pytest.mark.integration]

T = TypeVar("T")
CARRIERS = 4
NUMERIC = ("RouteProgress", "RoutePosition", "Speed", "Battery", "PayloadTemperature",
           "DoorOpen", "MissionState", "SpecimenCount", "ActiveAlarm")


class SimThread:
    """The simulator on its own event loop in a thread (the gateway runs its own loop)."""

    def __init__(self, config: SimConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="carrier-sim",
                                       daemon=True)
        self.sim = CarrierSim(config)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the simulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def history(self) -> list[WriteRecord]:
        """Copy the write history (on the simulator's loop, so it is consistent)."""

        async def copy() -> list[WriteRecord]:
            return list(self.sim.history)

        return self.call(copy())

    def start(self) -> None:
        """Start the loop thread and the server."""
        self.thread.start()
        self.call(self.sim.start())

    def stop(self) -> None:
        """Stop the server, the loop and the thread."""
        try:
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def carrier_sim() -> Iterator[SimThread]:
    """Four carriers, manual clock, no security, on a free loopback port."""
    sim = SimThread(SimConfig(port=free_port(), carriers=CARRIERS, manual=True,
                              security=("None",)))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def opcua_device(sim: CarrierSim) -> dict[str, Any]:
    """The device entry of the gateway config (as a user would write it)."""
    return {"name": "carrier-fleet", "driver": "opcua", "options": {
        "endpoint": sim.endpoint, "security_policy": "None",
        "browse": [{"pattern": "Fleet/*/*"}], "publishing_interval_ms": 50,
        "sampling_interval_ms": 0, "queue_size": 1000, "rediscover_interval_s": 0}}


def test_carrier_fleet_lands_in_influxdb_exactly(mosquitto: MosquittoService,
                                                 influxdb: InfluxTarget,
                                                 carrier_sim: SimThread) -> None:
    sim = carrier_sim.sim
    loaded = chain_config(mosquitto, influxdb, [opcua_device(sim)])
    with Chain(loaded) as chain:
        driver = chain.gateway.devices[0].driver
        assert isinstance(driver, OpcUaDriver)
        wait_until(lambda: driver.stats.changes == CARRIERS * len(NUMERIC), 20,
                   message="the initial values of every carrier")
        carrier_sim.call(sim.step(20))
        carrier_sim.call(sim.temperature_excursion("carrier-02", 11.5))
        carrier_sim.call(sim.sensor_bad("carrier-03", "Battery"))
        carrier_sim.call(sim.step(10))
        carrier_sim.call(sim.sensor_ok("carrier-03", "Battery"))
        carrier_sim.call(sim.step(2))
        history = carrier_sim.history()
        changes = sum(1 for r in history if r.variable in NUMERIC)
        wait_until(lambda: driver.stats.changes == changes, 20,
                   message=f"{changes} data changes in the driver")
        chain.stop()
    assert chain.all_acked

    good = [r for r in history if r.variable in NUMERIC and r.status == 0]
    for carrier in sim.carrier_names:
        where = f"\"stream\"='{carrier}' AND \"device\"='carrier-fleet'"
        # every value the carrier wrote, field by field
        for variable in NUMERIC:
            written = sum(1 for r in good if r.carrier == carrier and r.variable == variable)
            assert influxdb.count("carrier", snake_case(variable), where) == written, (
                carrier, variable)
        # one point per source timestamp (+ the Bad point of carrier-03)
        stamps = {r.source_ns for r in good if r.carrier == carrier}
        bad = 1 if carrier == "carrier-03" else 0
        assert influxdb.count("carrier", "quality", where) == len(stamps) + bad

    # the Bad battery: one point, quality 2, no value, right after that tick's good values
    bad_write = next(r for r in history if r.status != 0)
    assert bad_write.status == ua.StatusCodes.BadSensorFailure
    rows = influxdb.query('SELECT "quality", "battery", "speed" FROM "carrier" '
                          "WHERE \"quality\" = 2 AND \"stream\" = 'carrier-03'")
    assert [r["time"] for r in rows] == [bad_write.source_ns + 1]
    assert rows[0]["battery"] is None and rows[0]["speed"] is None

    # the excursion: exact value at the exact source time
    hot = next(r for r in history if r.variable == "PayloadTemperature" and r.value == 11.5)
    rows = influxdb.query('SELECT "payload_temperature" FROM "carrier" WHERE '
                          "\"stream\"='carrier-02' AND \"payload_temperature\" > 8")
    assert [(r["time"], r["payload_temperature"]) for r in rows] == [(hot.source_ns, 11.5)]

    # events: derived from what the simulator did
    alarms = {c: [r.value for r in history if r.carrier == c and r.variable == "ActiveAlarm"]
              for c in sim.carrier_names}
    temps = {c: [r.value for r in good if r.carrier == c and r.variable == "PayloadTemperature"]
             for c in sim.carrier_names}
    for carrier in ("carrier-01", "carrier-04"):
        assert alarms[carrier] == [0]
        assert all(COLD_CHAIN_MIN_C <= t <= COLD_CHAIN_MAX_C for t in temps[carrier])
    assert alarms["carrier-02"] == [0, 301]
    expected_events = {"carrier-01": 0, "carrier-02": 2, "carrier-03": 2, "carrier-04": 0}
    for carrier, count in expected_events.items():
        where = f"\"stream\"='{carrier}.events'"
        assert influxdb.count("carrier_event", "code", where) == count, carrier
    rows = influxdb.query('SELECT "code", "active", "value", "text" FROM "carrier_event" '
                          "WHERE \"stream\"='carrier-02.events' ORDER BY time")
    assert [(r["time"], r["code"], r["active"], r["value"]) for r in rows] == [
        (hot.source_ns, 2.0, 1.0, 11.5), (hot.source_ns + 1, 4.0, 1.0, 301.0)]
    assert rows[0]["text"] == "payload temperature 11.50 °C outside 2-8 °C"
    rows = influxdb.query('SELECT "text" FROM "carrier_event" '
                          "WHERE \"stream\"='carrier-03.events' ORDER BY time")
    assert [r["text"] for r in rows] == ["battery: BadSensorFailure", "battery: good again"]
