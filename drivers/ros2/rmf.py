"""Open-RMF messages: strict CDR decoders, code tables and the RobotState.seq ledger.

Definitions as in open-rmf/rmf_internal_msgs (main, the Jazzy/Kilted layout; field order
decides CDR):

    rmf_fleet_msgs/FleetState  string name, RobotState[] robots
    RobotState                 string name, model, task_id; uint64 seq; RobotMode mode;
                               float32 battery_percent; Location location; Location[] path
    RobotMode                  uint32 mode; uint64 mode_request_id; string performing_action
    Location                   Time t; float32 x, y, yaw; bool obey_approach_speed_limit;
                               float32 approach_speed_limit; string level_name; uint64 index
    rmf_door_msgs/DoorState    Time door_time; string door_name; DoorMode current_mode (uint32)
    rmf_lift_msgs/LiftState    Time lift_time; string lift_name; string[] available_floors;
                               string current_floor, destination_floor; uint8 door_state,
                               motion_state; uint8[] available_modes; uint8 current_mode;
                               string session_id

A payload of an older layout (e.g. Location without the speed-limit fields) does not fit
and is quarantined as undecodable (or, by bad luck, decodes to other numbers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.ros2.cdr import CdrError, CdrReader

ROBOT_MODES: tuple[tuple[str, float], ...] = (
    ("IDLE", 0.0), ("CHARGING", 1.0), ("MOVING", 2.0), ("PAUSED", 3.0), ("WAITING", 4.0),
    ("EMERGENCY", 5.0), ("GOING_HOME", 6.0), ("DOCKING", 7.0), ("ADAPTER_ERROR", 8.0),
    ("CLEANING", 9.0), ("PERFORMING_ACTION", 10.0), ("ACTION_COMPLETED", 11.0),
)
"""rmf_fleet_msgs/RobotMode constants (MODE_IDLE=0 ... MODE_ACTION_COMPLETED=11)."""
DOOR_MODES: tuple[tuple[str, float], ...] = (
    ("CLOSED", 0.0), ("MOVING", 1.0), ("OPEN", 2.0), ("OFFLINE", 3.0), ("UNKNOWN", 4.0),
)
"""rmf_door_msgs/DoorMode constants."""
LIFT_DOOR_STATES = ("CLOSED", "MOVING", "OPEN")
LIFT_MOTION_STATES = ("STOPPED", "UP", "DOWN", "UNKNOWN")
LIFT_MODES = ("UNKNOWN", "HUMAN", "AGV", "FIRE", "OFFLINE", "EMERGENCY")
"""rmf_lift_msgs/LiftState constants (door_state, motion_state, current_mode)."""

MODE_EMERGENCY = 5
MODE_ADAPTER_ERROR = 8
_MODE_NAMES = {int(code): name for name, code in ROBOT_MODES}
_DOOR_NAMES = {int(code): name for name, code in DOOR_MODES}
MAX_PATH = 10_000  # waypoints: more is garbage, not a plan
MAX_FLOORS = 1_000


def mode_name(mode: int) -> str:
    """Return the RobotMode name of a code (``MODE_7`` style for unknown codes)."""
    return _MODE_NAMES.get(mode, f"MODE_{mode}")


def door_mode_name(mode: int) -> str:
    """Return the DoorMode name of a code."""
    return _DOOR_NAMES.get(mode, f"MODE_{mode}")


def lift_name_of(table: tuple[str, ...], code: int) -> str:
    """Return a LiftState constant's name (``VALUE_9`` for unknown codes)."""
    return table[code] if 0 <= code < len(table) else f"VALUE_{code}"


@dataclass(frozen=True, slots=True)
class Location:
    """rmf_fleet_msgs/Location."""

    sec: int
    nanosec: int
    x: float
    y: float
    yaw: float
    obey_approach_speed_limit: bool
    approach_speed_limit: float
    level_name: str
    index: int


@dataclass(frozen=True, slots=True)
class RobotState:
    """rmf_fleet_msgs/RobotState (the path is kept as its length)."""

    name: str
    model: str
    task_id: str
    seq: int
    mode: int
    mode_request_id: int
    performing_action: str
    battery_percent: float
    location: Location
    path_length: int


@dataclass(frozen=True, slots=True)
class FleetState:
    """rmf_fleet_msgs/FleetState."""

    name: str
    robots: tuple[RobotState, ...]


@dataclass(frozen=True, slots=True)
class DoorState:
    """rmf_door_msgs/DoorState."""

    sec: int
    nanosec: int
    door_name: str
    mode: int


@dataclass(frozen=True, slots=True)
class LiftState:
    """rmf_lift_msgs/LiftState."""

    sec: int
    nanosec: int
    lift_name: str
    available_floors: tuple[str, ...]
    current_floor: str
    destination_floor: str
    door_state: int
    motion_state: int
    available_modes: bytes
    current_mode: int
    session_id: str

    def floor_index(self, floor: str) -> int:
        """Return the index of ``floor`` in available_floors, -1 when absent or empty."""
        try:
            return self.available_floors.index(floor)
        except ValueError:
            return -1


def _location(reader: CdrReader) -> Location:
    sec, nanosec, _ = reader.stamp()
    x, y, yaw = reader.float32(), reader.float32(), reader.float32()
    obey = reader.boolean()
    limit = reader.float32()
    return Location(sec, nanosec, x, y, yaw, obey, limit, reader.string(), reader.uint64())


def _robot(reader: CdrReader) -> RobotState:
    name, model, task_id = reader.string(), reader.string(), reader.string()
    seq = reader.uint64()
    mode, request_id, action = reader.uint32(), reader.uint64(), reader.string()
    battery = reader.float32()
    location = _location(reader)
    path = reader.sequence_length(32)  # a Location is at least 32 bytes of CDR
    if path > MAX_PATH:
        raise CdrError(f"robot {name[:60]!r}: path of {path} waypoints")
    for _ in range(path):
        _location(reader)
    return RobotState(name, model, task_id, seq, mode, request_id, action, battery,
                      location, path)


def decode_fleet_state(data: bytes) -> FleetState:
    """Decode rmf_fleet_msgs/FleetState; CdrError on anything that does not fit."""
    reader = CdrReader(data)
    name = reader.string()
    count = reader.sequence_length(80)  # a RobotState is at least 80 bytes of CDR
    return FleetState(name, tuple(_robot(reader) for _ in range(count)))


def decode_door_state(data: bytes) -> DoorState:
    """Decode rmf_door_msgs/DoorState."""
    reader = CdrReader(data)
    sec, nanosec, _ = reader.stamp()
    return DoorState(sec, nanosec, reader.string(), reader.uint32())


def decode_lift_state(data: bytes) -> LiftState:
    """Decode rmf_lift_msgs/LiftState."""
    reader = CdrReader(data)
    sec, nanosec, _ = reader.stamp()
    name = reader.string()
    floors = tuple(reader.strings())
    if len(floors) > MAX_FLOORS:
        raise CdrError(f"lift {name[:60]!r}: {len(floors)} floors")
    current, destination = reader.string(), reader.string()
    door, motion = reader.uint8(), reader.uint8()
    modes = reader.uint8s()
    return LiftState(sec, nanosec, name, floors, current, destination, door, motion, modes,
                     reader.uint8(), reader.string())


class SeqOutcome(enum.Enum):
    """What one RobotState.seq means relative to the previous one of the same robot."""

    FIRST = "first"  # no baseline: first message, or medgw's own session started again
    NEXT = "next"
    GAP = "gap"
    DUPLICATE = "duplicate"
    RESET = "reset"


class SeqTracker:
    """Follows one robot's RobotState.seq: holes are losses at the source.

    Going back (a fleet adapter restart numbers from 0 again) or a jump larger than
    ``max_gap`` is a reset, never a gap; after :meth:`rebase` the next seq starts a run.
    """

    def __init__(self, max_gap: int = 100_000) -> None:
        self.max_gap = max_gap
        self.last: int | None = None

    def rebase(self) -> None:
        """Forget the baseline (medgw's own session was lost: that is medgw's gap)."""
        self.last = None

    def observe(self, seq: int) -> tuple[SeqOutcome, int, int]:
        """Classify ``seq``; return (outcome, previous seq or -1, missing count)."""
        last = self.last
        if last is None:
            self.last = seq
            return SeqOutcome.FIRST, -1, 0
        if seq == last:
            return SeqOutcome.DUPLICATE, last, 0
        self.last = seq
        if seq == last + 1:
            return SeqOutcome.NEXT, last, 0
        if seq < last or seq - last - 1 > self.max_gap:
            return SeqOutcome.RESET, last, 0
        return SeqOutcome.GAP, last, seq - last - 1
