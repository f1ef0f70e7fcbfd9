"""Cross-check: rosbags (a peer library) deserializes what cyclonedds serialized, values equal.

The simulator's messages are its own IdlStructs serialized by cyclonedds; rosbags reads
ROS 2 CDR with its own typestore. The first tests compare the bytes ``DataWriter.write``
sends (``serialize()`` padded to 4 bytes, as cyclonedds pads them); the last one takes the
payloads off a real loopback DDS wire.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from cyclonedds._clayer import ddspy_take
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.typesys.store import Typestore

from simulators.surgical_robot import RobotSimulator, SimConfig, arms, cyclone, dds, msgs
from simulators.surgical_robot.topics import SAMPLED_TOPICS, arm_topics

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
STAMPS = st.integers(0, 2**31 - 1).map(lambda s: s * 1_000_000_000 + 123_456_789)


def on_the_wire(message: Any) -> bytes:
    """Return what cyclonedds' DataWriter.write hands to DDS for ``message``."""
    ser: bytes = message.serialize()
    return ser + b"\x00" * (-len(ser) % 4)


def read_back(store: Typestore, data: bytes, ros_type: str) -> Any:
    """Return rosbags' message deserialized from CDR ``data``."""
    return store.deserialize_cdr(data, ros_type)


def _spec(suffix: str, arm: str = "PSM1") -> Any:
    specs = {s.suffix: s for s in arm_topics(arms.arm_model(arm), list(SAMPLED_TOPICS), True)}
    return specs[suffix]


def _stamp(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@settings(max_examples=40, deadline=None)
@given(stamp=STAMPS, rows=st.lists(st.lists(FINITE, min_size=18, max_size=18), min_size=1,
                                   max_size=4))
def test_joint_states_read_back_by_rosbags(typestore: Typestore, stamp: int,
                                           rows: list[list[float]]) -> None:
    spec = _spec("measured_js")
    values = np.asarray(rows).reshape(len(rows), 3, 6)
    stamps = stamp + np.arange(len(rows), dtype=np.int64)
    batch = cyclone.sample_messages(spec, stamps, (values[:, 0], values[:, 1], values[:, 2]))
    for k, message in enumerate(batch):
        back = read_back(typestore, on_the_wire(message), spec.ros_type)
        assert _stamp(back.header) == stamps[k]
        assert back.header.frame_id == ""
        assert list(back.name) == list(arms.PSM_JOINTS)
        for part, column in zip(("position", "velocity", "effort"), range(3), strict=True):
            assert np.array_equal(getattr(back, part), values[k, column])


@settings(max_examples=40, deadline=None)
@given(stamp=STAMPS, row=st.lists(FINITE, min_size=7, max_size=7))
def test_transforms_read_back_by_rosbags(typestore: Typestore, stamp: int,
                                         row: list[float]) -> None:
    spec = _spec("measured_cp")
    (message,) = cyclone.sample_messages(spec, np.array([stamp]), (np.asarray([row]),))
    back = read_back(typestore, on_the_wire(message), spec.ros_type)
    assert _stamp(back.header) == stamp
    assert (back.header.frame_id, back.child_frame_id) == ("PSM1_base", "PSM1")
    t, r = back.transform.translation, back.transform.rotation
    assert [t.x, t.y, t.z, r.x, r.y, r.z, r.w] == row


@pytest.mark.parametrize("suffix,first,second", [("measured_cv", "linear", "angular"),
                                                 ("body/measured_cf", "force", "torque")])
@settings(max_examples=20, deadline=None)
@given(stamp=STAMPS, row=st.lists(FINITE, min_size=6, max_size=6))
def test_twists_and_wrenches_read_back_by_rosbags(typestore: Typestore, suffix: str, first: str,
                                                  second: str, stamp: int,
                                                  row: list[float]) -> None:
    spec = _spec(suffix)
    (message,) = cyclone.sample_messages(spec, np.array([stamp]), (np.asarray([row]),))
    back = read_back(typestore, on_the_wire(message), spec.ros_type)
    body = back.twist if suffix == "measured_cv" else back.wrench
    a, b = getattr(body, first), getattr(body, second)
    assert _stamp(back.header) == stamp and back.header.frame_id == "PSM1"
    assert [a.x, a.y, a.z, b.x, b.y, b.z] == row


@settings(max_examples=40, deadline=None)
@given(stamp=STAMPS, state=st.sampled_from(["DISABLED", "ENABLED", "PAUSED", "FAULT"]),
       homed=st.booleans(), busy=st.booleans(), text=st.text(
           alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_events_read_back_by_rosbags(typestore: Typestore, stamp: int, state: str, homed: bool,
                                     busy: bool, text: str) -> None:
    message = msgs.OperatingState(msgs.Header(msgs.stamp(stamp), ""), state, homed, busy)
    back = read_back(typestore, on_the_wire(message), "crtk_msgs/msg/OperatingState")
    assert (_stamp(back.header), back.state, back.is_homed, back.is_busy) == (
        stamp, state, homed, busy)
    assert read_back(typestore, on_the_wire(msgs.String(text)),
                                     "std_msgs/msg/String").data == text


def test_ros2_dds_names() -> None:
    assert msgs.ros_dds_topic("/PSM1/body/measured_cf") == "rt/PSM1/body/measured_cf"
    assert msgs.JointState.__idl_typename__ == "sensor_msgs::msg::dds_::JointState_"
    assert msgs.OperatingState.__idl_typename__ == "crtk_msgs::msg::dds_::OperatingState_"
    with pytest.raises(ValueError, match="invalid ROS topic"):
        msgs.ros_dds_topic("/")


def test_loopback_config_pins_discovery_to_this_machine() -> None:
    xml = dds.loopback_config()
    assert "<NetworkInterface name=\"lo\"/>" in xml and "<Peer address=\"127.0.0.1\"/>" in xml
    assert "<AllowMulticast>false</AllowMulticast>" in xml
    assert "<IgnoreTypeInformation>1.15,1.17</IgnoreTypeInformation>" in xml
    assert "Compatibility" not in dds.loopback_config(dds.NetworkOptions(
        ignore_type_information=[]))
    with pytest.raises(ValueError, match="vendor id"):
        dds.NetworkOptions(ignore_type_information=["fastdds"])
    assert all(1 <= dds.pick_domain_id() <= 200 for _ in range(20))


def test_foreign_options_objects_are_accepted_by_field() -> None:
    """A caller's own QoS model with the same fields (e.g. a driver's) configures the sim."""
    from pydantic import BaseModel

    class OtherQos(BaseModel):
        reliability: str = "best_effort"
        depth: int = 7
        deadline_ms: int = 3  # not a simulator option: not taken

    config = SimConfig.model_validate({"qos": OtherQos()})
    assert (config.qos.reliability, config.qos.depth) == ("best_effort", 7)


def _take_raw(reader: Any) -> list[bytes]:
    ret = ddspy_take(reader._ref, SampleState.Any | ViewState.Any | InstanceState.Any, 1000)
    return [data for data, info in ret if info.valid_data]


def test_payloads_on_a_loopback_wire_read_back_by_rosbags(typestore: Typestore) -> None:
    """The simulator's measured_js as it crosses DDS: exact count, stamps and model values."""
    n, rate, domain = 50, 500.0, dds.pick_domain_id()
    sim = RobotSimulator(SimConfig(arms=["PSM1"], rate_hz=rate, domain_id=domain,
                                   topics=["measured_js"], events=False, max_samples=n,
                                   qos=dds.QosOptions(depth=1000))).open()
    participant = dds.open_participant(domain)
    qos = dds.make_qos(dds.QosOptions(depth=1000))
    reader = DataReader(participant, Topic(participant, "rt/PSM1/measured_js", msgs.JointState,
                                           qos=qos), qos=qos)
    payloads: list[bytes] = []
    try:
        assert sim.wait_for_subscribers(20.0), "the reader never matched"
        sim.start()
        deadline = time.monotonic() + 20
        while len(payloads) < n and time.monotonic() < deadline:
            payloads += _take_raw(reader)
            time.sleep(0.01)
    finally:
        sim.stop()
        dds.delete_entities(reader, participant)
    assert len(payloads) == n == sim.published("/PSM1/measured_js")
    decoded: list[Any] = [read_back(typestore, p, "sensor_msgs/msg/JointState")
                          for p in payloads]
    stamps = [_stamp(m.header) for m in decoded]
    assert stamps == [sim.start_ns() + k * sim.period_ns for k in range(n)]
    model = arms.arm_model("PSM1", 0)
    t = np.arange(n) / rate
    q = arms.joint_positions(model, t)
    qd = arms.joint_velocities(model, t)
    np.testing.assert_allclose([m.position for m in decoded], q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([m.velocity for m in decoded], qd, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([m.effort for m in decoded], arms.joint_efforts(model, q, qd),
                               rtol=1e-9, atol=1e-12)
