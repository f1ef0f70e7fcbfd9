"""ROS 2 message types as Cyclone DDS IdlStructs, named as ROS 2 puts them on the wire.

ROS 2 maps ``pkg/msg/Type`` to the DDS type ``pkg::msg::dds_::Type_`` and topic ``/name`` to
``rt/name``; payloads are XCDR1 (plain CDR) and every ROS message is a final struct. The
classes below serialize byte-identically to rosbags' CDR serializer (tested), so a
participant using them interoperates with ROS 2 nodes on rmw_cyclonedds_cpp.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint32, uint64

if TYPE_CHECKING:  # mypy sees plain lists; cyclonedds sees IDL sequences
    StringSeq = list[str]
    Float64Seq = list[float]
    Uint8Seq = list[int]
else:
    StringSeq = sequence[str]
    Float64Seq = sequence[float64]
    Uint8Seq = sequence[uint8]

TOPIC_PREFIX = "rt"


def dds_type_name(ros_type: str) -> str:
    """Return the DDS type name of a ROS 2 type, e.g. ``std_msgs::msg::dds_::String_``."""
    pkg, kind, name = _split_ros_type(ros_type)
    return f"{pkg}::{kind}::dds_::{name}_"


def ros_type_name(dds_type: str) -> str:
    """Return the ROS 2 type of a DDS type name (inverse of :func:`dds_type_name`)."""
    parts = dds_type.split("::")
    if len(parts) != 4 or parts[2] != "dds_" or not parts[3].endswith("_"):
        raise ValueError(f"{dds_type!r} is not a ROS 2 DDS type name (pkg::msg::dds_::Type_)")
    return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"


def dds_topic_name(ros_topic: str) -> str:
    """Return the DDS topic of a ROS 2 topic: ``/PSM1/measured_js`` -> ``rt/PSM1/measured_js``."""
    name = ros_topic.strip("/")
    if not name:
        raise ValueError(f"invalid ROS topic name {ros_topic!r}")
    return f"{TOPIC_PREFIX}/{name}"


def ros_topic_name(dds_topic: str) -> str | None:
    """Return the ROS 2 topic of a DDS topic, or None for non-ROS topics (no ``rt/`` prefix)."""
    prefix = TOPIC_PREFIX + "/"
    if not dds_topic.startswith(prefix) or len(dds_topic) == len(prefix):
        return None
    return "/" + dds_topic[len(prefix):]


def _split_ros_type(ros_type: str) -> tuple[str, str, str]:
    parts = ros_type.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{ros_type!r} is not a ROS 2 type name (pkg/msg/Type)")
    return parts[0], parts[1], parts[2]


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """builtin_interfaces/msg/Time."""

    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    """std_msgs/msg/Header."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    """std_msgs/msg/String."""

    data: str = ""


@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    """sensor_msgs/msg/JointState."""

    header: Header = field(default_factory=Header)
    name: StringSeq = field(default_factory=list)
    position: Float64Seq = field(default_factory=list)
    velocity: Float64Seq = field(default_factory=list)
    effort: Float64Seq = field(default_factory=list)


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    """geometry_msgs/msg/Vector3."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    """geometry_msgs/msg/Point."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    """geometry_msgs/msg/Quaternion (identity by default, as in ROS)."""

    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@dataclass
class Transform(IdlStruct, typename="geometry_msgs::msg::dds_::Transform_"):
    """geometry_msgs/msg/Transform."""

    translation: Vector3 = field(default_factory=Vector3)
    rotation: Quaternion = field(default_factory=Quaternion)


@dataclass
class TransformStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TransformStamped_"):
    """geometry_msgs/msg/TransformStamped."""

    header: Header = field(default_factory=Header)
    child_frame_id: str = ""
    transform: Transform = field(default_factory=Transform)


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    """geometry_msgs/msg/Pose."""

    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    """geometry_msgs/msg/PoseStamped."""

    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    """geometry_msgs/msg/Twist."""

    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    """geometry_msgs/msg/TwistStamped."""

    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


@dataclass
class Wrench(IdlStruct, typename="geometry_msgs::msg::dds_::Wrench_"):
    """geometry_msgs/msg/Wrench."""

    force: Vector3 = field(default_factory=Vector3)
    torque: Vector3 = field(default_factory=Vector3)


@dataclass
class WrenchStamped(IdlStruct, typename="geometry_msgs::msg::dds_::WrenchStamped_"):
    """geometry_msgs/msg/WrenchStamped."""

    header: Header = field(default_factory=Header)
    wrench: Wrench = field(default_factory=Wrench)


@dataclass
class OperatingState(IdlStruct, typename="crtk_msgs::msg::dds_::OperatingState_"):
    """crtk_msgs/msg/OperatingState (CRTK: state is DISABLED, ENABLED, PAUSED or FAULT)."""

    header: Header = field(default_factory=Header)
    state: str = ""
    is_homed: bool = False
    is_busy: bool = False


@dataclass
class MedgwOperatingState(IdlStruct, typename="medgw_msgs::msg::dds_::OperatingState_"):
    """medgw_msgs/msg/OperatingState: the CRTK layout for systems without crtk_msgs."""

    header: Header = field(default_factory=Header)
    state: str = ""
    is_homed: bool = False
    is_busy: bool = False


# -- Open-RMF (rmf_internal_msgs; field order as in the .msg files, which decides CDR) ------


@dataclass
class RobotMode(IdlStruct, typename="rmf_fleet_msgs::msg::dds_::RobotMode_"):
    """rmf_fleet_msgs/msg/RobotMode."""

    mode: uint32 = 0
    mode_request_id: uint64 = 0
    performing_action: str = ""


@dataclass
class Location(IdlStruct, typename="rmf_fleet_msgs::msg::dds_::Location_"):
    """rmf_fleet_msgs/msg/Location."""

    t: Time = field(default_factory=Time)
    x: float32 = 0.0
    y: float32 = 0.0
    yaw: float32 = 0.0
    obey_approach_speed_limit: bool = False
    approach_speed_limit: float32 = 0.0
    level_name: str = ""
    index: uint64 = 0


if TYPE_CHECKING:
    LocationSeq = list[Location]
else:
    LocationSeq = sequence[Location]


@dataclass
class RobotState(IdlStruct, typename="rmf_fleet_msgs::msg::dds_::RobotState_"):
    """rmf_fleet_msgs/msg/RobotState."""

    name: str = ""
    model: str = ""
    task_id: str = ""
    seq: uint64 = 0
    mode: RobotMode = field(default_factory=RobotMode)
    battery_percent: float32 = 0.0
    location: Location = field(default_factory=Location)
    path: LocationSeq = field(default_factory=list)


if TYPE_CHECKING:
    RobotStateSeq = list[RobotState]
else:
    RobotStateSeq = sequence[RobotState]


@dataclass
class FleetState(IdlStruct, typename="rmf_fleet_msgs::msg::dds_::FleetState_"):
    """rmf_fleet_msgs/msg/FleetState."""

    name: str = ""
    robots: RobotStateSeq = field(default_factory=list)


@dataclass
class DoorMode(IdlStruct, typename="rmf_door_msgs::msg::dds_::DoorMode_"):
    """rmf_door_msgs/msg/DoorMode."""

    value: uint32 = 0


@dataclass
class DoorState(IdlStruct, typename="rmf_door_msgs::msg::dds_::DoorState_"):
    """rmf_door_msgs/msg/DoorState."""

    door_time: Time = field(default_factory=Time)
    door_name: str = ""
    current_mode: DoorMode = field(default_factory=DoorMode)


@dataclass
class LiftState(IdlStruct, typename="rmf_lift_msgs::msg::dds_::LiftState_"):
    """rmf_lift_msgs/msg/LiftState."""

    lift_time: Time = field(default_factory=Time)
    lift_name: str = ""
    available_floors: StringSeq = field(default_factory=list)
    current_floor: str = ""
    destination_floor: str = ""
    door_state: uint8 = 0
    motion_state: uint8 = 0
    available_modes: Uint8Seq = field(default_factory=list)
    current_mode: uint8 = 0
    session_id: str = ""


IDL_TYPES: dict[str, type[IdlStruct]] = {
    "builtin_interfaces/msg/Time": Time,
    "std_msgs/msg/Header": Header,
    "std_msgs/msg/String": String,
    "sensor_msgs/msg/JointState": JointState,
    "geometry_msgs/msg/Vector3": Vector3,
    "geometry_msgs/msg/Point": Point,
    "geometry_msgs/msg/Quaternion": Quaternion,
    "geometry_msgs/msg/Transform": Transform,
    "geometry_msgs/msg/TransformStamped": TransformStamped,
    "geometry_msgs/msg/Pose": Pose,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/Twist": Twist,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "geometry_msgs/msg/Wrench": Wrench,
    "geometry_msgs/msg/WrenchStamped": WrenchStamped,
    "crtk_msgs/msg/OperatingState": OperatingState,
    "medgw_msgs/msg/OperatingState": MedgwOperatingState,
    "rmf_fleet_msgs/msg/RobotMode": RobotMode,
    "rmf_fleet_msgs/msg/Location": Location,
    "rmf_fleet_msgs/msg/RobotState": RobotState,
    "rmf_fleet_msgs/msg/FleetState": FleetState,
    "rmf_door_msgs/msg/DoorMode": DoorMode,
    "rmf_door_msgs/msg/DoorState": DoorState,
    "rmf_lift_msgs/msg/LiftState": LiftState,
}
"""ROS 2 type name -> IdlStruct class."""

CRTK_OPERATING_STATE_MSG = """\
std_msgs/Header header
string state
bool is_homed
bool is_busy
"""
"""The crtk_msgs/msg/OperatingState definition (for rosbags' typestore)."""

RMF_MSG_DEFINITIONS: dict[str, str] = {
    "rmf_fleet_msgs/msg/RobotMode": "uint32 mode\nuint64 mode_request_id\n"
                                    "string performing_action\n",
    "rmf_fleet_msgs/msg/Location": "builtin_interfaces/Time t\nfloat32 x\nfloat32 y\n"
                                   "float32 yaw\nbool obey_approach_speed_limit\n"
                                   "float32 approach_speed_limit\nstring level_name\n"
                                   "uint64 index\n",
    "rmf_fleet_msgs/msg/RobotState": "string name\nstring model\nstring task_id\nuint64 seq\n"
                                     "rmf_fleet_msgs/RobotMode mode\nfloat32 battery_percent\n"
                                     "rmf_fleet_msgs/Location location\n"
                                     "rmf_fleet_msgs/Location[] path\n",
    "rmf_fleet_msgs/msg/FleetState": "string name\nrmf_fleet_msgs/RobotState[] robots\n",
    "rmf_door_msgs/msg/DoorMode": "uint32 value\n",
    "rmf_door_msgs/msg/DoorState": "builtin_interfaces/Time door_time\nstring door_name\n"
                                   "rmf_door_msgs/DoorMode current_mode\n",
    "rmf_lift_msgs/msg/LiftState": "builtin_interfaces/Time lift_time\nstring lift_name\n"
                                   "string[] available_floors\nstring current_floor\n"
                                   "string destination_floor\nuint8 door_state\n"
                                   "uint8 motion_state\nuint8[] available_modes\n"
                                   "uint8 current_mode\nstring session_id\n",
}
"""The Open-RMF definitions (open-rmf/rmf_internal_msgs main, constants left out) for
rosbags' typestore: the unit tests serialize with rosbags to check the decoders."""


def idl_type(ros_type: str) -> "type[IdlStruct]":
    """Return the IdlStruct class of a ROS 2 type; KeyError names the type if unknown."""
    try:
        return IDL_TYPES[ros_type]
    except KeyError:
        raise KeyError(f"no DDS type for ROS type {ros_type!r}") from None
