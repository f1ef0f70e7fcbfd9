"""The streams of one Open-RMF robot, door or lift: names, fields, units, event codes."""

from __future__ import annotations

from drivers.ros2 import rmf
from gateway.driver import DriverContext
from gateway.model import StreamKind, StreamSpec

ROBOT_FIELDS = ("x", "y", "yaw", "level", "waypoint", "battery", "mode", "mode_request_id",
                "path_length", "source_seq", "obey_speed_limit", "speed_limit")
ROBOT_UNITS = ("m", "m", "rad", "", "", "%", "", "", "", "", "", "m/s")
ROBOT_EVENT_FIELDS = ("code", "mode", "previous")
ROBOT_EVENTS: tuple[tuple[str, float], ...] = (
    ("MODE", 0.0), ("EMERGENCY", 1.0), ("ADAPTER_ERROR", 2.0), ("LEVEL", 3.0), ("TASK", 4.0),
    ("SEQ_RESET", 5.0),
)
"""Codes of a robot's event stream."""
GAP_FIELDS = ("from_seq", "to_seq", "missing")
DOOR_EVENT_FIELDS = ("mode", "previous")
LIFT_FIELDS = ("current_floor", "destination_floor", "door_state", "motion_state", "mode",
               "floors")
LIFT_EVENT_FIELDS = ("code", "value", "previous")
LIFT_EVENTS: tuple[tuple[str, float], ...] = (
    ("FLOOR", 0.0), ("DOOR", 1.0), ("MOTION", 2.0), ("MODE", 3.0),
)
"""Codes of a lift's event stream (value/previous: floor index or the state's code)."""
MAX_LEVELS = 64  # level names numbered per topic; more are -1


def stream_specs(ctx: DriverContext, kind: str, stream: str, rate: float) -> list[StreamSpec]:
    """Return the specs of a robot (state, events, source_gap), door or lift (state, events).

    StreamSpecError when the name (robot, door or lift) is one ingest would refuse.
    """
    spec = ctx.stream_spec
    if kind == "robot":
        return [spec(stream, ROBOT_FIELDS, ROBOT_UNITS, rate_hz=rate,
                     measurement="rmf_robot"),
                spec(f"{stream}.events", ROBOT_EVENT_FIELDS, ("", "", ""),
                     kind=StreamKind.EVENT, measurement="rmf_robot_event",
                     labels=ROBOT_EVENTS),
                spec(f"{stream}.source_gap", GAP_FIELDS, ("", "", ""),
                     kind=StreamKind.EVENT, measurement="medgw_source_gap")]
    if kind == "door":
        return [spec(stream, ("mode",), ("",), rate_hz=rate, measurement="rmf_door"),
                spec(f"{stream}.events", DOOR_EVENT_FIELDS, ("", ""),
                     kind=StreamKind.EVENT, measurement="rmf_door_event",
                     labels=rmf.DOOR_MODES)]
    return [spec(stream, LIFT_FIELDS, ("",) * len(LIFT_FIELDS), rate_hz=rate,
                 measurement="rmf_lift"),
            spec(f"{stream}.events", LIFT_EVENT_FIELDS, ("", "", ""),
                 kind=StreamKind.EVENT, measurement="rmf_lift_event", labels=LIFT_EVENTS)]
