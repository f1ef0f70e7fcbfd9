"""The mapping table and the strict CDR decoders, against payloads serialized by rosbags."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ros2 import msgs
from drivers.ros2.cdr import CdrError, CdrReader, CdrWriter
from drivers.ros2.mapping import (
    CRTK_STATES,
    TYPE_TABLE,
    Family,
    MappingError,
    decode,
    joint_fields,
    sanitize_channel,
    stream_name,
    type_mapping,
)
from tests.unit.drivers.ros2.strategies import MESSAGES

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def expected_flat(message: Any) -> tuple[list[float], str | None]:
    """Flatten a message the way the contract says (computed from the message's fields)."""
    m = message
    if isinstance(m, msgs.JointState):
        arrays = [a for a in (m.position, m.velocity, m.effort) if a]
        return [arr[j] for j in range(len(m.name)) for arr in arrays], None
    if isinstance(m, msgs.TransformStamped):
        m = m.transform
    if isinstance(m, msgs.PoseStamped):
        m = m.pose
    if isinstance(m, msgs.Transform):
        t, q = m.translation, m.rotation
        return [t.x, t.y, t.z, q.x, q.y, q.z, q.w], None
    if isinstance(m, msgs.Pose):
        p, q = m.position, m.orientation
        return [p.x, p.y, p.z, q.x, q.y, q.z, q.w], None
    if isinstance(m, msgs.TwistStamped):
        m = m.twist
    if isinstance(m, msgs.Twist):
        return [m.linear.x, m.linear.y, m.linear.z, m.angular.x, m.angular.y, m.angular.z], None
    if isinstance(m, msgs.WrenchStamped):
        m = m.wrench
    if isinstance(m, msgs.Wrench):
        return [m.force.x, m.force.y, m.force.z, m.torque.x, m.torque.y, m.torque.z], None
    if isinstance(m, msgs.OperatingState | msgs.MedgwOperatingState):
        code = dict(CRTK_STATES).get(m.state, -1.0)
        return [code, float(m.is_homed), float(m.is_busy)], m.state
    if isinstance(m, msgs.FleetState):
        return [float(len(m.robots))], m.name
    if isinstance(m, msgs.DoorState):
        return [float(m.current_mode.value)], m.door_name
    if isinstance(m, msgs.LiftState):
        floors = list(m.available_floors)
        at = floors.index(m.current_floor) if m.current_floor in floors else -1
        return [float(at)], m.lift_name
    assert isinstance(m, msgs.String)
    return [0.0], m.data


def message_stamp(message: Any) -> tuple[int, int] | None:
    """The (sec, nanosec) a decoder must report: header.stamp, door_time, lift_time."""
    for name in ("header", "door_time", "lift_time"):
        value = getattr(message, name, None)
        if value is not None:
            stamp = value.stamp if name == "header" else value
            return stamp.sec, stamp.nanosec
    return None


def test_table_is_frozen_and_covers_the_brief() -> None:
    with pytest.raises(TypeError):
        TYPE_TABLE["x"] = TYPE_TABLE["std_msgs/msg/String"]  # type: ignore[index]
    measurements = {k: v.measurement for k, v in TYPE_TABLE.items()}
    assert measurements["sensor_msgs/msg/JointState"] == "joint_state"
    for name in ("TransformStamped", "Transform", "PoseStamped", "Pose"):
        assert measurements[f"geometry_msgs/msg/{name}"] == "pose"
    for name in ("TwistStamped", "Twist"):
        assert measurements[f"geometry_msgs/msg/{name}"] == "twist"
    for name in ("WrenchStamped", "Wrench"):
        assert measurements[f"geometry_msgs/msg/{name}"] == "wrench"
    assert TYPE_TABLE["crtk_msgs/msg/OperatingState"].is_event
    assert TYPE_TABLE["std_msgs/msg/String"].is_event
    assert TYPE_TABLE["geometry_msgs/msg/Twist"].fields == ("vx", "vy", "vz", "wx", "wy", "wz")
    assert TYPE_TABLE["geometry_msgs/msg/Wrench"].fields == ("fx", "fy", "fz", "tx", "ty", "tz")
    assert TYPE_TABLE["geometry_msgs/msg/Pose"].fields == ("x", "y", "z", "qx", "qy", "qz",
                                                           "qw")
    assert type_mapping("sensor_msgs/JointState") is TYPE_TABLE["sensor_msgs/msg/JointState"]
    assert type_mapping("nav_msgs/msg/Odometry") is None
    assert set(TYPE_TABLE) <= set(msgs.IDL_TYPES)


@pytest.mark.parametrize("ros_type", sorted(TYPE_TABLE))
@pytest.mark.parametrize("little_endian", [True, False])
@SETTINGS
@given(data=st.data())
def test_decode_rosbags_payloads(ros_type: str, little_endian: bool, data: st.DataObject,
                                 ros_cdr: Any) -> None:
    message = data.draw(MESSAGES[ros_type])
    payload = ros_cdr(message, little_endian=little_endian)
    mapping = TYPE_TABLE[ros_type]
    topic = "/PSM1/status"
    decoded = decode(mapping, payload, topic)
    values, text = expected_flat(message)
    assert decoded.values.tolist() == values
    assert decoded.text == text
    stamp = message_stamp(message)
    if stamp is not None:
        assert (decoded.sec, decoded.nanosec) == stamp
        assert decoded.has_stamp
    else:
        assert not decoded.has_stamp
    if decoded.value_offsets is not None:
        fmt = "<f8" if little_endian else ">f8"
        at = [float(np.frombuffer(payload, fmt, 1, int(o))[0]) for o in decoded.value_offsets]
        assert at == values
    if isinstance(message, msgs.JointState):
        present = tuple(p for p, a in zip(("position", "velocity", "effort"),
                                          (message.position, message.velocity, message.effort),
                                          strict=True) if a)
        assert decoded.channels == tuple(message.name)
        assert decoded.parts == present


def test_string_severity_comes_from_topic_name() -> None:
    w = CdrWriter()
    w.string("joint limit")
    payload = w.payload()
    mapping = TYPE_TABLE["std_msgs/msg/String"]
    codes = {t: decode(mapping, payload, t).values[0]
             for t in ("/PSM1/error", "/PSM1/warning", "/PSM1/status")}
    assert codes == {"/PSM1/error": 2.0, "/PSM1/warning": 1.0, "/PSM1/status": 0.0}


def _joint_state_payload(names: list[str], pos: list[float], vel: list[float],
                         eff: list[float]) -> bytes:
    w = CdrWriter()
    w.header(1_700_000_000_123_456_789, "base")
    w.strings(names)
    w.float64s(pos)
    w.float64s(vel)
    w.float64s(eff)
    return w.payload()


@pytest.mark.parametrize("pos, vel, eff", [
    ([1.0, 2.0], [1.0], []),
    ([1.0], [], []),
    ([], [], []),
    ([1.0, 2.0, 3.0], [], []),
])
def test_joint_state_wrong_array_lengths_rejected(pos: list[float], vel: list[float],
                                                  eff: list[float]) -> None:
    payload = _joint_state_payload(["a", "b"], pos, vel, eff)
    with pytest.raises(MappingError) as err:
        decode(TYPE_TABLE["sensor_msgs/msg/JointState"], payload, "/x")
    assert err.value.reason == "array_length"


def test_joint_state_duplicate_or_missing_names_rejected() -> None:
    mapping = TYPE_TABLE["sensor_msgs/msg/JointState"]
    with pytest.raises(MappingError):
        decode(mapping, _joint_state_payload(["a", "a"], [1.0, 2.0], [], []), "/x")
    with pytest.raises(MappingError):
        decode(mapping, _joint_state_payload([], [], [], []), "/x")


@pytest.mark.parametrize("ros_type", sorted(TYPE_TABLE))
@SETTINGS
@given(data=st.data())
def test_truncated_payloads_raise_cdr_error(ros_type: str, data: st.DataObject,
                                            ros_cdr: Any) -> None:
    payload = ros_cdr(data.draw(MESSAGES[ros_type]))
    mapping = TYPE_TABLE[ros_type]
    full = decode(mapping, payload, "/t")
    cut = data.draw(st.integers(0, len(payload) - 1))
    try:
        partial = decode(mapping, payload[:cut], "/t")
    except (CdrError, MappingError):
        return
    # only trailing bytes the decoder never needed (e.g. bool padding) may go missing
    assert partial.values.tolist() == full.values.tolist()
    assert partial.text == full.text


@pytest.mark.parametrize("ros_type", sorted(TYPE_TABLE))
@SETTINGS
@given(garbage=st.binary(max_size=300))
def test_garbage_never_raises_anything_else(ros_type: str, garbage: bytes) -> None:
    for payload in (garbage, b"\x00\x01\x00\x00" + garbage):
        try:
            decoded = decode(TYPE_TABLE[ros_type], payload, "/t")
        except (CdrError, MappingError) as err:
            assert str(err)  # a clear message, nothing else escapes
        else:
            assert decoded.values.dtype == np.float64


def test_cdr_reader_rejects_bad_headers_and_strings() -> None:
    with pytest.raises(CdrError, match="encapsulation header"):
        CdrReader(b"\x00")
    with pytest.raises(CdrError, match="unsupported encapsulation"):
        CdrReader(b"\x00\x0a\x00\x00")
    not_terminated = b"\x00\x01\x00\x00" + (3).to_bytes(4, "little") + b"abc"
    with pytest.raises(CdrError, match="NUL"):
        CdrReader(not_terminated).string()
    bad_utf8 = b"\x00\x01\x00\x00" + (3).to_bytes(4, "little") + b"\xff\xfe\x00"
    with pytest.raises(CdrError, match="UTF-8"):
        CdrReader(bad_utf8).string()
    bad_bool = b"\x00\x01\x00\x00\x07"
    with pytest.raises(CdrError, match="bool"):
        CdrReader(bad_bool).boolean()
    huge_seq = b"\x00\x01\x00\x00" + (10**6).to_bytes(4, "little")
    with pytest.raises(CdrError, match="overruns"):
        CdrReader(huge_seq).float64s()


def test_xcdr2_alignment_is_capped_at_four() -> None:
    w = CdrWriter()
    w.uint32(7)
    payload = bytearray(w.payload())
    payload[1] = 0x07  # plain XCDR2, little endian: float64 follows at offset 4, not 8
    payload += np.float64(2.5).tobytes()
    reader = CdrReader(bytes(payload))
    assert reader.uint32() == 7
    assert reader.float64() == 2.5


def test_names() -> None:
    assert stream_name("/PSM1/jaw/measured_js") == "PSM1.jaw.measured_js"
    assert sanitize_channel("wrist.pitch") == "wrist_pitch"
    fields, units = joint_fields(("yaw", "insertion"), ("position", "effort"),
                                 frozenset({"insertion"}))
    assert fields == ("yaw.position", "yaw.effort", "insertion.position", "insertion.effort")
    assert units == ("rad", "N.m", "m", "N")
    assert TYPE_TABLE["crtk_msgs/msg/OperatingState"].family is Family.OPERATING_STATE
