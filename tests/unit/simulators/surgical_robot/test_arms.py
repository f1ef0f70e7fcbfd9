"""The robot simulator's motion model and encoders (device side of the ros2 tests)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ros2 import msgs
from simulators.surgical_robot import arms, encode


@settings(max_examples=50, deadline=None)
@given(name=st.sampled_from(["PSM1", "PSM2", "PSM3", "ECM"]), index=st.integers(0, 5),
       t=st.lists(st.floats(0, 3600, allow_nan=False), min_size=1, max_size=50))
def test_motion_stays_within_joint_limits(name: str, index: int, t: list[float]) -> None:
    model = arms.arm_model(name, index)
    q = arms.joint_positions(model, np.asarray(t), cycle_s=30.0)
    assert q.shape == (len(t), len(model.joints))
    assert np.all(q >= model.lower_arr) and np.all(q <= model.upper_arr)
    pose = arms.forward_kinematics(model, q)
    assert np.allclose(np.linalg.norm(pose[:, 3:], axis=1), 1.0)
    if model.jaw:
        jaw = arms.jaw_positions(model, np.asarray(t), cycle_s=30.0)
        assert np.all(jaw >= arms.JAW_LIMITS[0]) and np.all(jaw <= arms.JAW_LIMITS[1])


def test_procedure_has_phases_and_tool_changes() -> None:
    model = arms.arm_model("PSM1", 0)
    times = np.arange(0, 120, 0.25)
    phases = {arms.phase_at(float(t), 60.0, model)[0] for t in times}
    assert phases == {name for name, _ in arms.PHASES}
    tools = [arms.tool_at(float(t), 60.0, model) for t in times]
    changes = sum(1 for a, b in itertools.pairwise(tools) if a != b)
    assert changes == 2  # one per cycle
    q = arms.joint_positions(model, times, 60.0)
    retracting = [arms.phase_at(float(t), 60.0, model)[0] == "tool_change" for t in times]
    working = [arms.phase_at(float(t), 60.0, model)[0] == "suturing" for t in times]
    assert q[retracting, 2].min() < q[working, 2].mean()  # the instrument comes out


def test_batch_encoder_matches_rosbags(ros_cdr: Any) -> None:
    names = ("outer_yaw", "outer_pitch", "outer_insertion")
    zeros = np.zeros(3)
    enc = encode.BatchEncoder("sensor_msgs/msg/JointState",
                              encode.joint_state(0, "PSM1_base", names, zeros, zeros, zeros))
    stamps = np.array([1_700_000_000_123_456_789, 1_700_000_001_000_000_001], dtype=np.int64)
    values = np.arange(18, dtype=np.float64).reshape(2, 9)
    for stamp, row, payload in zip(stamps, values, enc.encode(stamps, values), strict=True):
        per_joint = row.reshape(3, 3)
        message = msgs.JointState(
            msgs.Header(msgs.Time(int(stamp) // 10**9, int(stamp) % 10**9), "PSM1_base"),
            list(names), per_joint[:, 0].tolist(), per_joint[:, 1].tolist(),
            per_joint[:, 2].tolist())
        assert payload == ros_cdr(message)


def _same_up_to_padding(ours: bytes, theirs: bytes) -> bool:
    """Cyclone writers pad payloads to 4 bytes with zeros; rosbags does not."""
    return ours[:len(theirs)] == theirs and ours[len(theirs):] == b"\x00" * (-len(theirs) % 4)


def test_event_encoders_match_rosbags(ros_cdr: Any) -> None:
    state = msgs.OperatingState(msgs.Header(msgs.Time(3, 4), ""), "FAULT", True, False)
    assert _same_up_to_padding(encode.operating_state(3 * 10**9 + 4, "FAULT", True, False),
                               ros_cdr(state))
    text = msgs.String("PSM1: tool change")
    assert _same_up_to_padding(encode.string(text.data), ros_cdr(text))
