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
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from gateway.metrics import GatewayMetrics
from gateway.model import Quality, StreamSpec
from gateway.ring import RingStore, StreamRing


class Driver(Protocol):
    """A running driver: ``run`` pulls data until cancelled and must survive device faults."""

    async def run(self) -> None:
        """Pull telemetry forever (reconnecting as needed) until the task is cancelled."""
        ...


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
        self.count(ring, 1, timestamp_ns)
        return seq

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
        self.metrics.connected.labels(self.device).set(1 if connected else 0)

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


DriverFactory = Callable[[DriverContext, Any], Driver]


@dataclass(frozen=True)
class DriverInfo:
    """A registry entry: the driver's name, its options model and how to build it."""

    name: str
    options_model: type[BaseModel]
    create: DriverFactory
    description: str = ""
