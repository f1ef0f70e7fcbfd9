"""The driver's streams: one sampled stream per carrier, its event stream, its bindings.

A binding ties a monitored item (client handle) to a column of a carrier's stream. A
carrier whose stream cannot be registered (a name or field the ingest would refuse) is
refused alone, logged and counted once; the rest of the device flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.opcua.discovery import Variable
from drivers.opcua.mapping import EVENT_FIELDS, EVENT_LABELS, EventDetector, UniqueTimes
from drivers.opcua.options import OpcUaOptions
from gateway.driver import DriverContext
from gateway.model import StreamKind
from gateway.ring import StreamRing


@dataclass
class CarrierStream:
    """One sampled stream (a carrier), its column map and its event stream."""

    name: str
    ring: StreamRing
    columns: dict[str, int]
    event_ring: StreamRing | None = None
    detector: EventDetector | None = None
    times: UniqueTimes = field(default_factory=UniqueTimes)
    event_times: UniqueTimes = field(default_factory=UniqueTimes)
    events: int = 0


@dataclass
class Binding:
    """A monitored item: which column of which stream its changes fill."""

    handle: int
    variable: Variable
    stream: CarrierStream
    column: int
    item_id: int | None = None
    dead: bool = False  # the server reported the node gone


@dataclass
class DriverStats:
    """Counters the tests and the benchmark read."""

    changes: int = 0
    rows: int = 0
    events: int = 0
    quarantined: int = 0
    sessions: int = 0
    discoveries: int = 0
    skipped: tuple[str, ...] = field(default_factory=tuple)
    refused: tuple[str, ...] = field(default_factory=tuple)  # carriers whose stream was refused


def stream_of(binding: Binding) -> str:
    """Return the stream name of a binding (chunking key)."""
    return binding.stream.name


class StreamTable:
    """Creates streams on first sight and a binding (client handle) per variable."""

    def __init__(self, ctx: DriverContext, options: OpcUaOptions, stats: DriverStats) -> None:
        self.ctx = ctx
        self.options = options
        self.stats = stats
        self.streams: dict[str, CarrierStream] = {}
        self.bindings: dict[int, Binding] = {}
        self._next_handle = 1
        self._warned: set[str] = set()

    def warn_once(self, key: str, message: str) -> None:
        """Log a warning the first time ``key`` is seen (per driver lifetime)."""
        if key not in self._warned:
            self._warned.add(key)
            self.ctx.log.warning("device %s: %s", self.ctx.device, message)

    def bind(self, variables: tuple[Variable, ...] | list[Variable]) -> list[Binding]:
        """Bind each variable to its stream's column; return the new bindings."""
        by_stream: dict[str, list[Variable]] = {}
        for var in variables:
            by_stream.setdefault(var.stream, []).append(var)
        out = []
        for name, group in by_stream.items():
            stream = self.streams.get(name) or self._add_stream(name, group)
            if stream is None:
                continue
            for var in group:
                column = stream.columns.get(var.field)
                if column is None:
                    self.warn_once(f"{name}.{var.field}",
                                   f"variable {var.path} is not a field of stream {name}"
                                   f" {tuple(stream.columns)}; not monitored")
                    continue
                binding = Binding(self._next_handle, var, stream, column)
                self._next_handle += 1
                self.bindings[binding.handle] = binding
                out.append(binding)
        return out

    def _add_stream(self, name: str, group: list[Variable]) -> CarrierStream | None:
        units = {v.field: v.unit for v in group}
        fields = tuple(group[0].fields or dict.fromkeys(v.field for v in group))
        rules = self.options.events
        watched = {rules.temperature_field, rules.door_field, rules.mission_field,
                   rules.alarm_field}
        try:  # StreamSpec refuses what the ingest would: this carrier alone is not monitored
            spec = self.ctx.stream_spec(
                name, fields, tuple(units.get(f, "") for f in fields), kind=StreamKind.SAMPLED,
                measurement=self.options.measurement, rate_hz=self.nominal_rate_hz())
            event_spec = None
            if rules.enabled and watched & set(fields):
                event_spec = self.ctx.stream_spec(
                    f"{name}.events", EVENT_FIELDS, ("", "", ""), kind=StreamKind.EVENT,
                    measurement=self.options.event_measurement, labels=EVENT_LABELS)
            stream = CarrierStream(name, self.ctx.add_stream(spec),
                                   {f: i for i, f in enumerate(fields)})
            if event_spec is not None:
                stream.event_ring = self.ctx.add_stream(event_spec)
                stream.detector = EventDetector(rules.rule(), fields)
        except ValueError as err:  # StreamSpecError, or a ring of that name and another shape
            self._refuse(name, group, err)
            return None
        self.streams[name] = stream
        return stream

    def _refuse(self, name: str, group: list[Variable], err: Exception) -> None:
        if name in self.stats.refused:
            return
        self.stats.refused = (*self.stats.refused, name)
        self.ctx.quarantine("stream_refused", f"{name}: {err}")
        self.warn_once(f"refused:{name}", f"carrier {name} ({group[0].path} ...) not monitored:"
                       f" {err}")

    def nominal_rate_hz(self) -> float:
        """A carrier's nominal rows per second: one per sampling interval, or, with
        ``sampling_interval_ms: 0`` (the server's fastest), one per publishing interval.

        Only sizes the ring (gateway/driver.py ``capacity_for``), whose floor of 2 x
        ``max_batch_samples`` leaves a wide margin for queued values arriving faster.
        """
        interval_ms = self.options.sampling_interval_ms or self.options.publishing_interval_ms
        return 1000.0 / interval_ms

    def dead_or_vanished(self, found: dict[tuple[str, str], Variable]) -> list[Binding]:
        """Return bindings whose node is dead, gone, or now another node."""
        return [b for b in self.bindings.values()
                if b.dead or (b.stream.name, b.variable.field) not in found
                or found[(b.stream.name, b.variable.field)].node_id != b.variable.node_id]

    def forget(self, bindings: list[Binding]) -> None:
        """Drop bindings (their monitored items are deleted or refused)."""
        for b in bindings:
            self.bindings.pop(b.handle, None)

