"""The per-device ``topic-health`` event stream: stale/fresh, loss, quarantine, unmatched."""

from __future__ import annotations

import time
from collections import deque

from drivers.ros2.mapping import HEALTH_LABELS
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind
from gateway.ring import StreamRing

HEALTH_STREAM = "topic-health"  # '-' cannot occur in a ROS name, so no topic collides
_CODE = dict(HEALTH_LABELS)
RECENT = 4096  # timestamps of the last events kept to keep new ones off them


class HealthStream:
    """The per-device event stream that records topics going stale and recovering."""

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self._ring: StreamRing | None = None
        self._used: set[int] = set()
        self._order: deque[int] = deque()

    @property
    def ring(self) -> StreamRing:
        """Return the health ring, registering it on first use."""
        if self._ring is None:
            spec = self.ctx.stream_spec(HEALTH_STREAM, ("stale",), ("",), kind=StreamKind.EVENT,
                                        measurement="robot_event", labels=HEALTH_LABELS)
            self._ring = self.ctx.add_stream(spec)
        return self._ring

    def emit(self, timestamp_ns: int, label: str, text: str) -> None:
        """Append one health event at once; ``label`` is one of HEALTH_LABELS' names."""
        self.ctx.append_one(self.ring, self._unique(timestamp_ns), [_CODE[label]],
                            Quality.GOOD, text, time.time_ns())

    def _unique(self, timestamp_ns: int) -> int:
        """Return ``timestamp_ns``, moved 1 ns on until no recent event has it.

        The events mix time bases (a topic's header stamps for STALE/FRESH, the wall clock
        for LOST/UNMATCHED), and every topic of a robot shares one stamp grid, so two
        events of the stream can get one timestamp with others between them; InfluxDB
        would keep only the last (one series). DriverContext.append_one moves only a tie
        with the previous event; this keeps any of the last ``RECENT`` apart.
        """
        while timestamp_ns in self._used:
            timestamp_ns += 1
        self._used.add(timestamp_ns)
        self._order.append(timestamp_ns)
        if len(self._order) > RECENT:
            self._used.discard(self._order.popleft())
        return timestamp_ns
