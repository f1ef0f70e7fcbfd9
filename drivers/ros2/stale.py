"""Stale-topic detection: a topic silent for N nominal periods is stale until data returns.

Pure logic on caller-supplied monotonic nanoseconds, so it is tested without DDS or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StaleClock:
    """Tracks one topic's arrivals; reports the fresh->stale and stale->fresh transitions."""

    period_ns: int
    periods: float = 5.0
    min_ns: int = 0  # never stale after less silence than this, whatever the rate
    last_seen_ns: int | None = None
    stale: bool = False

    def __post_init__(self) -> None:
        if self.period_ns <= 0:
            raise ValueError("period_ns must be > 0")
        if self.periods <= 0:
            raise ValueError("periods must be > 0")

    @classmethod
    def for_rate(cls, rate_hz: float, periods: float, min_ns: int = 0) -> StaleClock:
        """Build a clock for a topic published at ``rate_hz``."""
        if rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        return cls(period_ns=max(1, round(1e9 / rate_hz)), periods=periods, min_ns=min_ns)

    @property
    def limit_ns(self) -> int:
        """Return the silence after which the topic is stale."""
        return max(int(self.period_ns * self.periods), self.min_ns)

    def silent_ns(self, now_ns: int) -> int:
        """Return how long the topic has been silent (0 before its first message)."""
        return 0 if self.last_seen_ns is None else max(0, now_ns - self.last_seen_ns)

    def seen(self, now_ns: int) -> int | None:
        """Record an arrival; return the silence it ended if the topic was stale, else None."""
        recovered = self.silent_ns(now_ns) if self.stale else None
        self.last_seen_ns = now_ns
        self.stale = False
        return recovered

    def check(self, now_ns: int) -> int | None:
        """Return the silence if the topic became stale at ``now_ns`` (once), else None."""
        if self.stale or self.last_seen_ns is None:
            return None
        silent = now_ns - self.last_seen_ns
        if silent <= self.limit_ns:
            return None
        self.stale = True
        return silent
