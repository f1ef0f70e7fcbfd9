"""The simulator's own Open-RMF message types as Cyclone DDS IdlStructs (ROS 2 wire names).

Written from the .msg files of open-rmf/rmf_internal_msgs (main); field order and types
decide the CDR bytes. A ROS 2 type ``pkg/msg/Type`` is the DDS type
``pkg::msg::dds_::Type_``; topic ``/fleet_states`` is DDS topic ``rt/fleet_states``.
Nothing here comes from medgw's driver: the simulator is a peer.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, int32, sequence, uint8, uint32, uint64

NS = 1_000_000_000


def dds_topic(ros_topic: str) -> str:
    """Return the DDS topic of a ROS 2 topic (``/fleet_states`` -> ``rt/fleet_states``)."""
    return "rt/" + ros_topic.strip("/")


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """builtin_interfaces/msg/Time."""

    sec: int32 = 0
    nanosec: uint32 = 0


def stamp(ns: int) -> Time:
    """Return the Time of integer nanoseconds since the epoch."""
    return Time(ns // NS, ns % NS)


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
    StringSeq = list[str]
    Uint8Seq = list[int]
else:
    RobotStateSeq = sequence[RobotState]
    StringSeq = sequence[str]
    Uint8Seq = sequence[uint8]


@dataclass
class FleetState(IdlStruct, typename="rmf_fleet_msgs::msg::dds_::FleetState_"):
    """rmf_fleet_msgs/msg/FleetState."""

    name: str = ""
    robots: RobotStateSeq = field(default_factory=list)


@dataclass
class DoorMode(IdlStruct, typename="rmf_door_msgs::msg::dds_::DoorMode_"):
    """rmf_door_msgs/msg/DoorMode (CLOSED 0, MOVING 1, OPEN 2, OFFLINE 3, UNKNOWN 4)."""

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


TOPIC_TYPES: dict[str, type[IdlStruct]] = {
    "/fleet_states": FleetState,
    "/door_states": DoorState,
    "/lift_states": LiftState,
}
"""The topics the simulator publishes and their types (Open-RMF's own topic names)."""

MSG_DEFINITIONS: dict[str, str] = {
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
"""The .msg definitions (constants left out) for rosbags' get_types_from_msg."""
