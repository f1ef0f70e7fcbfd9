"""Per-vehicle streams and the handling of one fleet's messages (no MQTT here: testable alone).

Every vehicle gets, on its first valid message, a sampled stream ``<vehicle>`` (measurement
``vda5050_state``), an event stream ``<vehicle>.events`` (``vda5050_event``) and an event
stream ``<vehicle>.source_gap`` (``medgw_source_gap``: headerIds lost at the source, apart
from medgw's own ``medgw_gap``). A malformed message is quarantined for its vehicle only.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from drivers.vda5050.mapping import (
    EVENT_FIELDS,
    EVENT_LABELS,
    GAP_FIELDS,
    STATE_FIELDS,
    STATE_UNITS,
    VISUALIZATION_FIELDS,
    VISUALIZATION_UNITS,
    Event,
    EventCode,
    MapIndex,
    clean_text,
    connection_event,
    factsheet_event,
    state_events,
    state_row,
    visualization_row,
)
from drivers.vda5050.messages import (
    ConnectionView,
    FactsheetView,
    MessageError,
    StateView,
    VisualizationView,
    decode,
)
from drivers.vda5050.options import Vda5050Options
from drivers.vda5050.sequence import HeaderTracker, Observation, Outcome
from gateway.driver import DriverContext
from gateway.errors import StreamSpecError
from gateway.metrics import shared_counter
from gateway.model import Quality, StreamKind, StreamSpec
from gateway.ring import StreamRing

_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, FleetMetrics] = \
    weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


class FleetMetrics:
    """The source-side loss ledger on /metrics (one set per registry, shared by devices)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.source_gap = shared_counter(registry, "medgw_source_gap", "Messages a vehicle "
                                         "numbered (headerId) but nobody received: lost at "
                                         "the source, not in medgw", ("device", "vehicle"))
        self.source_resets = shared_counter(registry, "medgw_source_resets", "headerId "
                                            "numbering restarted (vehicle restart): not "
                                            "counted as loss", ("device", "vehicle"))
        self.quarantined = Counter("medgw_source_quarantined", "Malformed messages of one "
                                   "vehicle, dropped (the others flow)",
                                   ["device", "vehicle", "reason"], registry=registry)

    @staticmethod
    def of(registry: CollectorRegistry) -> FleetMetrics:
        """Return the registry's fleet metrics, creating them once."""
        with _METRICS_LOCK:
            found = _METRICS.get(registry)
            if found is None:
                found = _METRICS[registry] = FleetMetrics(registry)
            return found


class UniqueTimes:
    """Moves a timestamp that ties with the previous one 1 ns on (InfluxDB would merge them)."""

    def __init__(self) -> None:
        self.original = -1
        self.assigned = -1

    def next(self, timestamp_ns: int) -> int:
        """Return ``timestamp_ns`` or, on a tie, the next free nanosecond."""
        original = timestamp_ns
        if self.original <= original <= self.assigned:
            timestamp_ns = self.assigned + 1
        self.original, self.assigned = original, timestamp_ns
        return timestamp_ns


@dataclass
class VehicleStats:
    """Per-vehicle counters (tests, the benchmark and logs read them)."""

    states: int = 0
    events: int = 0
    quarantined: int = 0
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    resets: int = 0


@dataclass
class Vehicle:
    """One vehicle: its streams, its last state and its headerId trackers."""

    manufacturer: str
    serial: str
    name: str
    state_ring: StreamRing
    event_ring: StreamRing
    gap_ring: StreamRing
    vis_ring: StreamRing | None = None
    prev: StateView | None = None
    prev_map: float | None = None
    connection: tuple[int, int, str] | None = None  # (headerId, timestamp, state) last seen
    factsheet: tuple[int, int] | None = None
    trackers: dict[str, HeaderTracker] = field(default_factory=dict)
    times: dict[str, UniqueTimes] = field(default_factory=dict)
    stats: VehicleStats = field(default_factory=VehicleStats)


@dataclass
class FleetStats:
    """Counters over the whole fleet."""

    messages: int = 0
    quarantined: int = 0
    refused: int = 0  # messages of vehicles refused as a whole (bad name, too many)


class Fleet:
    """Turns messages into samples; called from one thread (the MQTT network thread)."""

    def __init__(self, ctx: DriverContext, options: Vda5050Options) -> None:
        self.ctx = ctx
        self.options = options
        self.vehicles: dict[tuple[str, str], Vehicle] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self.names: set[str] = set()
        self.maps = MapIndex(options.maps, options.max_maps)
        self.stats = FleetStats()
        self.metrics = FleetMetrics.of(ctx.metrics.registry)

    # ------------------------------------------------------------------ vehicles
    def _name(self, manufacturer: str, serial: str) -> str:
        if self.options.stream_name == "manufacturer.serial":
            return f"{manufacturer}.{serial}"
        return serial

    def _specs(self, name: str) -> list[StreamSpec]:
        rate = self.options.rate_hz
        return [
            self.ctx.stream_spec(name, STATE_FIELDS, STATE_UNITS, rate_hz=rate,
                                 measurement="vda5050_state"),
            self.ctx.stream_spec(f"{name}.events", EVENT_FIELDS, ("", "", ""),
                                 kind=StreamKind.EVENT, measurement="vda5050_event",
                                 labels=EVENT_LABELS),
            self.ctx.stream_spec(f"{name}.source_gap", GAP_FIELDS, ("", "", ""),
                                 kind=StreamKind.EVENT, measurement="medgw_source_gap"),
        ]

    def vehicle(self, manufacturer: str, serial: str) -> Vehicle | None:
        """Return the vehicle, creating its streams at first sight (None: refused)."""
        key = (manufacturer, serial)
        found = self.vehicles.get(key)
        if found is not None:
            return found
        reason = self.refused.get(key)
        if reason is None:
            reason = self._admit(manufacturer, serial)
            if reason is None:
                return self.vehicles[key]
        self.stats.refused += 1
        self._count_quarantine(None, f"{manufacturer}/{serial}"[:120], reason)
        return None

    def _admit(self, manufacturer: str, serial: str) -> str | None:
        """Create a vehicle's streams; return the refusal reason instead when it cannot be."""
        key = (manufacturer, serial)
        if len(self.vehicles) >= self.options.max_vehicles:
            return "too_many_vehicles"  # not remembered: a slot may not free up, but cheap
        name = self._name(manufacturer, serial)
        try:
            specs = self._specs(name)
        except StreamSpecError as err:  # a serial number the name rule refuses
            self.refused[key] = "bad_name"
            self.ctx.log.warning("device %s: vehicle %s/%s refused: %s", self.ctx.device,
                                 manufacturer[:60], serial[:60], err)
            return "bad_name"
        if any(spec.stream in self.names for spec in specs):
            self.refused[key] = "name_collision"
            self.ctx.log.warning("device %s: vehicle %s/%s refused: stream %s is taken by "
                                 "another vehicle", self.ctx.device, manufacturer, serial, name)
            return "name_collision"
        small = min(self.options.event_ring_capacity, self.ctx.capacity_for(specs[1]))
        state = self.ctx.add_stream(specs[0])  # sized in time from rate_hz
        events, gaps = (self.ctx.store.add_stream(spec, small) for spec in specs[1:])
        self.names.update(spec.stream for spec in specs)
        self.vehicles[key] = Vehicle(manufacturer, serial, name, state, events, gaps)
        self.ctx.log.info("device %s: vehicle %s/%s -> stream %s", self.ctx.device,
                          manufacturer, serial, name)
        return None

    # ------------------------------------------------------------------ messages
    def handle(self, topic: str, payload: bytes, receive_ns: int) -> None:
        """Handle one message of the fleet broker; never raises for bad input."""
        self.stats.messages += 1
        parts = topic.split("/")
        if len(parts) != 5:
            self._count_quarantine(None, topic[:120], "bad_topic")
            return
        _, major_level, manufacturer, serial, subtopic = parts
        vehicle = self.vehicle(manufacturer, serial)
        if vehicle is None:
            return
        major = int(major_level[1:]) if major_level[1:].isdigit() and \
            major_level[:1] == "v" else None
        try:
            view = decode(subtopic, payload, manufacturer, serial, major)
        except MessageError as err:
            self._count_quarantine(vehicle, err.detail, err.reason)
            return
        if isinstance(view, StateView):
            self._on_state(vehicle, view, receive_ns)
        elif isinstance(view, ConnectionView):
            self._on_connection(vehicle, view, receive_ns)
        elif isinstance(view, VisualizationView):
            self._on_visualization(vehicle, view, receive_ns)
        else:
            self._on_factsheet(vehicle, view, receive_ns)

    def rebase(self) -> None:
        """After medgw's own session loss: the next headerIds start new runs (not source loss)."""
        for vehicle in self.vehicles.values():
            for tracker in vehicle.trackers.values():
                tracker.rebase()

    def _sequence(self, vehicle: Vehicle, subtopic: str, header_id: int, stamp_ns: int,
                  receive_ns: int) -> bool:
        """Follow a headerId; record a source gap or reset; False for a duplicate."""
        tracker = vehicle.trackers.get(subtopic)
        if tracker is None:
            tracker = vehicle.trackers[subtopic] = HeaderTracker(self.options.max_source_gap)
        seen = tracker.observe(header_id)
        if seen.outcome is Outcome.DUPLICATE:
            vehicle.stats.duplicates += 1
            return False
        if seen.outcome is Outcome.GAP:
            self._source_gap(vehicle, subtopic, seen, stamp_ns, receive_ns)
        elif seen.outcome is Outcome.RESET:
            vehicle.stats.resets += 1
            self.metrics.source_resets.labels(self.ctx.device, vehicle.name).inc()
            self.ctx.log.info("device %s: vehicle %s %s headerId %s -> %d: numbering restarted",
                              self.ctx.device, vehicle.name, subtopic, seen.previous, header_id)
            self._event(vehicle, stamp_ns, (EventCode.HEADER_RESET, 1.0, float(header_id),
                        f"{subtopic} headerId {seen.previous} -> {header_id}: restarted"),
                        receive_ns)
        return True

    def _source_gap(self, vehicle: Vehicle, subtopic: str, seen: Observation, stamp_ns: int,
                    receive_ns: int) -> None:
        missing = seen.missing
        vehicle.stats.gaps += 1
        vehicle.stats.missing += missing
        self.metrics.source_gap.labels(self.ctx.device, vehicle.name).inc(missing)
        text = f"{subtopic} headerId {seen.from_id}..{seen.to_id}: {missing} lost at the source"
        self.ctx.log.warning("device %s: vehicle %s: %s", self.ctx.device, vehicle.name, text)
        self.ctx.append_one(vehicle.gap_ring, stamp_ns,
                            (float(seen.from_id), float(seen.to_id), float(missing)),
                            Quality.GOOD, text, receive_ns)

    def _on_state(self, vehicle: Vehicle, view: StateView, receive_ns: int) -> None:
        if not self._sequence(vehicle, "state", view.header_id, view.timestamp_ns, receive_ns):
            return
        map_number = self.maps.index(view.map_id)
        quality = Quality.UNCERTAIN if view.localized is False else Quality.GOOD
        self._sample(vehicle, vehicle.state_ring, "state", view.timestamp_ns,
                     state_row(view, map_number), quality, receive_ns)
        vehicle.stats.states += 1
        for event in state_events(vehicle.prev, view, map_number, vehicle.prev_map):
            self._event(vehicle, view.timestamp_ns, event, receive_ns)
        vehicle.prev, vehicle.prev_map = view, map_number

    def _on_visualization(self, vehicle: Vehicle, view: VisualizationView,
                          receive_ns: int) -> None:
        if not self._sequence(vehicle, "visualization", view.header_id, view.timestamp_ns,
                              receive_ns):
            return
        if vehicle.vis_ring is None:
            spec = self.ctx.stream_spec(f"{vehicle.name}.visualization", VISUALIZATION_FIELDS,
                                        VISUALIZATION_UNITS, measurement="vda5050_visualization")
            vehicle.vis_ring = self.ctx.add_stream(spec)
        quality = Quality.UNCERTAIN if view.localized is False else Quality.GOOD
        self._sample(vehicle, vehicle.vis_ring, "visualization", view.timestamp_ns,
                     visualization_row(view), quality, receive_ns)

    def _on_connection(self, vehicle: Vehicle, view: ConnectionView, receive_ns: int) -> None:
        seen = (view.header_id, view.timestamp_ns, view.state)
        if vehicle.connection == seen:  # the retained message again (medgw re-subscribed)
            vehicle.stats.duplicates += 1
            return
        vehicle.connection = seen
        if view.state == "ONLINE":  # a (re)connected vehicle may have restarted: new runs
            for tracker in vehicle.trackers.values():
                tracker.rebase()
        self._event(vehicle, view.timestamp_ns, connection_event(view), receive_ns)

    def _on_factsheet(self, vehicle: Vehicle, view: FactsheetView, receive_ns: int) -> None:
        seen = (view.header_id, view.timestamp_ns)
        if vehicle.factsheet == seen:
            vehicle.stats.duplicates += 1
            return
        vehicle.factsheet = seen
        self._event(vehicle, view.timestamp_ns, factsheet_event(view), receive_ns)

    # ------------------------------------------------------------------ appends
    def _sample(self, vehicle: Vehicle, ring: StreamRing, subtopic: str, stamp_ns: int,
                row: list[float], quality: int, receive_ns: int) -> None:
        times = vehicle.times.get(subtopic)
        if times is None:
            times = vehicle.times[subtopic] = UniqueTimes()
        stamp = times.next(stamp_ns)
        ring.append_one(stamp, np.array(row, dtype=np.float64), quality, None, receive_ns)
        self.ctx.count(ring, 1, stamp, receive_ns)

    def _event(self, vehicle: Vehicle, stamp_ns: int, event: Event, receive_ns: int) -> None:
        code, active, value, text = event
        self.ctx.append_one(vehicle.event_ring, stamp_ns, (float(code), active, value),
                            Quality.GOOD, clean_text(text), receive_ns)
        vehicle.stats.events += 1

    def _count_quarantine(self, vehicle: Vehicle | None, detail: str, reason: str) -> None:
        self.stats.quarantined += 1
        name = vehicle.name if vehicle is not None else "?"
        if vehicle is not None:
            vehicle.stats.quarantined += 1
        self.metrics.quarantined.labels(self.ctx.device, name, reason).inc()
        self.ctx.quarantine(reason, f"vehicle {name}: {detail}")

