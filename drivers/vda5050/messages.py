"""Version-neutral views of VDA 5050 messages and the one decode entry point.

``decode`` parses JSON, picks the model of the message's own ``version`` (2.0, 2.1, 3.0;
anything else is refused), validates it strictly, checks that the header names the vehicle
of the topic, and returns one view whose shape does not depend on the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from drivers.vda5050.models import (
    ConnectionV2,
    ConnectionV3,
    Factsheet,
    Header,
    StateV2,
    StateV3,
    VisualizationV2,
    VisualizationV3,
)

SUPPORTED_VERSIONS = ((2, 0), (2, 1), (3, 0))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class MessageError(Exception):
    """A message that cannot be used; ``reason`` is the quarantine reason (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


# ------------------------------------------------------------------ version-neutral views
@dataclass(frozen=True, slots=True)
class ErrorView:
    """One active error."""

    error_type: str
    level: str
    description: str


@dataclass(frozen=True, slots=True)
class StateView:
    """A state message of any supported version, in one shape."""

    header_id: int
    timestamp_ns: int
    major: int
    order_id: str
    order_update_id: int
    last_node_sequence_id: int
    driving: bool
    paused: bool | None
    distance_since_last_node: float | None
    operating_mode: str
    x: float | None
    y: float | None
    theta: float | None
    map_id: str | None
    localized: bool | None
    vx: float | None
    vy: float | None
    omega: float | None
    charge: float
    voltage: float | None
    charging: bool
    loads: int | None
    errors: tuple[ErrorView, ...]
    estop: str
    field_violation: bool
    actions: tuple[tuple[str, str, str], ...]  # (actionId, actionType, actionStatus)


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """A connection message: ONLINE, OFFLINE, HIBERNATING or CONNECTIONBROKEN (normalized)."""

    header_id: int
    timestamp_ns: int
    major: int
    state: str


@dataclass(frozen=True, slots=True)
class VisualizationView:
    """Position and velocity from a visualization message."""

    header_id: int
    timestamp_ns: int
    major: int
    x: float | None
    y: float | None
    theta: float | None
    localized: bool | None
    vx: float | None
    vy: float | None
    omega: float | None


@dataclass(frozen=True, slots=True)
class FactsheetView:
    """The factsheet fields medgw keeps."""

    header_id: int
    timestamp_ns: int
    major: int
    series_name: str
    kinematic: str
    robot_class: str
    max_load_mass: float | None
    speed_max: float | None
    width: float | None
    length: float | None


Message = StateView | ConnectionView | VisualizationView | FactsheetView
SUBTOPICS = ("state", "connection", "visualization", "factsheet")


def parse_timestamp(text: str) -> int:
    """Return an ISO 8601 timestamp as ns since the epoch (no zone: UTC, as the spec says)."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as err:
        raise MessageError("bad_timestamp", f"timestamp {text[:40]!r} is not ISO 8601") from err
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    delta = stamp - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def version_of(text: object) -> tuple[int, int]:
    """Return (major, minor) of a supported ``version`` or raise MessageError."""
    if not isinstance(text, str):
        raise MessageError("unknown_version", f"version {text!r} is not a string")
    parts = text.split(".")
    try:
        key = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError) as err:
        raise MessageError("unknown_version", f"version {text[:20]!r}") from err
    if key not in SUPPORTED_VERSIONS:
        raise MessageError("unknown_version", f"version {text[:20]!r} is not 2.0, 2.1 or 3.0")
    return key


def _validate(model: type[Header], data: dict[str, Any]) -> Header:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MessageError("invalid", f"{model.__name__}: {where}: {first['msg']}") from err


_MODELS: dict[tuple[str, bool], type[Header]] = {
    ("state", False): StateV2, ("state", True): StateV3,
    ("connection", False): ConnectionV2, ("connection", True): ConnectionV3,
    ("visualization", False): VisualizationV2, ("visualization", True): VisualizationV3,
    ("factsheet", False): Factsheet, ("factsheet", True): Factsheet,
}


def decode(subtopic: str, payload: bytes, manufacturer: str | None = None,
           serial: str | None = None, major: int | None = None) -> Message:
    """Parse and validate one message of ``subtopic``; MessageError says why not.

    With ``manufacturer``/``serial`` (from the topic) the header must name the same vehicle;
    with ``major`` (the topic's ``vN``) the message's version must be of that major. Then
    the topic's major picks the model and pydantic validates the JSON bytes directly (the
    fast path); only a message that fails is parsed again to say exactly why.
    """
    model = _MODELS.get((subtopic, major == 3)) if major in (2, 3) else None
    msg: Header | None = None
    found = 0
    if model is not None:
        try:
            msg = model.model_validate_json(payload)
        except ValidationError:
            msg = None  # the slow path below names the reason
        else:
            found, _ = version_of(msg.version)
            if found != major:
                raise MessageError("version_mismatch",
                                   f"a {found}.x message on a v{major} topic")
    if msg is None:
        msg, found = _decode_slow(subtopic, payload, major)
    if (manufacturer is not None and msg.manufacturer != manufacturer) or (
            serial is not None and msg.serialNumber != serial):
        raise MessageError("topic_mismatch", f"header names {msg.manufacturer[:40]!r}/"
                           f"{msg.serialNumber[:40]!r}, the topic {manufacturer}/{serial}")
    return _view(msg, found)


def _decode_slow(subtopic: str, payload: bytes, major: int | None) -> tuple[Header, int]:
    """Parse with orjson, check the version, then validate: each failure with its reason."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise MessageError("bad_json", str(err)[:120]) from err
    if not isinstance(data, dict):
        raise MessageError("bad_json", f"a JSON {type(data).__name__}, not an object")
    found, _ = version_of(data.get("version"))
    if major is not None and found != major:
        raise MessageError("version_mismatch", f"a {found}.x message on a v{major} topic")
    model = _MODELS.get((subtopic, found == 3))
    if model is None:
        raise MessageError("unknown_topic", f"subtopic {subtopic[:40]!r}")
    return _validate(model, data), found


def _view(msg: Header, major: int) -> Message:
    if isinstance(msg, (StateV2, StateV3)):
        return state_view(msg, major)
    if isinstance(msg, (ConnectionV2, ConnectionV3)):
        state = "CONNECTIONBROKEN" if msg.connectionState == "CONNECTION_BROKEN" \
            else msg.connectionState
        return ConnectionView(msg.headerId, parse_timestamp(msg.timestamp), major, state)
    if isinstance(msg, (VisualizationV2, VisualizationV3)):
        return visualization_view(msg, major)
    assert isinstance(msg, Factsheet)
    return factsheet_view(msg, major)


def state_view(msg: StateV2 | StateV3, major: int) -> StateView:
    """Return the version-neutral view of a validated state message."""
    estop: str
    if isinstance(msg, StateV3):
        pos3 = msg.mobileRobotPosition
        supply = msg.powerSupply
        pos = (pos3.x, pos3.y, pos3.theta, pos3.mapId, pos3.localized) if pos3 else None
        charge, voltage, charging = supply.stateOfCharge, supply.batteryVoltage, supply.charging
        estop = msg.safetyState.activeEmergencyStop
        actions = tuple((a.actionId, a.actionType or "", a.actionStatus)
                        for a in (*msg.actionStates, *msg.instantActionStates))
        errors = tuple(ErrorView(e.errorType, e.errorLevel, e.errorDescription or "")
                       for e in msg.errors)
    else:
        pos2 = msg.agvPosition
        battery = msg.batteryState
        pos = (pos2.x, pos2.y, pos2.theta, pos2.mapId, pos2.positionInitialized) if pos2 \
            else None
        charge, voltage, charging = battery.batteryCharge, battery.batteryVoltage, \
            battery.charging
        estop = msg.safetyState.eStop
        actions = tuple((a.actionId, a.actionType or "", a.actionStatus)
                        for a in msg.actionStates)
        errors = tuple(ErrorView(e.errorType, e.errorLevel, e.errorDescription or "")
                       for e in msg.errors)
    vel = msg.velocity
    return StateView(
        header_id=msg.headerId, timestamp_ns=parse_timestamp(msg.timestamp), major=major,
        order_id=msg.orderId, order_update_id=msg.orderUpdateId,
        last_node_sequence_id=msg.lastNodeSequenceId, driving=msg.driving, paused=msg.paused,
        distance_since_last_node=msg.distanceSinceLastNode, operating_mode=msg.operatingMode,
        x=pos[0] if pos else None, y=pos[1] if pos else None, theta=pos[2] if pos else None,
        map_id=pos[3] if pos else None, localized=pos[4] if pos else None,
        vx=vel.vx if vel else None, vy=vel.vy if vel else None,
        omega=vel.omega if vel else None, charge=charge, voltage=voltage, charging=charging,
        loads=None if msg.loads is None else len(msg.loads), errors=errors, estop=estop,
        field_violation=msg.safetyState.fieldViolation, actions=actions)


def visualization_view(msg: VisualizationV2 | VisualizationV3, major: int) -> VisualizationView:
    """Return the version-neutral view of a validated visualization message."""
    if isinstance(msg, VisualizationV3):
        p3 = msg.mobileRobotPosition
        pos = (p3.x, p3.y, p3.theta, p3.localized) if p3 else None
    else:
        p2 = msg.agvPosition
        pos = (p2.x, p2.y, p2.theta, p2.positionInitialized) if p2 else None
    vel = msg.velocity
    return VisualizationView(
        msg.headerId, parse_timestamp(msg.timestamp), major,
        pos[0] if pos else None, pos[1] if pos else None, pos[2] if pos else None,
        pos[3] if pos else None, vel.vx if vel else None, vel.vy if vel else None,
        vel.omega if vel else None)


def factsheet_view(msg: Factsheet, major: int) -> FactsheetView:
    """Return the factsheet fields medgw keeps (either version's names)."""
    spec, phys = msg.typeSpecification, msg.physicalParameters
    return FactsheetView(
        msg.headerId, parse_timestamp(msg.timestamp), major, spec.seriesName or "",
        spec.agvKinematic or spec.mobileRobotKinematics or spec.mobileRobotKinematic or "",
        spec.agvClass or spec.mobileRobotClass or "",
        spec.maxLoadMass if spec.maxLoadMass is not None else spec.maximumLoadMass,
        phys.speedMax if phys.speedMax is not None else phys.maximumSpeed,
        phys.width, phys.length)
