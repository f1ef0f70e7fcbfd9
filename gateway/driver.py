"""The driver contract: what a protocol driver gets (a context) and what it must provide.

A driver is a thin, read-only adapter over its protocol library. It declares streams,
appends samples to their rings, and reports connection state, gaps and malformed input
through its context. It never writes to a device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel

from gateway.metrics import GatewayMetrics
from gateway.model import Quality, QualityArray, StreamSpec, TimestampArray, ValueArray
from gateway.ring import RingStore, StreamRing

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class Driver(Protocol):
    """A running driver: ``run`` pulls data until cancelled and must survive device faults."""

    async def run(self) -> None:
        """Pull telemetry forever (reconnecting as needed) until the task is cancelled."""
        ...


@runtime_checkable
class CheckableDriver(Protocol):
    """A driver that can answer ``medgw check``: reach the device once, say what it found."""

    async def check(self) -> str:
        """Connect, look, disconnect; return a one-line summary or raise DeviceError."""
        ...


@dataclass
class DeviceState:
    """What a driver reports about its device, read by /health and the status page."""

    connected: bool = False
    last_error: str | None = None  # text, never an exception object (it must serialize)


@dataclass
class DriverContext:
    """Everything a driver may touch: its identity, the rings, the metrics, a logger."""

    site: str
    device: str
    store: RingStore
    metrics: GatewayMetrics
    log: logging.Logger
    ring_capacity: int = 16384
    event_ring_capacity: int = 4096  # events are rare: a small ring keeps RSS down
    ring_seconds: float | None = None  # size rings of streams with a known rate in time
    min_ring_capacity: int = 1024
    state: DeviceState = field(default_factory=DeviceState)
    _last_event_ns: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add_stream(self, spec: StreamSpec) -> StreamRing:
        """Register one of this device's streams and return its ring."""
        return self.store.add_stream(spec, self.capacity_for(spec))

    def capacity_for(self, spec: StreamSpec) -> int:
        """Return the ring size of a stream: small for events, rate x time when known."""
        if spec.is_event:
            return min(self.ring_capacity, self.event_ring_capacity)
        if self.ring_seconds and spec.rate_hz > 0:
            wanted = math.ceil(spec.rate_hz * self.ring_seconds)
            return min(self.ring_capacity, max(self.min_ring_capacity, wanted))
        return self.ring_capacity

    def stream_spec(self, stream: str, fields: tuple[str, ...], units: tuple[str, ...],
                    **kwargs: Any) -> StreamSpec:
        """Build a StreamSpec for this site and device."""
        return StreamSpec(self.site, self.device, stream, fields, units, **kwargs)

    def append_one(self, ring: StreamRing, timestamp_ns: int, values: Any,
                   quality: int = Quality.GOOD, text: str | None = None,
                   receive_ns: int = 0) -> int:
        """Append one sample and count it; the per-message path of event-driven drivers.

        Two events of one stream never share a timestamp: InfluxDB would merge them into one
        point (same series and time), so a tie moves the later event 1 ns on.
        """
        if ring.stream.is_event:
            original = timestamp_ns
            last_original, last_assigned = self._last_event_ns.get(ring.stream.key, (-1, -1))
            # a tie, or a stamp inside the range the previous ties were moved into
            if last_original <= original <= last_assigned:
                timestamp_ns = last_assigned + 1
            self._last_event_ns[ring.stream.key] = (original, timestamp_ns)
        seq = ring.append_one(timestamp_ns, np.asarray(values, dtype=np.float64), quality,
                              text, receive_ns)
        self.count(ring, 1, timestamp_ns, receive_ns or None)  # as append(): clock offset
        return seq

    def append(self, ring: StreamRing, timestamps_ns: TimestampArray, values: ValueArray,
               quality: QualityArray, *, text: tuple[str, ...] | list[str] | None = None,
               receive_ns: TimestampArray | None = None) -> int:
        """Append a batch to one of this device's rings and count it, in one step.

        Returns the sequence number of the batch's first sample. The newest receive time
        (when given) also sets the stream's clock offset.
        """
        first = ring.append(timestamps_ns, values, quality, text=text, receive_ns=receive_ns)
        n = int(timestamps_ns.shape[0])
        if n:
            newest_rx = int(receive_ns[-1]) if receive_ns is not None else None
            self.count(ring, n, int(timestamps_ns[-1]), newest_rx)
        return first

    def count(self, ring: StreamRing, n: int, newest_ns: int,
              receive_ns: int | None = None) -> None:
        """Update received/last-seen metrics after the driver appended ``n`` samples.

        With ``receive_ns`` (when the newest sample arrived) also the clock offset.
        """
        key, m = ring.stream.key, self.metrics
        m.child(m.received, key).inc(n)
        m.child(m.last_seen, key).set(newest_ns / 1e9)
        if receive_ns is not None:
            m.child(m.clock_offset, key).set((receive_ns - newest_ns) / 1e9)
        if ring.stream.is_event:
            m.child(m.events, key).inc(n)

    def set_connected(self, connected: bool) -> None:
        """Record the device session state (exported as medgw_device_connected)."""
        self.state.connected = connected
        self.metrics.connected.labels(self.device).set(1 if connected else 0)

    def set_error(self, error: BaseException | str | None) -> None:
        """Record the device's latest error as text (None when it works again)."""
        if error is None:
            self.state.last_error = None
        elif isinstance(error, BaseException):
            self.state.last_error = f"{type(error).__name__}: {error}"
        else:
            self.state.last_error = error

    def report_gap(self, seconds: float) -> None:
        """Record that data from this device was missing for ``seconds`` (log + metric)."""
        self.metrics.gap_seconds.labels(self.device).inc(seconds)
        self.metrics.reconnects.labels(self.device).inc()
        self.log.warning("device %s: data missing for %.3f s, session re-established",
                         self.device, seconds)

    def quarantine(self, reason: str, detail: str = "") -> None:
        """Count a malformed message from this device; it is dropped, the driver goes on."""
        self.metrics.malformed.labels(self.device, reason).inc()
        self.log.warning("device %s: malformed input (%s) quarantined %s", self.device,
                         reason, detail[:200])


DriverFactory = Callable[[DriverContext, OptionsT], Driver]


@dataclass(frozen=True)
class DriverInfo(Generic[OptionsT]):
    """A registry entry: the driver's name, its options model and how to build it."""

    name: str
    options_model: type[OptionsT]
    create: DriverFactory[OptionsT]
    description: str = ""
