"""The scripted hospital: robots between stations, doors and a lift, as pure functions of a tick.

Nothing here touches DDS: :func:`robot_at`, :func:`door_at` and :func:`lift_at` return what
the fleet looks like at tick ``k`` (so tests recompute every published value). A robot
dwells at a station (IDLE), then drives to the next one of its route (MOVING, one
remaining waypoint), crossing from level L1 to L3 half way when the stations are on
different levels; each leg is a task. Scripted faults override the mode for a tick range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

MODE_IDLE, MODE_MOVING, MODE_EMERGENCY, MODE_ADAPTER_ERROR = 0, 2, 5, 8
DOOR_CLOSED, DOOR_MOVING, DOOR_OPEN = 0, 1, 2
LIFT_STOPPED, LIFT_UP, LIFT_DOWN = 0, 1, 2
LIFT_MODE_AGV = 2
LIFT_FLOORS = ("L1", "L3")

STATIONS: dict[str, tuple[float, float, str]] = {
    "ED": (2.0, 4.0, "L1"),
    "lab": (24.0, 4.0, "L1"),
    "pharmacy": (14.0, 16.0, "L1"),
    "ward_3A": (6.0, 10.0, "L3"),
    "ward_5B": (20.0, 12.0, "L3"),
}
"""Station -> (x, y, level)."""
STATION_INDEX = {name: i for i, name in enumerate(STATIONS)}


class RobotPlan(BaseModel):
    """One robot: its route (station names, cycled), first seq number and start offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    route: list[str] = Field(min_length=2)
    seq0: int = Field(default=0, ge=0)
    offset: int = Field(default=0, ge=0, description="ticks the robot is ahead in its route")


class Fault(BaseModel):
    """A mode forced on one robot for ticks ``start`` <= k < ``end``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    robot: str
    mode: int = Field(ge=0, le=11)
    start: int = Field(ge=0)
    end: int = Field(gt=0)


def default_robots() -> list[RobotPlan]:
    """Three tugs: lab runs from the ED, pharmacy to the wards, a ward round."""
    return [RobotPlan(name="tug1", route=["ED", "lab"], seq0=0),
            RobotPlan(name="tug2", route=["pharmacy", "ward_3A"], seq0=500, offset=10),
            RobotPlan(name="tug3", route=["lab", "ward_5B", "pharmacy"], seq0=42, offset=25)]


def default_faults() -> list[Fault]:
    """tug2 in EMERGENCY for 15 ticks, tug3 with an ADAPTER_ERROR for 10."""
    return [Fault(robot="tug2", mode=MODE_EMERGENCY, start=50, end=65),
            Fault(robot="tug3", mode=MODE_ADAPTER_ERROR, start=80, end=90)]


@dataclass(frozen=True, slots=True)
class RobotSnap:
    """One robot at one tick (the fields of rmf_fleet_msgs/RobotState the script sets)."""

    name: str
    model: str
    task_id: str
    seq: int
    mode: int
    mode_request_id: int
    battery_percent: float
    x: float
    y: float
    yaw: float
    level_name: str
    index: int
    path: tuple[tuple[float, float, str, int], ...]  # remaining waypoints: x, y, level, index


def robot_at(plan: RobotPlan, number: int, k: int, leg_ticks: int, dwell_ticks: int,
             faults: list[Fault]) -> RobotSnap:
    """Return robot ``plan`` (the ``number``-th of the fleet) at tick ``k``."""
    span = leg_ticks + dwell_ticks
    leg, within = divmod(k + plan.offset, span)
    src, dst = plan.route[leg % len(plan.route)], plan.route[(leg + 1) % len(plan.route)]
    (sx, sy, slevel), (dx, dy, dlevel) = STATIONS[src], STATIONS[dst]
    yaw = math.atan2(dy - sy, dx - sx)
    path: tuple[tuple[float, float, str, int], ...]
    if within < dwell_ticks:
        x, y, level, mode, index, path = sx, sy, slevel, MODE_IDLE, STATION_INDEX[src], ()
    else:
        frac = (within - dwell_ticks + 1) / leg_ticks
        x, y = sx + frac * (dx - sx), sy + frac * (dy - sy)
        level = slevel if frac < 0.5 else dlevel
        mode, index = MODE_MOVING, STATION_INDEX[dst]
        path = ((dx, dy, dlevel, STATION_INDEX[dst]),)
    for fault in faults:
        if fault.robot == plan.name and fault.start <= k < fault.end:
            mode, path = fault.mode, ()
    battery = 100.0 - 0.05 * k - 5.0 * number
    return RobotSnap(plan.name, "tug-v2", f"{plan.name}-delivery-{leg + 1}", plan.seq0 + k, mode,
                     leg + 1, battery, x, y, yaw, level, index, path)


def door_at(name: str, number: int, k: int) -> int:
    """Return door ``name``'s mode at tick ``k`` (a 40-tick cycle, doors out of phase)."""
    phase = (k + 20 * number) % 40
    if phase < 12:
        return DOOR_CLOSED
    if phase < 16 or phase >= 36:
        return DOOR_MOVING
    return DOOR_OPEN


@dataclass(frozen=True, slots=True)
class LiftSnap:
    """The lift at one tick."""

    current_floor: str
    destination_floor: str
    door_state: int
    motion_state: int
    current_mode: int


def lift_at(k: int) -> LiftSnap:
    """Return the lift at tick ``k``: 60-tick cycle L1 -> L3 -> L1, door open at each floor."""
    phase = k % 60
    if phase < 10:
        return LiftSnap("L1", "L1", DOOR_OPEN, LIFT_STOPPED, LIFT_MODE_AGV)
    if phase < 15:
        return LiftSnap("L1", "L3", DOOR_CLOSED, LIFT_STOPPED, LIFT_MODE_AGV)
    if phase < 30:
        return LiftSnap("L1", "L3", DOOR_CLOSED, LIFT_UP, LIFT_MODE_AGV)
    if phase < 40:
        return LiftSnap("L3", "L3", DOOR_OPEN, LIFT_STOPPED, LIFT_MODE_AGV)
    if phase < 45:
        return LiftSnap("L3", "L1", DOOR_CLOSED, LIFT_STOPPED, LIFT_MODE_AGV)
    return LiftSnap("L3", "L1", DOOR_CLOSED, LIFT_DOWN, LIFT_MODE_AGV)
