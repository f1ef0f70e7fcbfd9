"""Samples missing between the header stamps of a periodic topic (what DDS drops silently).

Cyclone DDS reports no SAMPLE_LOST when a best-effort reader misses samples or a reliable
keep-last writer drops unacknowledged ones (measured), so on a periodic topic with header
stamps the driver estimates the loss from the stamps: once ``WARMUP`` intervals fixed the
period (their median, refreshed every ``WINDOW``), an interval of at least ``THRESHOLD``
periods, but shorter than the topic's stale limit (longer is a silence, which staleness
reports), counts ``round(interval / period) - 1`` missing samples.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

WARMUP = 32  # intervals seen before the period is trusted
WINDOW = 64  # intervals the period's median is taken over
THRESHOLD = 1.75  # an interval this many periods long (or more) means samples are missing


class StampGaps:
    """Per-topic estimator; :attr:`missing` only grows."""

    __slots__ = ("_fresh", "deltas", "last_ns", "limit_ns", "missing", "period_ns")

    def __init__(self, limit_ns: int | None) -> None:
        self.limit_ns = limit_ns  # intervals this long are silences, not loss
        self.deltas: deque[int] = deque(maxlen=WINDOW)
        self.period_ns = 0
        self.last_ns: int | None = None
        self.missing = 0
        self._fresh = 0  # intervals since the period was last computed

    def feed(self, stamps: Iterable[int]) -> None:
        """Account for the next stamps of the topic, in arrival order."""
        last, period, limit = self.last_ns, self.period_ns, self.limit_ns
        for stamp in stamps:
            if last is None or stamp <= last:  # the first, or out of order: no interval
                last = stamp if last is None else max(last, stamp)
                continue
            delta = stamp - last
            last = stamp
            if period and delta >= THRESHOLD * period and (limit is None or delta < limit):
                self.missing += int(delta / period + 0.5) - 1
                continue  # a gap is not a sample of the period
            self.deltas.append(delta)
            self._fresh += 1
            if self._fresh >= (WARMUP if not period else WINDOW):
                period = self.period_ns = int(statistics.median(self.deltas))
                self._fresh = 0
        self.last_ns = last
