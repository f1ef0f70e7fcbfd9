"""Deterministic carrier kinematics: missions between hospital stations and the central lab.

Pure Python, no OPC UA: the server in ``server.py`` publishes what this model computes.
Every carrier cycles idle -> loading -> in_transit -> arrived -> idle; the state after a
given sequence of steps depends only on the carrier index and the step sizes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

STATIONS = ("emergency-1", "ward-3b", "icu-2", "oncology-4", "outpatient-1", "maternity-2")
CENTRAL_LAB = "central-lab"

COLD_CHAIN_MIN_C = 2.0
COLD_CHAIN_MAX_C = 8.0
LOADING_S = 3.0
ARRIVED_S = 3.0
LOW_BATTERY_PCT = 15.0


class MissionState(enum.IntEnum):
    """Mission state of a carrier (published as Int32)."""

    IDLE = 0
    LOADING = 1
    IN_TRANSIT = 2
    ARRIVED = 3
    FAULT = 4


class Alarm(enum.IntEnum):
    """Alarm codes published in ActiveAlarm (0 = none); the highest active one wins."""

    NONE = 0
    LOW_BATTERY = 101
    DOOR_OPEN_IN_TRANSIT = 201
    TEMPERATURE_EXCURSION = 301
    DRIVE_FAULT = 401


ALARM_TEXT = {
    Alarm.NONE: "",
    Alarm.LOW_BATTERY: "battery low",
    Alarm.DOOR_OPEN_IN_TRANSIT: "payload door open in transit",
    Alarm.TEMPERATURE_EXCURSION: "payload temperature outside 2-8 degC",
    Alarm.DRIVE_FAULT: "drive fault, carrier stopped",
}


@dataclass(frozen=True)
class VariableDef:
    """One published variable: browse name, value kind, unit and its UNECE code."""

    name: str
    kind: str  # "double" | "bool" | "int32" | "string"
    unit: str
    unece: str | None
    description: str


VARIABLES: tuple[VariableDef, ...] = (
    VariableDef("RouteProgress", "double", "1", "C62", "route progress 0..1"),
    VariableDef("RoutePosition", "double", "m", "MTR", "distance travelled on the route"),
    VariableDef("Speed", "double", "m/s", "MTS", "ground speed"),
    VariableDef("Battery", "double", "%", "P1", "battery state of charge"),
    VariableDef("PayloadTemperature", "double", "°C", "CEL",
                "payload compartment temperature (cold chain 2-8 °C)"),
    VariableDef("DoorOpen", "bool", "", None, "payload door open"),
    VariableDef("MissionState", "int32", "", None,
                "0 idle, 1 loading, 2 in_transit, 3 arrived, 4 fault"),
    VariableDef("SpecimenCount", "int32", "", None, "specimen tubes on board"),
    VariableDef("ActiveAlarm", "int32", "", None,
                "0 none, 101 battery low, 201 door open in transit, 301 temperature, 401 drive"),
    VariableDef("AlarmText", "string", "", None, "text of the active alarm"),
)
VARIABLE_NAMES = tuple(v.name for v in VARIABLES)


def carrier_name(index: int) -> str:
    """Return the browse name of carrier ``index`` (0-based): ``carrier-01`` ..."""
    return f"carrier-{index + 1:02d}"


@dataclass
class Faults:
    """Faults injected into one carrier by tests."""

    temperature_c: float | None = None  # payload temperature forced to this value
    door_forced_open: bool = False
    drive_fault: bool = False


@dataclass
class Carrier:
    """State of one carrier; ``step`` advances it, ``values`` reads what is published."""

    index: int
    route_length_m: float = 0.0
    cruise_mps: float = 0.0
    state: MissionState = MissionState.IDLE
    phase_s: float = 0.0
    t_s: float = 0.0
    trip: int = 0
    position_m: float = 0.0
    speed_mps: float = 0.0
    battery_pct: float = 0.0
    specimens: int = 0
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        i = self.index
        self.route_length_m = 120.0 + 40.0 * (i % 7)
        self.cruise_mps = 1.0 + 0.1 * (i % 5)
        self.battery_pct = 100.0 - 3.0 * (i % 10)
        self.phase_s = -1.5 * (i % 8)  # stagger the fleet

    @property
    def name(self) -> str:
        """Return the carrier's browse name."""
        return carrier_name(self.index)

    @property
    def route(self) -> str:
        """Return the current route as text."""
        station = STATIONS[(self.index + self.trip) % len(STATIONS)]
        return f"{station} -> {CENTRAL_LAB}"

    def idle_s(self) -> float:
        """Return how long the carrier waits between missions."""
        return 2.0 + (self.index % 3)

    def step(self, dt: float) -> None:
        """Advance the carrier by ``dt`` seconds."""
        self.t_s += dt
        self.phase_s += dt
        if self.faults.drive_fault:
            self.speed_mps = 0.0
            return
        handler = {
            MissionState.IDLE: self._idle,
            MissionState.LOADING: self._loading,
            MissionState.IN_TRANSIT: self._transit,
            MissionState.ARRIVED: self._arrived,
            MissionState.FAULT: self._idle,
        }[self.state]
        handler(dt)

    def _enter(self, state: MissionState) -> None:
        self.state = state
        self.phase_s = 0.0

    def _idle(self, dt: float) -> None:
        self.speed_mps = 0.0
        self.battery_pct = min(100.0, self.battery_pct + 0.5 * dt)
        if self.phase_s >= self.idle_s():
            self._enter(MissionState.LOADING)

    def _loading(self, dt: float) -> None:
        if self.phase_s >= LOADING_S:
            self.specimens = 1 + (self.trip + self.index) % 8
            self.position_m = 0.0
            self._enter(MissionState.IN_TRANSIT)

    def _transit(self, dt: float) -> None:
        ripple = 1.0 + 0.05 * math.sin(2.0 * math.pi * self.t_s / 7.0)
        self.speed_mps = self.cruise_mps * ripple
        self.position_m = min(self.route_length_m, self.position_m + self.speed_mps * dt)
        self.battery_pct = max(0.0, self.battery_pct - 0.08 * dt)
        if self.position_m >= self.route_length_m:
            self.speed_mps = 0.0
            self._enter(MissionState.ARRIVED)

    def _arrived(self, dt: float) -> None:
        if self.phase_s >= ARRIVED_S:
            self.specimens = 0
            self.trip += 1
            self.position_m = 0.0
            self._enter(MissionState.IDLE)

    def temperature_c(self) -> float:
        """Return the payload temperature: 5 °C with a slow wave, or the injected value."""
        if self.faults.temperature_c is not None:
            return self.faults.temperature_c
        return round(5.0 + 1.2 * math.sin(2.0 * math.pi * self.t_s / 90.0 + self.index), 4)

    def door_open(self) -> bool:
        """Return True while the payload door is open."""
        if self.faults.door_forced_open:
            return True
        return self.state in (MissionState.LOADING, MissionState.ARRIVED) and not (
            self.faults.drive_fault
        )

    def mission_state(self) -> MissionState:
        """Return the published mission state (FAULT while a drive fault is active)."""
        return MissionState.FAULT if self.faults.drive_fault else self.state

    def alarm(self) -> Alarm:
        """Return the highest-priority active alarm."""
        temperature = self.temperature_c()
        if self.faults.drive_fault:
            return Alarm.DRIVE_FAULT
        if not COLD_CHAIN_MIN_C <= temperature <= COLD_CHAIN_MAX_C:
            return Alarm.TEMPERATURE_EXCURSION
        if self.door_open() and self.state is MissionState.IN_TRANSIT:
            return Alarm.DOOR_OPEN_IN_TRANSIT
        if self.battery_pct < LOW_BATTERY_PCT:
            return Alarm.LOW_BATTERY
        return Alarm.NONE

    def values(self) -> dict[str, float | int | bool | str]:
        """Return the current value of every published variable, keyed by browse name."""
        alarm = self.alarm()
        progress = self.position_m / self.route_length_m if self.route_length_m else 0.0
        return {
            "RouteProgress": round(progress, 6),
            "RoutePosition": round(self.position_m, 4),
            "Speed": round(self.speed_mps, 4),
            "Battery": round(self.battery_pct, 4),
            "PayloadTemperature": self.temperature_c(),
            "DoorOpen": self.door_open(),
            "MissionState": int(self.mission_state()),
            "SpecimenCount": self.specimens,
            "ActiveAlarm": int(alarm),
            "AlarmText": ALARM_TEXT[alarm],
        }


def make_fleet(count: int, warmup_s: float = 0.0, dt: float = 0.5) -> list[Carrier]:
    """Create ``count`` carriers, optionally advanced by ``warmup_s`` seconds."""
    fleet = [Carrier(i) for i in range(count)]
    steps = int(warmup_s / dt)
    for carrier in fleet:
        for _ in range(steps):
            carrier.step(dt)
    return fleet
