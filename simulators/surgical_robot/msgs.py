"""The simulator's own ROS 2 message types: cyclonedds IdlStructs written from the .msg files.

Written from the ROS 2 definitions (builtin_interfaces/Time, std_msgs/Header and String,
sensor_msgs/JointState, geometry_msgs/Vector3, Point, Quaternion, Transform(Stamped),
Pose(Stamped), Twist(Stamped), Wrench(Stamped), crtk_msgs/OperatingState), not from medgw's
driver: the simulator is a peer that cyclonedds serializes (XCDR1, final structs), so a bug
in the driver's CDR decoder shows up as a mismatch instead of cancelling out.

ROS 2 names the DDS type of ``pkg/msg/Type`` ``pkg::msg::dds_::Type_`` and the DDS topic of
``/name`` ``rt/name`` (rmw's conventions, the same for every RMW).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float64, int32, sequence, uint32

if TYPE_CHECKING:  # mypy sees plain lists; cyclonedds sees IDL sequences
    StringSeq = list[str]
    Float64Seq = list[float]
else:
    StringSeq = sequence[str]
    Float64Seq = sequence[float64]


def ros_dds_topic(ros_topic: str) -> str:
    """Return the DDS topic of a ROS 2 topic: ``/PSM1/measured_js`` -> ``rt/PSM1/measured_js``."""
    name = ros_topic.strip("/")
    if not name:
        raise ValueError(f"invalid ROS topic name {ros_topic!r}")
    return f"rt/{name}"


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """builtin_interfaces/msg/Time: int32 sec, uint32 nanosec."""

    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    """std_msgs/msg/Header: builtin_interfaces/Time stamp, string frame_id."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    """std_msgs/msg/String: string data."""

    data: str = ""


@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    """sensor_msgs/msg/JointState: header, string[] name, float64[] position/velocity/effort."""

    header: Header = field(default_factory=Header)
    name: StringSeq = field(default_factory=list)
    position: Float64Seq = field(default_factory=list)
    velocity: Float64Seq = field(default_factory=list)
    effort: Float64Seq = field(default_factory=list)


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    """geometry_msgs/msg/Vector3: float64 x y z."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    """geometry_msgs/msg/Point: float64 x y z."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    """geometry_msgs/msg/Quaternion: float64 x y z w (w defaults to 1 as in the .msg)."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@dataclass
class Transform(IdlStruct, typename="geometry_msgs::msg::dds_::Transform_"):
    """geometry_msgs/msg/Transform: Vector3 translation, Quaternion rotation."""

    translation: Vector3 = field(default_factory=Vector3)
    rotation: Quaternion = field(default_factory=Quaternion)


@dataclass
class TransformStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TransformStamped_"):
    """geometry_msgs/msg/TransformStamped: header, string child_frame_id, transform."""

    header: Header = field(default_factory=Header)
    child_frame_id: str = ""
    transform: Transform = field(default_factory=Transform)


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    """geometry_msgs/msg/Pose: Point position, Quaternion orientation."""

    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    """geometry_msgs/msg/PoseStamped: header, pose."""

    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    """geometry_msgs/msg/Twist: Vector3 linear, Vector3 angular."""

    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    """geometry_msgs/msg/TwistStamped: header, twist."""

    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


@dataclass
class Wrench(IdlStruct, typename="geometry_msgs::msg::dds_::Wrench_"):
    """geometry_msgs/msg/Wrench: Vector3 force, Vector3 torque."""

    force: Vector3 = field(default_factory=Vector3)
    torque: Vector3 = field(default_factory=Vector3)


@dataclass
class WrenchStamped(IdlStruct, typename="geometry_msgs::msg::dds_::WrenchStamped_"):
    """geometry_msgs/msg/WrenchStamped: header, wrench."""

    header: Header = field(default_factory=Header)
    wrench: Wrench = field(default_factory=Wrench)


@dataclass
class OperatingState(IdlStruct, typename="crtk_msgs::msg::dds_::OperatingState_"):
    """crtk_msgs/msg/OperatingState: header, string state, bool is_homed, bool is_busy."""

    header: Header = field(default_factory=Header)
    state: str = ""
    is_homed: bool = False
    is_busy: bool = False


TYPES: dict[str, type[IdlStruct]] = {
    "std_msgs/msg/String": String,
    "sensor_msgs/msg/JointState": JointState,
    "geometry_msgs/msg/TransformStamped": TransformStamped,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "geometry_msgs/msg/WrenchStamped": WrenchStamped,
    "crtk_msgs/msg/OperatingState": OperatingState,
}
"""ROS 2 type name -> IdlStruct class, for the types the simulator can publish."""

OPERATING_STATE_MSG = """\
std_msgs/Header header
string state
bool is_homed
bool is_busy
"""
"""crtk_msgs/msg/OperatingState.msg (CRTK), for typestores that do not ship it."""


def stamp(stamp_ns: int) -> Time:
    """Return the builtin_interfaces/Time of a nanosecond stamp."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec, nanosec)
