"""The RMF simulator: its bytes equal rosbags' CDR of the .msg definitions, the driver reads
back its source values, and the script (routes, faults, drops) is what it says."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from drivers.ros2 import rmf
from simulators.rmf_fleet import RmfSimConfig, RmfSimulator, fleet, msgs
from simulators.rmf_fleet.sim import lift_state, robot_state

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


@pytest.fixture(scope="module")
def store() -> Typestore:
    """ROS 2 Humble's typestore with the simulator's Open-RMF definitions."""
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for ros_type, definition in msgs.MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(definition, ros_type))
    typestore.register(types)
    return typestore


def to_rosbags(obj: Any, store: Typestore) -> Any:
    """The rosbags twin of one of the simulator's IdlStructs."""
    name = type(obj).__idl_typename__.split("::")
    cls = store.types[f"{name[0]}/{name[1]}/{name[3][:-1]}"]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if hasattr(value, "__idl_typename__"):
            value = to_rosbags(value, store)
        elif isinstance(value, list) and value and hasattr(value[0], "__idl_typename__"):
            value = [to_rosbags(v, store) for v in value]
        elif f.name == "available_modes":
            value = np.asarray(value, dtype=np.uint8)
        kwargs[f.name] = value
    return cls(**kwargs)


def published(ticks: int = 120) -> RmfSimulator:
    """A simulator that ran ``ticks`` ticks without DDS (writes recorded only)."""
    sim = RmfSimulator(RmfSimConfig(ticks=ticks))
    sim._writers = {t: type("W", (), {"write": lambda self, m: None})()
                    for t in msgs.TOPIC_TYPES}
    sim.start_ns = T0
    for k in range(ticks):
        sim.tick(k)
    return sim


def test_bytes_equal_rosbags_serialization(store: Typestore) -> None:
    sim = published(60)
    messages = [m for lst in sim.published.values() for m in lst]
    assert {type(m) for m in messages} == {msgs.FleetState, msgs.DoorState, msgs.LiftState}
    for message in messages:
        ours = message.serialize()
        name = type(message).__idl_typename__.split("::")
        ros_type = f"{name[0]}/{name[1]}/{name[3][:-1]}"
        theirs = bytes(store.serialize_cdr(to_rosbags(message, store), ros_type,
                                           little_endian=True))
        assert ours[:4] == b"\x00\x01\x00\x00"  # XCDR1 little endian, as ROS 2 sends
        assert ours.rstrip(b"\x00") == theirs.rstrip(b"\x00")  # Cyclone pads to 4 bytes
        assert len(ours) - len(theirs) in range(4)


def test_driver_decode_reads_the_simulators_values() -> None:
    sim = published(40)
    fleets = sim.published["/fleet_states"]
    for message in fleets:
        decoded = rmf.decode_fleet_state(message.serialize())
        assert decoded.name == "tug"
        for got, sent in zip(decoded.robots, message.robots, strict=True):
            assert (got.name, got.seq, got.mode, got.task_id, got.path_length) == (
                sent.name, sent.seq, sent.mode.mode, sent.task_id, len(sent.path))
            assert got.location.x == np.float32(sent.location.x)
            assert got.location.level_name == sent.location.level_name
            assert (got.location.sec, got.location.nanosec) == (sent.location.t.sec,
                                                                 sent.location.t.nanosec)
    lift = rmf.decode_lift_state(lift_state("lift_main", fleet.lift_at(20), T0).serialize())
    assert (lift.current_floor, lift.destination_floor, lift.motion_state) == ("L1", "L3", 1)
    assert lift.available_floors == ("L1", "L3") and lift.available_modes == b"\x01\x02"


def test_script_faults_drops_and_gaps() -> None:
    sim = published(120)
    assert len(sim.published["/fleet_states"]) == 117  # ticks 30, 31 and 72 dropped
    assert sim.source_gaps("tug1") == [(30, 31, 2), (72, 72, 1)]
    assert sim.source_gaps("tug3") == [(72, 73, 2), (114, 114, 1)]
    modes = {r: [s.mode for s in snaps] for r, snaps in sim.robots_published.items()}
    assert fleet.MODE_EMERGENCY in modes["tug2"] and fleet.MODE_ADAPTER_ERROR in modes["tug3"]
    assert fleet.MODE_EMERGENCY not in modes["tug1"]
    assert len(sim.published["/door_states"]) == 48 and len(sim.published["/lift_states"]) == 24
    levels = {s.level_name for s in sim.robots_published["tug2"]}
    assert levels == {"L1", "L3"}  # pharmacy (L1) <-> ward 3A (L3) through the lift


def test_robot_moves_between_stations() -> None:
    plan = fleet.default_robots()[0]
    at_ed = fleet.robot_at(plan, 0, 0, 40, 20, [])
    assert (at_ed.x, at_ed.y, at_ed.mode, at_ed.path) == (2.0, 4.0, fleet.MODE_IDLE, ())
    arrived = fleet.robot_at(plan, 0, 59, 40, 20, [])
    assert (arrived.x, arrived.y) == fleet.STATIONS["lab"][:2]
    assert arrived.mode == fleet.MODE_MOVING and len(arrived.path) == 1
    state = robot_state(arrived, T0)
    assert state.location.t == msgs.Time(T0 // NS, 0) and state.seq == 59
