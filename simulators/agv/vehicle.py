"""One simulated VDA 5050 vehicle: a route between hospital stations and the lab, and its
messages in the shape of its protocol version (2.0, 2.1 or 3.0).

Pure: no MQTT here. ``advance(dt)`` moves the vehicle; ``state()``, ``connection()`` and
``factsheet()`` build the JSON documents with the next headerId of their topic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# A hospital floor (metres): stations around, the lab in the middle, a charging dock.
STATIONS: dict[str, tuple[float, float]] = {
    "emergency": (0.0, 0.0), "icu": (42.0, 0.0), "ward-3": (42.0, 28.0),
    "pharmacy": (0.0, 28.0), "lab": (21.0, 14.0), "dock": (-6.0, -4.0),
}
ROUTE = ("emergency", "lab", "icu", "lab", "ward-3", "lab", "pharmacy", "lab")
SPEED_M_S = 1.2
DWELL_S = 3.0  # loading/unloading at a station
DRAIN_PCT_S = 0.05
CHARGE_PCT_S = 2.0
LOW_BATTERY_PCT = 15.0


def iso_ms(ns: int) -> str:
    """Return ``ns`` as the spec's ISO 8601 UTC timestamp with milliseconds."""
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{(ns // 1_000_000) % 1000:03d}Z"


def ms_floor(ns: int) -> int:
    """Return ``ns`` cut to the millisecond (what the timestamp carries)."""
    return ns - ns % 1_000_000


@dataclass
class Motion:
    """Where the vehicle is on its route."""

    x: float
    y: float
    theta: float = 0.0
    leg: int = 0  # index in ROUTE of the station being driven to
    dwell_s: float = 0.0
    driving: bool = False
    node_sequence: int = 0
    order: int = 0
    charging: bool = False


@dataclass
class AgvVehicle:
    """A vehicle with its version, motion, battery, faults and headerId counters."""

    serial: str
    version: str = "2.0.0"
    manufacturer: str = "medgw-sim"
    interface: str = "uagv"
    map_id: str = "hospital-L1"
    start_leg: int = 0
    battery: float = 90.0
    errors: list[dict[str, str]] = field(default_factory=list)
    estop: str = "NONE"
    field_violation: bool = False
    mode: str = "AUTOMATIC"
    actions: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, status)
    headers: dict[str, int] = field(default_factory=dict)
    motion: Motion = field(init=False)

    def __post_init__(self) -> None:
        leg = self.start_leg % len(ROUTE)
        x, y = STATIONS[ROUTE[leg - 1]]
        self.motion = Motion(x, y, leg=leg)

    # ------------------------------------------------------------------ identity
    @property
    def major(self) -> int:
        """Return the protocol major version (2 or 3)."""
        return int(self.version.split(".")[0])

    def topic(self, subtopic: str) -> str:
        """Return ``interface/vMAJOR/manufacturer/serial/subtopic``."""
        return f"{self.interface}/v{self.major}/{self.manufacturer}/{self.serial}/{subtopic}"

    def next_header(self, subtopic: str) -> int:
        """Take the next headerId of ``subtopic`` (0, 1, 2 ... per topic)."""
        value = self.headers.get(subtopic, -1) + 1
        self.headers[subtopic] = value
        return value

    def restart_numbering(self) -> None:
        """A vehicle restart: every topic's headerId starts at 0 again."""
        self.headers.clear()

    def _header(self, subtopic: str, now_ns: int) -> dict[str, Any]:
        return {"headerId": self.next_header(subtopic), "timestamp": iso_ms(now_ns),
                "version": self.version, "manufacturer": self.manufacturer,
                "serialNumber": self.serial}

    # ------------------------------------------------------------------ motion
    def advance(self, dt: float) -> None:
        """Move ``dt`` seconds along the route (stopped by an e-stop or a FATAL error)."""
        m = self.motion
        blocked = self.estop != "NONE" or any(e["errorLevel"] == "FATAL" for e in self.errors)
        if m.charging:
            self.battery = min(100.0, self.battery + CHARGE_PCT_S * dt)
            m.charging = self.battery < 95.0
            return
        if blocked or m.dwell_s > 0:
            m.driving = False
            m.dwell_s = max(0.0, m.dwell_s - (0 if blocked else dt))
            if m.dwell_s == 0 and not blocked:
                self._finish_actions()
            return
        target = "dock" if self.battery < LOW_BATTERY_PCT else ROUTE[m.leg]
        tx, ty = STATIONS[target]
        dx, dy = tx - m.x, ty - m.y
        dist = math.hypot(dx, dy)
        step = SPEED_M_S * dt
        self.battery = max(0.0, self.battery - DRAIN_PCT_S * dt)
        if dist > step:
            m.x, m.y, m.theta, m.driving = m.x + dx / dist * step, m.y + dy / dist * step, \
                math.atan2(dy, dx), True
            return
        m.x, m.y, m.driving = tx, ty, False
        m.node_sequence += 2
        if target == "dock":
            m.charging = True
            return
        m.leg = (m.leg + 1) % len(ROUTE)
        m.order += 1
        m.dwell_s = DWELL_S
        self.actions = {f"{self.serial}-a{m.order}": ("pick" if target != "lab" else "drop",
                                                      "RUNNING")}

    def _finish_actions(self) -> None:
        self.actions = {k: (t, "FINISHED") for k, (t, _s) in self.actions.items()}

    # ------------------------------------------------------------------ messages
    def state(self, now_ns: int | None = None) -> dict[str, Any]:
        """Build the next state message (takes a state headerId)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        m = self.motion
        v3 = self.major == 3
        doc = self._header("state", now_ns)
        doc.update({
            "orderId": f"{self.serial}-order-{m.order}" if m.order else "",
            "orderUpdateId": 0, "lastNodeId": ROUTE[m.leg - 1],
            "lastNodeSequenceId": m.node_sequence, "nodeStates": [], "edgeStates": [],
            "driving": m.driving, "paused": False, "distanceSinceLastNode": 0.0,
            "velocity": {"vx": SPEED_M_S if m.driving else 0.0, "vy": 0.0, "omega": 0.0},
            "loads": [{"loadId": f"rack-{m.order % 7}", "loadType": "specimen-rack"}]
            if m.order % 2 else [],
            "operatingMode": self._mode(v3),
            "errors": [dict(e) for e in self.errors],
            "actionStates": [{"actionId": k, "actionType": t, "actionStatus": s}
                             for k, (t, s) in self.actions.items()],
        })
        position = {"x": round(m.x, 4), "y": round(m.y, 4), "theta": round(m.theta, 4),
                    "mapId": self.map_id}
        if v3:
            doc["mobileRobotPosition"] = {**position, "localized": True}
            doc["powerSupply"] = {"stateOfCharge": round(self.battery, 3),
                                  "batteryVoltage": 24.0 + self.battery / 50,
                                  "charging": m.charging, "range": self.battery * 50}
            doc["safetyState"] = {"activeEmergencyStop": self.estop,
                                  "fieldViolation": self.field_violation}
            doc["instantActionStates"] = []
        else:
            doc["agvPosition"] = {**position, "positionInitialized": True}
            doc["batteryState"] = {"batteryCharge": round(self.battery, 3),
                                   "batteryVoltage": 24.0 + self.battery / 50,
                                   "charging": m.charging}
            doc["safetyState"] = {"eStop": self.estop, "fieldViolation": self.field_violation}
        return doc

    def _mode(self, v3: bool) -> str:
        if self.mode in ("TEACHIN", "TEACH_IN"):
            return "TEACH_IN" if v3 else "TEACHIN"
        return self.mode

    def connection(self, state: str, now_ns: int | None = None) -> dict[str, Any]:
        """Build a connection message: ONLINE, OFFLINE or CONNECTIONBROKEN (3.0 spelling)."""
        if state == "CONNECTIONBROKEN" and self.major == 3:
            state = "CONNECTION_BROKEN"
        doc = self._header("connection", time.time_ns() if now_ns is None else now_ns)
        doc["connectionState"] = state
        return doc

    def factsheet(self, now_ns: int | None = None) -> dict[str, Any]:
        """Build the factsheet (the fields every version requires, in its own names)."""
        doc = self._header("factsheet", time.time_ns() if now_ns is None else now_ns)
        if self.major == 3:
            doc.update({
                "typeSpecification": {"seriesName": "medgw-tug", "mobileRobotKinematics": "DIFF",
                                      "mobileRobotClass": "CARRIER", "maximumLoadMass": 40.0,
                                      "localizationTypes": ["NATURAL"],
                                      "navigationTypes": ["AUTONOMOUS"]},
                "physicalParameters": {"minimumSpeed": 0.0, "maximumSpeed": 1.5,
                                       "maximumAcceleration": 0.5, "maximumDeceleration": 0.8,
                                       "minimumHeight": 0.9, "maximumHeight": 1.1,
                                       "width": 0.6, "length": 0.9},
                "protocolLimits": {}, "protocolFeatures": {}, "mobileRobotGeometry": {},
                "loadSpecification": {}})
        else:
            doc.update({
                "typeSpecification": {"seriesName": "medgw-tug", "agvKinematic": "DIFF",
                                      "agvClass": "CARRIER", "maxLoadMass": 40.0,
                                      "localizationTypes": ["NATURAL"],
                                      "navigationTypes": ["AUTONOMOUS"]},
                "physicalParameters": {"speedMin": 0.0, "speedMax": 1.5, "accelerationMax": 0.5,
                                       "decelerationMax": 0.8, "heightMin": 0.9,
                                       "heightMax": 1.1, "width": 0.6, "length": 0.9},
                "protocolLimits": {}, "protocolFeatures": {}, "agvGeometry": {},
                "loadSpecification": {}})
        return doc
