"""headerId as a source sequence number: holes are losses at the source, not inside medgw.

VDA 5050 numbers every message of a topic (``headerId`` + 1 per message sent, "but not
necessarily received": state is QoS 0). A hole between two headerIds is a gap at the
source. A vehicle restart starts the numbering again: headerId going back (to small
numbers, or at all), or a jump too large to be loss, is a reset and never counted as a
gap; so is the first message after the vehicle reported ONLINE again or after medgw's own
session to the fleet broker was re-established (what was lost meanwhile is medgw's gap).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """What one headerId means relative to the previous one of the same topic."""

    FIRST = "first"  # no baseline (first message, after ONLINE or a session loss)
    NEXT = "next"
    GAP = "gap"
    DUPLICATE = "duplicate"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Observation:
    """The outcome and, for a gap, the missing headerIds ``from_id..to_id`` (inclusive)."""

    outcome: Outcome
    previous: int | None = None
    from_id: int = 0
    to_id: int = -1

    @property
    def missing(self) -> int:
        """Return how many headerIds are missing (0 unless a gap)."""
        return self.to_id - self.from_id + 1 if self.outcome is Outcome.GAP else 0


class HeaderTracker:
    """Follows one topic's headerIds of one vehicle."""

    def __init__(self, max_gap: int = 100_000) -> None:
        self.max_gap = max_gap
        self.last: int | None = None
        self.gaps = 0
        self.missing = 0
        self.resets = 0
        self.duplicates = 0

    def rebase(self) -> None:
        """Forget the baseline: the next headerId starts a new run (no gap counted)."""
        self.last = None

    def observe(self, header_id: int) -> Observation:
        """Classify ``header_id`` and advance the baseline (a duplicate does not move it)."""
        last = self.last
        if last is None:
            self.last = header_id
            return Observation(Outcome.FIRST)
        if header_id == last + 1:
            self.last = header_id
            return Observation(Outcome.NEXT, last)
        if header_id == last:
            self.duplicates += 1
            return Observation(Outcome.DUPLICATE, last)
        self.last = header_id
        if header_id < last or header_id - last - 1 > self.max_gap:
            self.resets += 1
            return Observation(Outcome.RESET, last)
        self.gaps += 1
        self.missing += header_id - last - 1
        return Observation(Outcome.GAP, last, last + 1, header_id - 1)
