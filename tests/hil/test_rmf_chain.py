"""HIL: Open-RMF fleet simulator -> DDS -> ros2 driver (cyclonedds) -> MQTT -> ingest -> InfluxDB.

Exact: every RobotState published reaches its robot's stream, every door and lift state its
stream, the FleetStates dropped on purpose are source gaps exactly where the seq numbers
are missing, and the events (first state, mode changes incl. EMERGENCY and ADAPTER_ERROR,
level and task changes, door and lift changes) are the ones the published states imply.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from drivers.ros2 import dds
from gateway.model import Quality
from gateway.ops.services import MosquittoService
from simulators.rmf_fleet import RmfSimConfig, RmfSimulator, fleet
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, unique_domain_id, wait_until

pytestmark = [pytest.mark.hil, pytest.mark.integration]

TICKS = 120
RATE = 20.0
DROPS = [30, 31, 72]
MODES = {0: "IDLE", 2: "MOVING", 5: "EMERGENCY", 8: "ADAPTER_ERROR"}
DOORS = {0: "CLOSED", 1: "MOVING", 2: "OPEN"}


def robot_events(snaps: list[fleet.RobotSnap]) -> list[tuple[float, str]]:
    """The (code, text) events the driver must derive from what was published, in order."""
    code = {5: 1.0, 8: 2.0}
    first = snaps[0]
    out = [(code.get(first.mode, 0.0), f"{first.name}: mode {MODES[first.mode]} (first state)")]
    for prev, snap in itertools.pairwise(snaps):
        name = snap.name
        if snap.mode != prev.mode:
            out.append((code.get(snap.mode, 0.0),
                        f"{name}: mode {MODES[prev.mode]} -> {MODES[snap.mode]}"))
        if snap.level_name != prev.level_name:
            out.append((3.0, f"{name}: level {prev.level_name} -> {snap.level_name}"))
        if snap.task_id != prev.task_id:
            out.append((4.0, f"{name}: task {prev.task_id} -> {snap.task_id}"))
    return out


def door_events(modes: list[int], door: str) -> list[str]:
    """The door's event texts implied by its published modes."""
    out = [f"{door}: {DOORS[modes[0]]} (first state)"]
    out += [f"{door}: {DOORS[a]} -> {DOORS[b]}" for a, b in itertools.pairwise(modes)
            if a != b]
    return out


def test_rmf_fleet_to_influxdb_exact(mosquitto: MosquittoService,
                                     influxdb: InfluxTarget) -> None:
    """Robots, doors, a lift, an EMERGENCY, an ADAPTER_ERROR and dropped seq numbers."""
    domain = unique_domain_id()
    topics: list[dict[str, Any]] = [
        {"name": "/fleet_states", "type": "rmf_fleet_msgs/msg/FleetState", "rate_hz": RATE},
        {"name": "/door_states", "type": "rmf_door_msgs/msg/DoorState", "rate_hz": RATE / 5},
        {"name": "/lift_states", "type": "rmf_lift_msgs/msg/LiftState", "rate_hz": RATE / 5}]
    device = {"name": "rmf", "driver": "ros2", "options": {
        "domain_id": domain, "transport": "cyclonedds", "topics": topics,
        "stale_periods": 40}}
    loaded = chain_config(mosquitto, influxdb, [device])
    sim = RmfSimulator(RmfSimConfig.model_validate(dict(
        domain_id=domain, rate_hz=RATE, ticks=TICKS, drop_ticks=DROPS,
        network={"config_xml": dds.loopback_config()}))).open()
    robots = [r.name for r in sim.config.robots]
    try:
        with Chain(loaded) as chain:
            assert sim.wait_for_subscribers(20.0), "the gateway did not subscribe every topic"
            sim.start()
            assert sim.done.wait(TICKS / RATE + 30), "the simulator did not finish"
            store = chain.gateway.store

            def ring_count(stream: str) -> int:
                try:
                    batch = store.ring(f"test-site/rmf/{stream}").snapshot()
                except KeyError:
                    return 0
                return 0 if batch is None else len(batch.timestamps_ns)

            wait_until(lambda: all(ring_count(f"fleet_states.tug.{r}") == TICKS - len(DROPS)
                                   for r in robots), 30, message="every robot state in a ring")
            wait_until(lambda: all(ring_count(s) == TICKS // 5 for s in (
                "lift_states.lift_main", "door_states.lab_door", "door_states.pharmacy_door")),
                30, message="every door and lift state in its ring")
            chain.stop()
        assert chain.all_acked
        assert chain.acked() == chain.produced()
        registry = chain.gateway.metrics.registry
        for robot in robots:
            missing = sum(g[2] for g in sim.source_gaps(robot))
            assert registry.get_sample_value("medgw_source_gap_total", {
                "device": "rmf", "vehicle": f"tug/{robot}"}) == missing == 3
    finally:
        sim.stop()

    for robot in robots:
        stream = f"\"stream\"='fleet_states.tug.{robot}' AND \"device\"='rmf'"
        published = sim.robots_published[robot]
        assert len(published) == TICKS - len(DROPS) == 117
        assert influxdb.count("rmf_robot", "x", f"{stream} AND \"quality\"=0") == 117
        rows = influxdb.query(f"SELECT x, y, mode, source_seq, battery FROM rmf_robot "
                              f"WHERE {stream} ORDER BY time")
        got = np.array([[r["x"], r["y"], r["mode"], r["source_seq"], r["battery"]]
                        for r in rows])
        want = np.array([[s.x, s.y, s.mode, s.seq, s.battery_percent] for s in published],
                        dtype=np.float32).astype(np.float64)  # float32 on the wire
        assert np.array_equal(got, want)
        gaps = influxdb.query(f"SELECT from_seq, to_seq, missing, text FROM medgw_source_gap "
                              f"WHERE \"stream\"='fleet_states.tug.{robot}.source_gap' "
                              "ORDER BY time")
        assert [(r["from_seq"], r["to_seq"], r["missing"]) for r in gaps] == \
            [tuple(float(v) for v in g) for g in sim.source_gaps(robot)]
        assert [r["text"] for r in gaps] == [
            f"{robot}: seq {a}..{b}: {n} lost at the source" for a, b, n in
            sim.source_gaps(robot)]
        events = influxdb.query(f"SELECT code, text FROM rmf_robot_event WHERE "
                                f"\"stream\"='fleet_states.tug.{robot}.events' ORDER BY time")
        assert [(r["code"], r["text"]) for r in events] == robot_events(published)
    assert sim.source_gaps("tug1") == [(30, 31, 2), (72, 72, 1)]  # seq0 0
    assert sim.source_gaps("tug2") == [(530, 531, 2), (572, 572, 1)]  # seq0 500
    emergency = influxdb.query("SELECT code, mode, previous, text FROM rmf_robot_event "
                               "WHERE \"stream\"='fleet_states.tug.tug2.events' AND code=1")
    assert [(r["mode"], r["previous"], r["text"]) for r in emergency] == [
        (5.0, 2.0, "tug2: mode MOVING -> EMERGENCY")]
    adapter = influxdb.query("SELECT mode, text FROM rmf_robot_event "
                             "WHERE \"stream\"='fleet_states.tug.tug3.events' AND code=2")
    assert [(r["mode"], r["text"]) for r in adapter] == [
        (8.0, "tug3: mode MOVING -> ADAPTER_ERROR")]

    doors = sim.published["/door_states"]
    for door in sim.config.doors:
        modes = [m.current_mode.value for m in doors if m.door_name == door]
        assert len(modes) == TICKS // 5 == 24
        where = f"\"stream\"='door_states.{door}' AND \"quality\"={Quality.GOOD}"
        assert influxdb.count("rmf_door", "mode", where) == 24
        texts = influxdb.query(f"SELECT text FROM rmf_door_event WHERE "
                               f"\"stream\"='door_states.{door}.events' ORDER BY time")
        assert [r["text"] for r in texts] == door_events(modes, door)
    assert influxdb.count("rmf_lift", "current_floor",
                          "\"stream\"='lift_states.lift_main'") == 24
    lift_texts = [r["text"] for r in influxdb.query(
        "SELECT text FROM rmf_lift_event WHERE \"stream\"='lift_states.lift_main.events' "
        "ORDER BY time")]
    assert lift_texts[:4] == ["lift_main: at L1, door OPEN, mode AGV (first state)",
                              "lift_main: door OPEN -> CLOSED",
                              "lift_main: motion STOPPED -> UP",
                              "lift_main: floor L1 -> L3"]
    assert lift_texts.count("lift_main: floor L1 -> L3") == 2
    assert lift_texts.count("lift_main: floor L3 -> L1") == 1
