"""Samples missing between the header stamps of a periodic topic (what DDS drops silently).

Cyclone DDS reports no SAMPLE_LOST when a best-effort reader misses samples or a reliable
keep-last writer drops unacknowledged ones (measured), and cyclonedds-python's SampleInfo
carries no writer sequence number, so on a periodic topic with header stamps the driver
estimates the loss from the stamps. The rules:

- **Period**: the median of the first ``WARMUP`` intervals, refreshed every ``WINDOW``;
  but when the stamps are on a grid (every interval of the window within ``GRID_TOL``
  of a whole multiple of the shortest eighth of them), that grid step: under heavy loss
  most intervals are gaps and their median is several periods (measured: 5.5 at depth
  2, where half the intervals were gaps). Once it is fixed, the warm-up intervals are
  accounted for as well (backfilled): a drop during the warm-up is counted like any
  later one.
- **Short gap**: an interval of at least ``THRESHOLD`` periods, but shorter than the
  topic's stale limit, counts ``round(interval / period) - 1`` missing samples.
- **Long gap** (the stale limit or longer): a silence, reported by staleness, *unless*
  both (1) the publisher stamps on a grid: the last ``GRID_RUN`` intervals and the gap
  itself are within ``GRID_TOL`` of a whole number of periods, and (2) the driver itself
  was stalled through the silence (``stalled``: its housekeeping did not run for at
  least the stale limit, so it could not have seen the silence as one). Then the
  publisher kept its period and what it wrote in the gap was overwritten before the
  driver took it: counted like a short gap. A publisher that pauses while the driver
  runs is never counted (the driver saw the silence: STALE), whatever its stamps.
- **Before the first sample** nothing is known (the publisher may have started just
  then): never counted. Out-of-order stamps make no interval.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

WARMUP = 32  # intervals seen before the period is trusted
WINDOW = 64  # intervals the period's median is taken over
THRESHOLD = 1.75  # an interval this many periods long (or more) means samples are missing
GRID_TOL = 0.02  # "on the grid": within this fraction of a period of a whole number of them
GRID_RUN = 16  # on-grid intervals in a row before a long gap may count (rule 1 above)


class StampGaps:
    """Per-topic estimator; :attr:`missing` only grows (:attr:`long_missing` is part of it)."""

    __slots__ = ("_fresh", "_run", "deltas", "last_ns", "limit_ns", "long_missing",
                 "missing", "period_ns")

    def __init__(self, limit_ns: int | None) -> None:
        self.limit_ns = limit_ns  # intervals this long are silences, unless the rule says
        self.deltas: deque[int] = deque(maxlen=WINDOW)
        self.period_ns = 0
        self.last_ns: int | None = None
        self.missing = 0
        self.long_missing = 0  # counted in gaps of the stale limit or longer (rule 2)
        self._fresh = 0  # intervals since the period was last computed
        self._run = 0  # intervals in a row on the period's grid

    def feed(self, stamps: Iterable[int], stalled: bool = False) -> None:
        """Account for the next stamps of the topic, in arrival order.

        ``stalled``: the driver did not look at the topic for at least the stale limit
        before these samples (its own stall, not the publisher's silence).
        """
        last = self.last_ns
        for stamp in stamps:
            if last is None or stamp <= last:  # the first, or out of order: no interval
                last = stamp if last is None else max(last, stamp)
                continue
            delta = stamp - last
            last = stamp
            if self.period_ns and self._gap(delta, stalled):
                continue  # a gap is not a sample of the period
            self.deltas.append(delta)
            self._fresh += 1
            if self._fresh >= (WARMUP if not self.period_ns else WINDOW):
                first = not self.period_ns
                self.period_ns = _period(self.deltas)
                self._fresh = 0
                if first:
                    self._backfill()
        self.last_ns = last

    def _gap(self, delta: int, stalled: bool) -> bool:
        """Count the samples a gap of ``delta`` held; return False if it is no gap."""
        period = self.period_ns
        periods = int(delta / period + 0.5)
        on_grid = abs(delta - periods * period) <= GRID_TOL * period
        run = self._run
        self._run = run + 1 if on_grid else 0
        if delta < THRESHOLD * period:
            return False
        if self.limit_ns is None or delta < self.limit_ns:
            self.missing += periods - 1
        elif stalled and on_grid and run >= GRID_RUN:
            self.missing += periods - 1
            self.long_missing += periods - 1
        return True

    def _backfill(self) -> None:
        """Count the gaps among the warm-up intervals now that the period is known."""
        period, limit = self.period_ns, self.limit_ns
        kept = [d for d in self.deltas if d < THRESHOLD * period]
        for delta in self.deltas:
            if delta >= THRESHOLD * period and (limit is None or delta < limit):
                self.missing += int(delta / period + 0.5) - 1
        self.deltas = deque(kept, maxlen=WINDOW)


def _period(deltas: Iterable[int]) -> int:
    """Return the period: the grid step when every interval is on one, else the median."""
    ordered = sorted(deltas)
    median = int(statistics.median(ordered))
    step = ordered[len(ordered) // 8]  # at least an eighth of the intervals are this short
    if step <= 0 or step >= median:
        return median
    if any(abs(d - int(d / step + 0.5) * step) > GRID_TOL * step for d in ordered):
        return median  # not a grid (jitter, or a rate that changed): the median
    return int(statistics.median(d for d in ordered if d <= step * (1 + GRID_TOL)))
