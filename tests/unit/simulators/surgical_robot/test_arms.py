"""The robot simulator's motion model (device side of the ros2 tests)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.surgical_robot import arms


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
