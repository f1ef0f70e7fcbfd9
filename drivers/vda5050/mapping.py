"""From VDA 5050 views to medgw rows: the sampled state row and the events (pure functions)."""

from __future__ import annotations

import enum
import math
import re

from drivers.vda5050.messages import ConnectionView, FactsheetView, StateView, VisualizationView

NAN = math.nan

STATE_FIELDS = ("x", "y", "theta", "map", "localized", "vx", "vy", "omega", "battery_charge",
                "battery_voltage", "charging", "driving", "paused", "operating_mode", "loads",
                "distance_since_last_node", "errors", "fatal_errors", "estop",
                "field_violation", "order_update_id", "last_node_sequence_id", "header_id")
STATE_UNITS = ("m", "m", "rad", "", "", "m/s", "m/s", "rad/s", "%", "V", "", "", "", "", "",
               "m", "", "", "", "", "", "", "")
VISUALIZATION_FIELDS = ("x", "y", "theta", "localized", "vx", "vy", "omega", "header_id")
VISUALIZATION_UNITS = ("m", "m", "rad", "", "m/s", "m/s", "rad/s", "")
EVENT_FIELDS = ("code", "active", "value")
GAP_FIELDS = ("from_seq", "to_seq", "missing")

OPERATING_MODES = {"AUTOMATIC": 1, "SEMIAUTOMATIC": 2, "MANUAL": 3, "SERVICE": 4,
                   "TEACHIN": 5, "TEACH_IN": 5, "STARTUP": 6, "INTERVENED": 7}
ESTOPS = {"NONE": 0, "AUTOACK": 1, "MANUAL": 2, "REMOTE": 3}
CONNECTION_STATES = {"OFFLINE": 0, "ONLINE": 1, "CONNECTIONBROKEN": 2, "HIBERNATING": 3}
ERROR_LEVELS = {"WARNING": 1, "URGENT": 2, "CRITICAL": 3, "FATAL": 4}
ACTION_STATUSES = {"WAITING": 1, "INITIALIZING": 2, "RUNNING": 3, "PAUSED": 4,
                   "RETRIABLE": 5, "FINISHED": 6, "FAILED": 7}


class EventCode(enum.IntEnum):
    """``code`` of a vehicle event (``value`` and ``active`` depend on the code)."""

    ERROR = 1  # value: level (1 WARNING .. 4 FATAL); active 1 raised, 0 cleared
    ESTOP = 2  # value: ESTOPS code; active unless NONE
    FIELD_VIOLATION = 3  # active 1 violated, 0 clear
    OPERATING_MODE = 4  # value: OPERATING_MODES code
    CONNECTION = 5  # value: CONNECTION_STATES code; active 1 when ONLINE
    ORDER = 6  # value: orderUpdateId
    ACTION = 7  # value: ACTION_STATUSES code; active while not FINISHED/FAILED
    MAP = 8  # value: map index
    FACTSHEET = 9  # value: maximum speed (m/s)
    HEADER_RESET = 10  # value: the new headerId (vehicle restarted its numbering)


EVENT_LABELS = tuple((code.name, float(code.value)) for code in EventCode)
Event = tuple[int, float, float, str]  # (code, active, value, text)
MAX_TEXT = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Vehicle-supplied text as a safe event text: control characters as spaces, capped."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def _f(value: float | bool | None) -> float:
    return NAN if value is None else float(value)


class MapIndex:
    """Map ids as small numbers (bounded cardinality): configured maps first, then as seen."""

    def __init__(self, known: tuple[str, ...] = (), limit: int = 64) -> None:
        self.ids: dict[str, int] = {name: i + 1 for i, name in enumerate(known)}
        self.limit = max(limit, len(self.ids))

    def index(self, map_id: str | None) -> float:
        """Return the map's number (NaN for no map or once the limit is reached)."""
        if map_id is None:
            return NAN
        found = self.ids.get(map_id)
        if found is None:
            if len(self.ids) >= self.limit:
                return NAN
            found = self.ids[map_id] = len(self.ids) + 1
        return float(found)


def state_row(view: StateView, map_number: float) -> list[float]:
    """Return the sampled row of a state message, in STATE_FIELDS order (NaN: absent)."""
    return [
        _f(view.x), _f(view.y), _f(view.theta), map_number, _f(view.localized),
        _f(view.vx), _f(view.vy), _f(view.omega), view.charge, _f(view.voltage),
        float(view.charging), float(view.driving), _f(view.paused),
        float(OPERATING_MODES[view.operating_mode]), _f(view.loads),
        _f(view.distance_since_last_node), float(len(view.errors)),
        float(sum(1 for e in view.errors if e.level == "FATAL")), float(ESTOPS[view.estop]),
        float(view.field_violation), float(view.order_update_id),
        float(view.last_node_sequence_id), float(view.header_id),
    ]


def visualization_row(view: VisualizationView) -> list[float]:
    """Return the sampled row of a visualization message (VISUALIZATION_FIELDS order)."""
    return [_f(view.x), _f(view.y), _f(view.theta), _f(view.localized), _f(view.vx),
            _f(view.vy), _f(view.omega), float(view.header_id)]


def _error_text(level: str, error_type: str, description: str, cleared: bool) -> str:
    text = f"{level} {error_type}" + (f": {description}" if description else "")
    return text + (" (cleared)" if cleared else "")


def _error_events(prev: StateView | None, new: StateView) -> list[Event]:
    before = {(e.error_type, e.level): e for e in prev.errors} if prev else {}
    after = {(e.error_type, e.level): e for e in new.errors}
    events: list[Event] = []
    for key, err in after.items():
        if key not in before:
            events.append((EventCode.ERROR, 1.0, float(ERROR_LEVELS[err.level]),
                           _error_text(err.level, err.error_type, err.description, False)))
    for key, err in before.items():
        if key not in after:
            events.append((EventCode.ERROR, 0.0, float(ERROR_LEVELS[err.level]),
                           _error_text(err.level, err.error_type, err.description, True)))
    return events


def _safety_events(prev: StateView | None, new: StateView) -> list[Event]:
    events: list[Event] = []
    if (prev.estop if prev else "NONE") != new.estop:
        active = 0.0 if new.estop == "NONE" else 1.0
        text = "e-stop released" if new.estop == "NONE" else f"e-stop {new.estop}"
        events.append((EventCode.ESTOP, active, float(ESTOPS[new.estop]), text))
    if (prev.field_violation if prev else False) != new.field_violation:
        events.append((EventCode.FIELD_VIOLATION, float(new.field_violation),
                       float(new.field_violation),
                       "protective field violated" if new.field_violation
                       else "protective field clear"))
    return events


def _action_events(prev: StateView | None, new: StateView) -> list[Event]:
    before = {a[0]: a[2] for a in prev.actions} if prev else {}
    events: list[Event] = []
    for action_id, action_type, status in new.actions:
        if before.get(action_id) != status:
            active = 0.0 if status in ("FINISHED", "FAILED") else 1.0
            name = f"{action_id} ({action_type})" if action_type else action_id
            events.append((EventCode.ACTION, active, float(ACTION_STATUSES[status]),
                           f"action {name}: {status}"))
    return events


def state_events(prev: StateView | None, new: StateView, map_number: float,
                 prev_map: float | None) -> list[Event]:
    """Return the events between two consecutive states (``prev`` None: the first seen).

    The first state reports the operating mode, the order and whatever is active (errors,
    e-stop, field violation, actions); later states report changes only.
    """
    events = _error_events(prev, new) + _safety_events(prev, new)
    if prev is None or prev.operating_mode != new.operating_mode:
        events.append((EventCode.OPERATING_MODE, 1.0,
                       float(OPERATING_MODES[new.operating_mode]),
                       f"operating mode {new.operating_mode}"))
    if (prev is None and new.order_id) or (prev is not None and (
            prev.order_id, prev.order_update_id) != (new.order_id, new.order_update_id)):
        events.append((EventCode.ORDER, 1.0 if new.order_id else 0.0,
                       float(new.order_update_id),
                       f"order {new.order_id!r} update {new.order_update_id}"))
    if new.map_id is not None and not (prev_map is None or math.isnan(prev_map)) \
            and prev_map != map_number:
        events.append((EventCode.MAP, 1.0, map_number, f"map {new.map_id}"))
    return events + _action_events(prev, new)


def connection_event(view: ConnectionView) -> Event:
    """Return the event of a connection message."""
    return (EventCode.CONNECTION, 1.0 if view.state == "ONLINE" else 0.0,
            float(CONNECTION_STATES[view.state]), f"connection {view.state}")


def factsheet_event(view: FactsheetView) -> Event:
    """Return the event of a factsheet message (the fields as text, max speed as value)."""
    parts = [f"series {view.series_name or '?'}"]
    if view.kinematic:
        parts.append(f"kinematic {view.kinematic}")
    if view.robot_class:
        parts.append(f"class {view.robot_class}")
    for label, value, unit in (("max load", view.max_load_mass, "kg"),
                               ("max speed", view.speed_max, "m/s"),
                               ("width", view.width, "m"), ("length", view.length, "m")):
        if value is not None:
            parts.append(f"{label} {value:g} {unit}")
    return (EventCode.FACTSHEET, 1.0, _f(view.speed_max), "factsheet: " + ", ".join(parts))
