"""Hypothesis strategies producing ROS 2 messages as IdlStructs (shared by the unit tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from drivers.ros2 import msgs

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
               max_size=12)
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


def times() -> st.SearchStrategy[msgs.Time]:
    """Valid builtin_interfaces/Time values."""
    return st.builds(msgs.Time, sec=st.integers(0, 2**31 - 1),
                     nanosec=st.integers(0, 999_999_999))


def headers() -> st.SearchStrategy[msgs.Header]:
    """std_msgs/Header values."""
    return st.builds(msgs.Header, stamp=times(), frame_id=text)


def vector3(cls: Any = msgs.Vector3) -> st.SearchStrategy[Any]:
    """Vector3-like values."""
    return st.builds(cls, x=finite, y=finite, z=finite)


def quaternions() -> st.SearchStrategy[msgs.Quaternion]:
    """Quaternion values (not normalized: the wire does not care)."""
    return st.builds(msgs.Quaternion, x=finite, y=finite, z=finite, w=finite)


@st.composite
def joint_states(draw: st.DrawFn, empty_ok: bool = True) -> msgs.JointState:
    """JointState with unique joint names and each array either full or empty."""
    joints = draw(st.lists(names, min_size=1, max_size=7, unique=True))
    n = len(joints)
    arrays = []
    for _ in range(3):
        full = st.lists(finite, min_size=n, max_size=n)
        arrays.append(draw(st.one_of(st.just([]), full) if empty_ok else full))
    if not any(arrays):
        arrays[0] = draw(st.lists(finite, min_size=n, max_size=n))
    return msgs.JointState(header=draw(headers()), name=joints, position=arrays[0],
                           velocity=arrays[1], effort=arrays[2])


def transforms() -> st.SearchStrategy[msgs.Transform]:
    """Transform values."""
    return st.builds(msgs.Transform, translation=vector3(), rotation=quaternions())


def poses() -> st.SearchStrategy[msgs.Pose]:
    """Pose values."""
    return st.builds(msgs.Pose, position=vector3(msgs.Point), orientation=quaternions())


def twists() -> st.SearchStrategy[msgs.Twist]:
    """Twist values."""
    return st.builds(msgs.Twist, linear=vector3(), angular=vector3())


def wrenches() -> st.SearchStrategy[msgs.Wrench]:
    """Wrench values."""
    return st.builds(msgs.Wrench, force=vector3(), torque=vector3())


f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)


def robot_modes() -> st.SearchStrategy[msgs.RobotMode]:
    """rmf_fleet_msgs/RobotMode values (any code: unknown ones must map too)."""
    return st.builds(msgs.RobotMode, mode=st.integers(0, 12), mode_request_id=u64,
                     performing_action=text)


def locations() -> st.SearchStrategy[msgs.Location]:
    """rmf_fleet_msgs/Location values."""
    return st.builds(msgs.Location, t=times(), x=f32, y=f32, yaw=f32,
                     obey_approach_speed_limit=st.booleans(), approach_speed_limit=f32,
                     level_name=text, index=u64)


def robot_states() -> st.SearchStrategy[msgs.RobotState]:
    """rmf_fleet_msgs/RobotState values."""
    return st.builds(msgs.RobotState, name=names, model=text, task_id=text, seq=u64,
                     mode=robot_modes(), battery_percent=f32, location=locations(),
                     path=st.lists(locations(), max_size=3))


def lift_states() -> st.SearchStrategy[msgs.LiftState]:
    """rmf_lift_msgs/LiftState values."""
    u8 = st.integers(0, 255)
    return st.builds(msgs.LiftState, lift_time=times(), lift_name=names,
                     available_floors=st.lists(names, max_size=4), current_floor=text,
                     destination_floor=text, door_state=u8, motion_state=u8,
                     available_modes=st.lists(u8, max_size=4), current_mode=u8,
                     session_id=text)


STATES = st.sampled_from(["DISABLED", "ENABLED", "PAUSED", "FAULT", "HOMING", ""])

MESSAGES: dict[str, st.SearchStrategy[Any]] = {
    "builtin_interfaces/msg/Time": times(),
    "std_msgs/msg/Header": headers(),
    "std_msgs/msg/String": st.builds(msgs.String, data=text),
    "sensor_msgs/msg/JointState": joint_states(),
    "geometry_msgs/msg/Vector3": vector3(),
    "geometry_msgs/msg/Point": vector3(msgs.Point),
    "geometry_msgs/msg/Quaternion": quaternions(),
    "geometry_msgs/msg/Transform": transforms(),
    "geometry_msgs/msg/TransformStamped": st.builds(
        msgs.TransformStamped, header=headers(), child_frame_id=text, transform=transforms()),
    "geometry_msgs/msg/Pose": poses(),
    "geometry_msgs/msg/PoseStamped": st.builds(msgs.PoseStamped, header=headers(), pose=poses()),
    "geometry_msgs/msg/Twist": twists(),
    "geometry_msgs/msg/TwistStamped": st.builds(msgs.TwistStamped, header=headers(),
                                                twist=twists()),
    "geometry_msgs/msg/Wrench": wrenches(),
    "geometry_msgs/msg/WrenchStamped": st.builds(msgs.WrenchStamped, header=headers(),
                                                 wrench=wrenches()),
    "crtk_msgs/msg/OperatingState": st.builds(msgs.OperatingState, header=headers(),
                                              state=STATES, is_homed=st.booleans(),
                                              is_busy=st.booleans()),
    "medgw_msgs/msg/OperatingState": st.builds(msgs.MedgwOperatingState, header=headers(),
                                               state=STATES, is_homed=st.booleans(),
                                               is_busy=st.booleans()),
}
"""One strategy per ROS type in drivers.ros2.msgs.IDL_TYPES."""
MESSAGES.update({
    "rmf_fleet_msgs/msg/RobotMode": robot_modes(),
    "rmf_fleet_msgs/msg/Location": locations(),
    "rmf_fleet_msgs/msg/RobotState": robot_states(),
    "rmf_fleet_msgs/msg/FleetState": st.builds(msgs.FleetState, name=names,
                                               robots=st.lists(robot_states(), max_size=3)),
    "rmf_door_msgs/msg/DoorMode": st.builds(msgs.DoorMode, value=u32),
    "rmf_door_msgs/msg/DoorState": st.builds(msgs.DoorState, door_time=times(), door_name=names,
                                             current_mode=st.builds(msgs.DoorMode, value=u32)),
    "rmf_lift_msgs/msg/LiftState": lift_states(),
})
