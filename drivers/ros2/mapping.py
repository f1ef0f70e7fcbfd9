"""The frozen table that maps ROS 2 message types to medgw streams, and the CDR decoders.

Every mapped message flattens to a :class:`Decoded`: a header stamp (or none), float64
values in stream-field order, the byte offset of each value in the payload (used by the
vectorized batch path in :mod:`drivers.ros2.pipeline`), and optional event text.

    sensor_msgs/JointState          -> channel_tag "joint", "<joint>.position/.velocity/.effort"
    geometry_msgs/Transform(Stamped), Pose(Stamped) -> x y z qx qy qz qw   ("pose")
    geometry_msgs/Twist(Stamped)    -> vx vy vz wx wy wz                    ("twist")
    geometry_msgs/Wrench(Stamped)   -> fx fy fz tx ty tz                    ("wrench")
    crtk_msgs/OperatingState        -> event: state code, is_homed, is_busy + state text
    std_msgs/String                 -> event: severity code (from the topic name) + text
    rmf_fleet_msgs/FleetState, rmf_door_msgs/DoorState, rmf_lift_msgs/LiftState
                                    -> fan out: streams per robot, door or lift (rmf_pipeline)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from drivers.ros2 import rmf
from drivers.ros2.cdr import HEADER_SIZE, CdrError, CdrReader

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

JOINT_PARTS = ("position", "velocity", "effort")
POSE_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw")
TWIST_FIELDS = ("vx", "vy", "vz", "wx", "wy", "wz")
WRENCH_FIELDS = ("fx", "fy", "fz", "tx", "ty", "tz")

CRTK_STATES: tuple[tuple[str, float], ...] = (
    ("UNKNOWN", -1.0), ("DISABLED", 0.0), ("ENABLED", 1.0), ("PAUSED", 2.0), ("FAULT", 3.0),
)
"""CRTK operating states and the numeric code stored for each."""
SEVERITIES: tuple[tuple[str, float], ...] = (("INFO", 0.0), ("WARNING", 1.0), ("ERROR", 2.0))
"""Severity codes of String topics, chosen from the topic's last name component."""
HEALTH_LABELS: tuple[tuple[str, float], ...] = (
    ("FRESH", 0.0), ("STALE", 1.0), ("LOST", 2.0), ("QUARANTINED", 3.0), ("UNMATCHED", 4.0),
)
"""Codes of the per-device topic-health event stream."""

_STATE_CODE = dict(CRTK_STATES)
_SEVERITY_BY_NAME = {"error": 2.0, "errors": 2.0, "fault": 2.0, "warning": 1.0, "warnings": 1.0}


RMF_MEASUREMENTS = ("rmf_robot", "rmf_robot_event", "rmf_door", "rmf_door_event", "rmf_lift",
                    "rmf_lift_event", "medgw_source_gap")
"""Measurements the Open-RMF types write (their fan-out streams)."""


class MappingError(ValueError):
    """A message decoded but cannot be mapped (wrong array lengths, changed layout ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class Family(str, enum.Enum):
    """What a message type becomes in medgw."""

    JOINT_STATE = "joint_state"
    POSE = "pose"
    TWIST = "twist"
    WRENCH = "wrench"
    OPERATING_STATE = "operating_state"
    TEXT = "text"
    RMF_FLEET = "rmf_fleet"  # one FleetState fans out to streams per robot
    RMF_DOOR = "rmf_door"  # streams per door
    RMF_LIFT = "rmf_lift"  # streams per lift


RMF_FAMILIES = frozenset({Family.RMF_FLEET, Family.RMF_DOOR, Family.RMF_LIFT})


@dataclass(frozen=True, slots=True)
class Decoded:
    """One message flattened into stream order."""

    sec: int
    nanosec: int
    stamp_offset: int  # byte offset of header.stamp.sec, -1 when the type has no header
    values: FloatArray
    value_offsets: IntArray | None  # byte offset of each float64 value; None for events
    channels: tuple[str, ...] = ()  # joint names (JointState only)
    parts: tuple[str, ...] = ()  # JointState arrays present, in JOINT_PARTS order
    text: str | None = None

    @property
    def has_stamp(self) -> bool:
        """Return True when the type carries a header stamp."""
        return self.stamp_offset >= 0


Decoder = Callable[[CdrReader, str], Decoded]


@dataclass(frozen=True, slots=True)
class TypeMapping:
    """How one ROS 2 type becomes a stream."""

    ros_type: str
    family: Family
    measurement: str
    decode: Decoder
    fields: tuple[str, ...] = ()  # fixed fields; empty for JointState (learned per topic)
    units: tuple[str, ...] = ()

    @property
    def is_event(self) -> bool:
        """Return True when messages of this type go to an event stream."""
        return self.family in (Family.OPERATING_STATE, Family.TEXT)

    @property
    def fans_out(self) -> bool:
        """Return True when one message feeds several streams (Open-RMF states)."""
        return self.family in RMF_FAMILIES


def _no_stamp(values: list[float], offsets: list[int]) -> Decoded:
    return Decoded(0, 0, -1, np.asarray(values, dtype=np.float64),
                   np.asarray(offsets, dtype=np.int64))


def _read_floats(reader: CdrReader, count: int) -> tuple[list[float], list[int]]:
    pairs = [reader.float64_at() for _ in range(count)]
    return [value for value, _ in pairs], [offset for _, offset in pairs]


def _header(reader: CdrReader) -> tuple[int, int, int]:
    sec, nanosec, offset = reader.stamp()
    reader.string()  # frame_id
    return sec, nanosec, offset


def _with_stamp(stamp: tuple[int, int, int], body: Decoded) -> Decoded:
    return Decoded(stamp[0], stamp[1], stamp[2], body.values, body.value_offsets,
                   body.channels, body.parts, body.text)


def decode_vector_block(reader: CdrReader, _topic: str, count: int) -> Decoded:
    """Decode ``count`` consecutive float64 (Transform, Pose, Twist and Wrench bodies)."""
    values, offsets = _read_floats(reader, count)
    return _no_stamp(values, offsets)


def decode_pose(reader: CdrReader, topic: str) -> Decoded:
    """Decode geometry_msgs/Transform or Pose (same 7 doubles in the same order)."""
    return decode_vector_block(reader, topic, 7)


def decode_six(reader: CdrReader, topic: str) -> Decoded:
    """Decode geometry_msgs/Twist or Wrench (two Vector3)."""
    return decode_vector_block(reader, topic, 6)


def decode_transform_stamped(reader: CdrReader, topic: str) -> Decoded:
    """Decode geometry_msgs/TransformStamped."""
    stamp = _header(reader)
    reader.string()  # child_frame_id
    return _with_stamp(stamp, decode_pose(reader, topic))


def decode_stamped_pose(reader: CdrReader, topic: str) -> Decoded:
    """Decode geometry_msgs/PoseStamped."""
    stamp = _header(reader)
    return _with_stamp(stamp, decode_pose(reader, topic))


def decode_stamped_six(reader: CdrReader, topic: str) -> Decoded:
    """Decode geometry_msgs/TwistStamped or WrenchStamped."""
    stamp = _header(reader)
    return _with_stamp(stamp, decode_six(reader, topic))


def decode_joint_state(reader: CdrReader, _topic: str) -> Decoded:
    """Decode sensor_msgs/JointState; every non-empty array must match the joint names."""
    stamp = _header(reader)
    names = tuple(reader.strings())
    if not names:
        raise MappingError("array_length", "JointState without joint names")
    if len(set(names)) != len(names):
        raise MappingError("array_length", f"duplicate joint names {names}")
    columns: list[FloatArray] = []
    starts: list[int] = []
    parts: list[str] = []
    for part in JOINT_PARTS:
        values, start = reader.float64s()
        if values.shape[0] == 0:
            continue
        if values.shape[0] != len(names):
            raise MappingError("array_length", f"JointState has {len(names)} names but "
                               f"{values.shape[0]} {part} values")
        columns.append(values)
        starts.append(start)
        parts.append(part)
    if not parts:
        raise MappingError("array_length", "JointState with empty position, velocity, effort")
    flat = np.stack(columns, axis=1).reshape(-1)
    joint = np.arange(len(names), dtype=np.int64)[:, None] * 8
    offsets = (np.asarray(starts, dtype=np.int64)[None, :] + joint).reshape(-1)
    return Decoded(stamp[0], stamp[1], stamp[2], flat, offsets,
                   tuple(sanitize_channel(n) for n in names), tuple(parts))


def decode_operating_state(reader: CdrReader, _topic: str) -> Decoded:
    """Decode crtk_msgs/OperatingState into (state code, is_homed, is_busy) + state text."""
    stamp = _header(reader)
    state = reader.string()
    is_homed = reader.boolean()
    is_busy = reader.boolean()
    code = _STATE_CODE.get(state.upper(), -1.0)
    values = np.asarray([code, float(is_homed), float(is_busy)], dtype=np.float64)
    return Decoded(stamp[0], stamp[1], stamp[2], values, None, text=state)


def decode_string(reader: CdrReader, topic: str) -> Decoded:
    """Decode std_msgs/String; the severity comes from the topic name (error, warning ...)."""
    text = reader.string()
    severity = _SEVERITY_BY_NAME.get(topic.rstrip("/").rsplit("/", 1)[-1].lower(), 0.0)
    return Decoded(0, 0, -1, np.asarray([severity], dtype=np.float64), None, text=text)


def decode_rmf_fleet(reader: CdrReader, _topic: str) -> Decoded:
    """Decode rmf_fleet_msgs/FleetState strictly; summary: the number of robots.

    The streams come from :mod:`drivers.ros2.rmf_pipeline`, which decodes the whole
    message (:func:`drivers.ros2.rmf.decode_fleet_state`); this checks it and counts robots.
    """
    fleet = rmf.decode_fleet_state(reader.data)
    return Decoded(0, 0, -1, np.asarray([float(len(fleet.robots))]), None, text=fleet.name)


def decode_rmf_door(reader: CdrReader, _topic: str) -> Decoded:
    """Decode rmf_door_msgs/DoorState; summary: the door mode (stamp door_time)."""
    door = rmf.decode_door_state(reader.data)
    return Decoded(door.sec, door.nanosec, HEADER_SIZE, np.asarray([float(door.mode)]), None,
                   text=door.door_name)


def decode_rmf_lift(reader: CdrReader, _topic: str) -> Decoded:
    """Decode rmf_lift_msgs/LiftState; summary: the current floor's index (stamp lift_time)."""
    lift = rmf.decode_lift_state(reader.data)
    return Decoded(lift.sec, lift.nanosec, HEADER_SIZE,
                   np.asarray([float(lift.floor_index(lift.current_floor))]), None,
                   text=lift.lift_name)


def sanitize_channel(name: str) -> str:
    """Make a joint name usable as a channel (no '.', which separates channel and field)."""
    cleaned = name.replace(".", "_").strip()
    return cleaned or "_"


_POSE_UNITS = ("m", "m", "m", "", "", "", "")
_TWIST_UNITS = ("m/s", "m/s", "m/s", "rad/s", "rad/s", "rad/s")
_WRENCH_UNITS = ("N", "N", "N", "N.m", "N.m", "N.m")


def _fixed(ros_type: str, family: Family, measurement: str, decoder: Decoder,
           fields: tuple[str, ...], units: tuple[str, ...]) -> TypeMapping:
    return TypeMapping(ros_type, family, measurement, decoder, fields, units)


TYPE_TABLE: Mapping[str, TypeMapping] = MappingProxyType({
    "sensor_msgs/msg/JointState": TypeMapping(
        "sensor_msgs/msg/JointState", Family.JOINT_STATE, "joint_state", decode_joint_state),
    "geometry_msgs/msg/TransformStamped": _fixed(
        "geometry_msgs/msg/TransformStamped", Family.POSE, "pose", decode_transform_stamped,
        POSE_FIELDS, _POSE_UNITS),
    "geometry_msgs/msg/Transform": _fixed(
        "geometry_msgs/msg/Transform", Family.POSE, "pose", decode_pose, POSE_FIELDS,
        _POSE_UNITS),
    "geometry_msgs/msg/PoseStamped": _fixed(
        "geometry_msgs/msg/PoseStamped", Family.POSE, "pose", decode_stamped_pose, POSE_FIELDS,
        _POSE_UNITS),
    "geometry_msgs/msg/Pose": _fixed(
        "geometry_msgs/msg/Pose", Family.POSE, "pose", decode_pose, POSE_FIELDS, _POSE_UNITS),
    "geometry_msgs/msg/TwistStamped": _fixed(
        "geometry_msgs/msg/TwistStamped", Family.TWIST, "twist", decode_stamped_six,
        TWIST_FIELDS, _TWIST_UNITS),
    "geometry_msgs/msg/Twist": _fixed(
        "geometry_msgs/msg/Twist", Family.TWIST, "twist", decode_six, TWIST_FIELDS,
        _TWIST_UNITS),
    "geometry_msgs/msg/WrenchStamped": _fixed(
        "geometry_msgs/msg/WrenchStamped", Family.WRENCH, "wrench", decode_stamped_six,
        WRENCH_FIELDS, _WRENCH_UNITS),
    "geometry_msgs/msg/Wrench": _fixed(
        "geometry_msgs/msg/Wrench", Family.WRENCH, "wrench", decode_six, WRENCH_FIELDS,
        _WRENCH_UNITS),
    "crtk_msgs/msg/OperatingState": _fixed(
        "crtk_msgs/msg/OperatingState", Family.OPERATING_STATE, "robot_event",
        decode_operating_state, ("state", "is_homed", "is_busy"), ("", "", "")),
    "medgw_msgs/msg/OperatingState": _fixed(
        "medgw_msgs/msg/OperatingState", Family.OPERATING_STATE, "robot_event",
        decode_operating_state, ("state", "is_homed", "is_busy"), ("", "", "")),
    "std_msgs/msg/String": _fixed(
        "std_msgs/msg/String", Family.TEXT, "robot_event", decode_string, ("severity",), ("",)),
    "rmf_fleet_msgs/msg/FleetState": _fixed(
        "rmf_fleet_msgs/msg/FleetState", Family.RMF_FLEET, "rmf_robot", decode_rmf_fleet,
        ("robots",), ("",)),
    "rmf_door_msgs/msg/DoorState": _fixed(
        "rmf_door_msgs/msg/DoorState", Family.RMF_DOOR, "rmf_door", decode_rmf_door,
        ("mode",), ("",)),
    "rmf_lift_msgs/msg/LiftState": _fixed(
        "rmf_lift_msgs/msg/LiftState", Family.RMF_LIFT, "rmf_lift", decode_rmf_lift,
        ("current_floor",), ("",)),
})
"""ROS 2 type -> TypeMapping. Read-only: the mapping is part of the wire contract."""


def type_mapping(ros_type: str) -> TypeMapping | None:
    """Return the mapping of a ROS 2 type (``pkg/msg/Type`` or ``pkg/Type``), None if unmapped."""
    if ros_type.count("/") == 1:
        pkg, name = ros_type.split("/")
        ros_type = f"{pkg}/msg/{name}"
    return TYPE_TABLE.get(ros_type)


def decode(mapping: TypeMapping, data: bytes, topic: str) -> Decoded:
    """Decode one CDR payload of ``mapping``'s type; CdrError/MappingError on garbage."""
    try:
        return mapping.decode(CdrReader(data), topic)
    except (CdrError, MappingError):
        raise
    except (ValueError, IndexError, OverflowError) as err:
        raise CdrError(f"undecodable {mapping.ros_type}: {err}") from err


def stream_name(topic: str) -> str:
    """Return the stream name of a topic: ``/PSM1/jaw/measured_js`` -> ``PSM1.jaw.measured_js``."""
    name = topic.strip("/").replace("/", ".")
    if not name:
        raise ValueError(f"invalid topic name {topic!r}")
    return name


def joint_fields(channels: tuple[str, ...], parts: tuple[str, ...],
                 prismatic: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (fields, units) of a JointState stream with these joints and arrays."""
    units_of = {
        False: {"position": "rad", "velocity": "rad/s", "effort": "N.m"},
        True: {"position": "m", "velocity": "m/s", "effort": "N"},
    }
    fields = tuple(f"{joint}.{part}" for joint in channels for part in parts)
    units = tuple(units_of[joint in prismatic][part] for joint in channels for part in parts)
    return fields, units
