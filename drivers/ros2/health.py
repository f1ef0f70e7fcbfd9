"""The per-device ``topic-health`` event stream: stale/fresh, loss, quarantine, unmatched."""

from __future__ import annotations

import time

from drivers.ros2.mapping import HEALTH_LABELS
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind
from gateway.ring import StreamRing

HEALTH_STREAM = "topic-health"  # '-' cannot occur in a ROS name, so no topic collides
_CODE = dict(HEALTH_LABELS)


class HealthStream:
    """The per-device event stream that records topics going stale and recovering."""

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self._ring: StreamRing | None = None

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
        self.ctx.append_one(self.ring, timestamp_ns, [_CODE[label]], Quality.GOOD, text,
                            time.time_ns())
