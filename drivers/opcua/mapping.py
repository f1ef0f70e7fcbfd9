"""Pure mapping rules of the OPC UA driver: status -> quality, names, values, rows, events.

Nothing here talks to a server, so every rule is unit-tested without one.
"""

from __future__ import annotations

import collections
import enum
import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from gateway.model import TOPIC_SAFE, Quality

_FILETIME_UNIX_OFFSET = 116_444_736_000_000_000  # 100 ns ticks from 1601-01-01 to 1970-01-01
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SEVERITY_MASK = 0xC000_0000
_NUMERIC_TYPE_IDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 26, 27, 28, 29, 290})
_CAMEL_1 = re.compile(r"([A-Za-z0-9])([A-Z][a-z]+)")  # not after a separator
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NOT_FIELD = re.compile(r"[^a-z0-9_]+")
_NOT_TOPIC = re.compile(r"[^A-Za-z0-9_.-]+")

T = TypeVar("T")


def quality_of(status: int) -> Quality:
    """Map an OPC UA StatusCode value to a Quality: Good, Uncertain, Bad by severity bits."""
    severity = status & _SEVERITY_MASK
    if severity == 0:
        return Quality.GOOD
    if severity == 0x4000_0000:
        return Quality.UNCERTAIN
    return Quality.BAD  # 0x80000000 Bad, 0xC0000000 reserved: treated as Bad


def is_numeric_type(type_ns: int, type_id: object) -> bool:
    """Return True for DataTypes the driver stores as numbers (Boolean, integers, floats)."""
    return type_ns == 0 and isinstance(type_id, int) and type_id in _NUMERIC_TYPE_IDS


def datetime_to_ns(value: datetime) -> int:
    """Convert an OPC UA timestamp (aware or naive UTC datetime) to integer ns since 1970."""
    delta = value - (_EPOCH_AWARE if value.tzinfo is not None else _EPOCH_NAIVE)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def filetime_to_ns(filetime: int) -> int:
    """Convert 100 ns ticks since 1601 (OPC UA DateTime) to ns since 1970."""
    return (filetime - _FILETIME_UNIX_OFFSET) * 100


def snake_case(name: str) -> str:
    """Turn a browse name such as ``PayloadTemperature`` into ``payload_temperature``."""
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name)).lower()
    return _NOT_FIELD.sub("_", text).strip("_") or "value"


def topic_safe(name: str) -> str:
    """Make a browse name usable as a stream name (an MQTT topic level)."""
    cleaned = _NOT_TOPIC.sub("_", name).strip("_")
    return cleaned if cleaned and TOPIC_SAFE.fullmatch(cleaned) else "unnamed"


def split_pattern(pattern: str) -> tuple[str, ...]:
    """Split a browse pattern ``Fleet/*/PayloadTemperature`` into its segments."""
    parts = tuple(p for p in pattern.strip("/").split("/"))
    if not parts or any(p == "" for p in parts):
        raise ValueError(f"browse pattern {pattern!r} has an empty segment")
    return parts


def segment_matches(segment: str, browse_name: str) -> bool:
    """Return True when one glob segment (``*``, ``?``, ``[..]``) matches a browse name."""
    return fnmatch.fnmatchcase(browse_name, segment)


def path_matches(pattern: str, path: Sequence[str]) -> bool:
    """Return True when a browse path (names below Objects) matches the whole pattern."""
    segments = split_pattern(pattern)
    return len(segments) == len(path) and all(
        segment_matches(s, p) for s, p in zip(segments, path, strict=True)
    )


def to_float(value: object) -> float | str:
    """Convert a variant value to float, or return the quarantine reason for garbage."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            return "not_finite"
        return number if math.isfinite(number) else "not_finite"
    return "wrong_type"


@dataclass
class Row:
    """One sample being assembled: values reported together (same timestamp and quality)."""

    timestamp_ns: int
    quality: Quality
    values: list[float]
    bad_fields: list[tuple[int, int, str]] = field(default_factory=list)  # column, status, name

    def has(self, column: int) -> bool:
        """Return True when ``column`` already holds a value (or a Bad report)."""
        if not math.isnan(self.values[column]):
            return True
        return any(c == column for c, _, _ in self.bad_fields)


class RowAssembler:
    """Groups the data changes of one publish into rows per stream.

    Changes of one stream with the same timestamp and quality share a row; a column that is
    already set starts a new row. Columns not reported stay NaN (never a stale copy).
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[Row] = []
        self._open: dict[tuple[int, int], Row] = {}

    def add(self, timestamp_ns: int, quality: Quality, column: int, value: float,
            status: int = 0, status_name: str = "") -> None:
        """Add one change; a Bad change records the column and its status, value NaN."""
        key = (timestamp_ns, int(quality))
        row = self._open.get(key)
        if row is None or row.has(column):
            row = Row(timestamp_ns, quality, [math.nan] * self.width)
            self.rows.append(row)
            self._open[key] = row
        if quality is Quality.BAD:
            row.bad_fields.append((column, status, status_name))
        else:
            row.values[column] = value

    def sorted_rows(self) -> list[Row]:
        """Return the rows in timestamp order (stable for equal timestamps)."""
        return sorted(self.rows, key=lambda r: r.timestamp_ns)


class UniqueTimes:
    """Keeps rows of one stream that must not merge in InfluxDB off each other's timestamp.

    InfluxDB merges points of one series with equal timestamps (fields and the quality
    field are overwritten). Rows with the same key (e.g. the same quality) may share a
    timestamp; a row with another key is moved 1 ns later until its timestamp is free.

    Sharing is deliberate, also across publish responses: rows of one quality at one
    source time are parts of one device instant (initial values that came in two
    notifications, a variable whose change came in a later one, a value re-sent after a
    reconnect), and the one point InfluxDB merges them into is the right result. Moving
    such a row 1 ns on, as ``DriverContext.append_one`` does for events (each event is an
    occurrence of its own), would invent an instant the device never reported and make
    every re-sent value a duplicate point. The price: the gateway counts one sample more
    than InfluxDB holds points for each shared timestamp.
    """

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._seen: collections.OrderedDict[int, int] = collections.OrderedDict()

    def place(self, timestamp_ns: int, key: int) -> int:
        """Return the timestamp to store a row with ``key`` at (``timestamp_ns`` or later)."""
        while True:
            holder = self._seen.get(timestamp_ns)
            if holder is None or holder == key:
                break
            timestamp_ns += 1
        self._seen[timestamp_ns] = key
        self._seen.move_to_end(timestamp_ns)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return timestamp_ns


def chunk_by_stream(items: Iterable[T], stream_of: Callable[[T], str],
                    limit: int) -> list[list[T]]:
    """Split monitored items into CreateMonitoredItems requests without splitting a stream.

    The initial values of the items of one request arrive together; items of one stream
    split over two requests can arrive in two publish responses and so become two rows of
    one source time. Items are grouped by stream (streams in first-seen order, items in
    their order), whole groups are packed into chunks of at most ``limit`` items, and a
    stream with more than ``limit`` items is a chunk of its own (never split).
    """
    if limit < 1:
        raise ValueError(f"chunk limit must be >= 1, not {limit}")
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(stream_of(item), []).append(item)
    chunks: list[list[T]] = []
    current: list[T] = []
    for group in groups.values():
        if current and len(current) + len(group) > limit:
            chunks.append(current)
            current = []
        current.extend(group)
    if current:
        chunks.append(current)
    return chunks


class EventCode(enum.IntEnum):
    """Codes of the carrier_event stream (the 'code' column)."""

    DOOR_OPEN_IN_TRANSIT = 1
    TEMPERATURE_EXCURSION = 2
    MISSION_FAULT = 3
    ALARM = 4
    SIGNAL_BAD = 5


EVENT_FIELDS = ("code", "active", "value")
EVENT_LABELS = tuple((code.name, float(code.value)) for code in EventCode)


@dataclass(frozen=True)
class EventRule:
    """Field names and thresholds the carrier events are computed from."""

    temperature_field: str = "payload_temperature"
    temperature_min: float = 2.0
    temperature_max: float = 8.0
    door_field: str = "door_open"
    mission_field: str = "mission_state"
    in_transit_states: tuple[int, ...] = (2,)
    fault_states: tuple[int, ...] = (4,)
    alarm_field: str = "active_alarm"


@dataclass(frozen=True)
class CarrierEvent:
    """One edge: a condition became active (1) or cleared (0)."""

    code: EventCode
    active: bool
    value: float
    text: str

    def values(self) -> tuple[float, float, float]:
        """Return the event's row for the (code, active, value) columns."""
        return (float(self.code), 1.0 if self.active else 0.0, self.value)


class EventDetector:
    """Turns one carrier's rows into edge-triggered events (raised once, cleared once)."""

    def __init__(self, rule: EventRule, fields: Sequence[str]) -> None:
        self.rule = rule
        self.fields = tuple(fields)
        self.known: dict[str, float] = {}
        self.active: dict[EventCode, float] = {}
        self.bad: set[str] = set()
        # columns the conditions read: a row that changes none of them cannot raise or
        # clear a condition (each evaluation leaves ``active`` matching its inputs)
        watched = {rule.temperature_field, rule.door_field, rule.mission_field,
                   rule.alarm_field}
        self._watched = tuple(i for i, name in enumerate(self.fields) if name in watched)

    def update(self, row: Row) -> list[CarrierEvent]:
        """Apply a row and return the events it triggers, in a fixed order."""
        events: list[CarrierEvent] = []
        for column, status, status_name in row.bad_fields:
            name = self.fields[column]
            self.known.pop(name, None)
            if name not in self.bad:
                self.bad.add(name)
                events.append(CarrierEvent(EventCode.SIGNAL_BAD, True, float(status),
                                           f"{name}: {status_name or 'Bad'}"))
        if row.quality is Quality.BAD:
            return events
        known, bad, values = self.known, self.bad, row.values
        for name, value in zip(self.fields, values, strict=True):
            if value == value:  # not NaN: reported in this row
                known[name] = value
                if bad and name in bad:
                    bad.discard(name)
                    events.append(CarrierEvent(EventCode.SIGNAL_BAD, False, 0.0,
                                               f"{name}: good again"))
        if any(values[i] == values[i] for i in self._watched):
            events.extend(self._conditions())
        return events

    def _conditions(self) -> list[CarrierEvent]:
        # texts are formatted only for an edge: most rows raise or clear nothing
        rule, known = self.rule, self.known
        events: list[CarrierEvent] = []
        temperature = known.get(rule.temperature_field)
        if temperature is not None:
            out = not rule.temperature_min <= temperature <= rule.temperature_max
            events.extend(self._edge(EventCode.TEMPERATURE_EXCURSION, out, temperature,
                                     lambda: self._temperature_text(temperature, out)))
        mission = known.get(rule.mission_field)
        door = known.get(rule.door_field)
        if mission is not None and door is not None:
            in_transit = int(mission) in rule.in_transit_states and door >= 0.5
            events.extend(self._edge(
                EventCode.DOOR_OPEN_IN_TRANSIT, in_transit, door,
                lambda: "payload door opened in transit" if in_transit else
                "payload door closed"))
        if mission is not None:
            fault = int(mission) in rule.fault_states
            events.extend(self._edge(
                EventCode.MISSION_FAULT, fault, mission,
                lambda: f"mission fault (state {int(mission)})" if fault else
                "mission fault cleared"))
        alarm = known.get(rule.alarm_field)
        if alarm is not None:
            events.extend(self._alarm(alarm))
        return events

    def _temperature_text(self, temperature: float, out: bool) -> str:
        rule = self.rule
        if out:
            return (f"payload temperature {temperature:.2f} °C outside "
                    f"{rule.temperature_min:g}-{rule.temperature_max:g} °C")
        return f"payload temperature {temperature:.2f} °C back in range"

    def _edge(self, code: EventCode, condition: bool, value: float,
              text: Callable[[], str]) -> list[CarrierEvent]:
        if condition and code not in self.active:
            self.active[code] = value
            return [CarrierEvent(code, True, value, text())]
        if not condition and code in self.active:
            del self.active[code]
            return [CarrierEvent(code, False, value, text())]
        return []

    def _alarm(self, alarm: float) -> list[CarrierEvent]:
        previous = self.active.get(EventCode.ALARM)
        if alarm != 0 and alarm != previous:
            self.active[EventCode.ALARM] = alarm
            return [CarrierEvent(EventCode.ALARM, True, alarm, f"alarm {int(alarm)} active")]
        if alarm == 0 and previous is not None:
            del self.active[EventCode.ALARM]
            return [CarrierEvent(EventCode.ALARM, False, previous,
                                 f"alarm {int(previous)} cleared")]
        return []
