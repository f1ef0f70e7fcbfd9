"""The VDA 5050 driver against a real mosquitto: read-only, reconnects, Will, headerId jumps.

The fleet is the simulator (paho clients, one per vehicle); counts come from its history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops.services import MosquittoService
from simulators.agv import AgvFleet, FleetConfig
from tests.helpers import wait_until
from tests.integration.vda5050.vda_broker import DriverThread

pytestmark = pytest.mark.integration
SERIALS = ("agv-01", "agv-02", "agv-03", "agv-04")


@pytest.fixture
def fleet_broker(make_mosquitto: Callable[..., MosquittoService]) -> MosquittoService:
    """The fleet's own broker, logging every packet (to prove the driver never publishes)."""
    return make_mosquitto(extra_config=["log_type all"])


@pytest.fixture
def fleet(fleet_broker: MosquittoService) -> Iterator[AgvFleet]:
    """Four vehicles, 2.0 and 3.0 alternating, connected (ONLINE, factsheet retained)."""
    sim = AgvFleet(FleetConfig(port=fleet_broker.port, vehicles=len(SERIALS)))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def all_states(driver: DriverThread, sim: AgvFleet) -> bool:
    """True when the driver holds every state the simulator sent."""
    return all(driver.states(s) == len(sim.sent(s)) for s in SERIALS)


def test_fleet_flows_and_the_driver_never_publishes(fleet_broker: MosquittoService,
                                                    fleet: AgvFleet) -> None:
    with DriverThread(fleet_broker) as driver:
        wait_until(lambda: driver.driver.sessions == 1 and driver.ctx.state.connected, 10,
                   message="the driver's session")
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10,
                   message="retained ONLINE of every vehicle")
        for _ in range(10):
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="every state")
        summary = driver.call(driver.driver.check())
    assert [driver.states(s) for s in SERIALS] == [10, 10, 10, 10]
    assert summary.startswith(f"fleet broker 127.0.0.1:{fleet_broker.port} ok, 4 vehicle(s)")
    assert "medgw-sim/agv-01" in summary
    assert [v.stats.missing for v in driver.driver.fleet.vehicles.values()] == [0, 0, 0, 0]
    # the broker's own log: the driver subscribed (twice: run and check) and never published
    log = fleet_broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert log.count("Received SUBSCRIBE from medgw-vda5050-fleet") == 2
    assert "Received PUBLISH from agv-sim-agv-01" in log
    assert "Received PUBLISH from medgw-vda5050-fleet" not in log


def test_dropped_states_are_source_gaps_and_a_restart_is_not(fleet_broker: MosquittoService,
                                                             fleet: AgvFleet) -> None:
    with DriverThread(fleet_broker) as driver:
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10,
                   message="every vehicle")
        for _ in range(3):
            fleet.tick()
        fleet.drop_states("agv-01", 4)  # headerIds 3..6 taken, never sent
        fleet.drop_states("agv-03", 1)  # headerId 3
        for _ in range(6):
            fleet.tick()
        fleet.restart("agv-02")  # headerIds from 0 again, after a new ONLINE
        for _ in range(3):
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="every state")
        wait_until(lambda: len(driver.texts("agv-02.events")) >= 4, 10,
                   message="agv-02's connection events")
        gaps = {s: driver.texts(f"{s}.source_gap") for s in SERIALS}
        agv02 = driver.vehicle("agv-02").stats
    assert gaps == {"agv-01": ["state headerId 3..6: 4 lost at the source"],
                    "agv-02": [], "agv-03": ["state headerId 3..3: 1 lost at the source"],
                    "agv-04": []}
    assert [driver.states(s) for s in SERIALS] == [8, 12, 11, 12]
    assert (agv02.missing, agv02.resets) == (0, 0)  # ONLINE started a new run
    assert driver.metrics.registry.get_sample_value(
        "medgw_source_gap_total", {"device": "fleet", "vehicle": "agv-01"}) == 4.0


def test_vehicle_disconnect_sends_its_will(fleet_broker: MosquittoService,
                                           fleet: AgvFleet) -> None:
    with DriverThread(fleet_broker) as driver:
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10, message="vehicles")
        fleet.tick()
        fleet.disconnect("agv-02")  # TCP dropped: the broker publishes the Will
        fleet.disconnect("agv-03")  # a 3.0 vehicle: CONNECTION_BROKEN
        wait_until(lambda: "connection CONNECTIONBROKEN" in driver.texts("agv-03.events"), 10,
                   message="agv-03's Will")
        fleet.connect("agv-02")
        fleet.tick()
        wait_until(lambda: driver.texts("agv-02.events").count("connection ONLINE") == 2, 10,
                   message="agv-02 ONLINE again")
        wait_until(lambda: all_states(driver, fleet), 10, message="every state")
        texts = driver.texts("agv-02.events")
    connections = [t for t in texts if t.startswith("connection")]
    assert connections == ["connection ONLINE", "connection CONNECTIONBROKEN",
                           "connection ONLINE"]
    assert driver.states("agv-02") == 2 and driver.states("agv-03") == 1


def test_fleet_broker_killed_and_restarted(fleet_broker: MosquittoService,
                                          fleet: AgvFleet) -> None:
    with DriverThread(fleet_broker) as driver:
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10, message="vehicles")
        for _ in range(5):
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="states before the kill")
        fleet_broker.kill()
        wait_until(lambda: not driver.ctx.state.connected, 10, message="the loss noticed")
        assert driver.ctx.state.last_error and "connection lost" in driver.ctx.state.last_error
        fleet_broker.start()
        wait_until(lambda: driver.driver.sessions == 2 and driver.ctx.state.connected, 20,
                   message="the driver back")
        wait_until(lambda: all(fleet.reconnects.get(s, 0) == 1 for s in SERIALS), 20,
                   message="the vehicles back")
        wait_until(lambda: all(driver.texts(f"{s}.events").count("connection ONLINE") == 2
                               for s in SERIALS), 10, message="ONLINE again")
        for _ in range(5):
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="states after the restart")
    assert [driver.states(s) for s in SERIALS] == [10, 10, 10, 10]
    assert [len(driver.texts(f"{s}.source_gap")) for s in SERIALS] == [0, 0, 0, 0]
    registry = driver.metrics.registry
    assert registry.get_sample_value("medgw_device_reconnects_total", {"device": "fleet"}) == 1
    gap_s = registry.get_sample_value("medgw_device_gap_seconds_total", {"device": "fleet"})
    assert gap_s is not None and gap_s > 0
    assert driver.ctx.state.last_error is None


def test_one_vehicle_sending_garbage_does_not_stop_the_others(
        fleet_broker: MosquittoService, fleet: AgvFleet) -> None:
    with DriverThread(fleet_broker) as driver:
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10, message="vehicles")
        for kind in ("json", "type", "version"):
            fleet.malformed("agv-04", kind)
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="every state")
        wait_until(lambda: driver.vehicle("agv-04").stats.quarantined == 3, 10,
                   message="three quarantined")
    assert [driver.states(s) for s in SERIALS] == [3, 3, 3, 3]
    assert driver.vehicle("agv-01").stats.quarantined == 0
    assert driver.vehicle("agv-04").stats.missing == 0  # garbage takes no headerId


def test_medgw_session_loss_is_not_counted_as_source_loss(fleet_broker: MosquittoService,
                                                         fleet: AgvFleet) -> None:
    # the first retry comes 1-2 s after the loss: the four ticks below take milliseconds
    with DriverThread(fleet_broker, reconnect_initial_s=2.0, reconnect_max_s=2.0) as driver:
        wait_until(lambda: len(driver.driver.fleet.vehicles) == 4, 10, message="vehicles")
        for _ in range(3):
            fleet.tick()
        wait_until(lambda: all_states(driver, fleet), 10, message="states before")
        # a client taking over medgw's client id: the broker drops medgw's session
        imposter = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="medgw-vda5050-fleet",
                               protocol=mqtt.MQTTv311)
        imposter.connect("127.0.0.1", fleet_broker.port)
        imposter.loop_start()
        try:
            wait_until(lambda: not driver.ctx.state.connected, 10, message="medgw dropped")
            for _ in range(4):
                fleet.tick()  # sent, but medgw is not there to receive
        finally:
            imposter.disconnect()
            imposter.loop_stop()
        wait_until(lambda: driver.driver.sessions == 2 and driver.ctx.state.connected, 20,
                   message="medgw back")
        for _ in range(3):
            fleet.tick()
        wait_until(lambda: all(driver.states(s) == 6 for s in SERIALS), 10,
                   message="the states after the outage")
    assert [driver.states(s) for s in SERIALS] == [6, 6, 6, 6]  # 4 each missed by medgw
    assert [len(driver.texts(f"{s}.source_gap")) for s in SERIALS] == [0, 0, 0, 0]
    gap_s = driver.metrics.registry.get_sample_value("medgw_device_gap_seconds_total",
                                                     {"device": "fleet"})
    assert gap_s is not None and gap_s > 0  # medgw's own loss, reported as such
