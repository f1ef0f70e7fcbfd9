"""Per-stream sequence tracking in the ingest: duplicates and gaps.

Each stream keeps the sorted, merged ranges of sequence numbers this worker wrote, with the
timestamps at their ends. A message entirely inside written ranges is a duplicate (a
broker redelivery or a spool replay): it is acknowledged without a write and not counted
again. A hole between two ranges becomes a *candidate* gap; after a grace period the
ingest checks InfluxDB for the hole's time window (another worker of the shared
subscription may have written those samples) and records what is still missing as a
``medgw_gap`` point. Only the last ``max_spans`` ranges per stream are kept in memory.
A worker that restarts starts with empty ranges: a gap across its own restart is not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.model import SampleBatch, StreamSpec

GAP_MEASUREMENT = "medgw_gap"


@dataclass(slots=True)
class Span:
    """A run of written sequence numbers ``lo..hi`` with the timestamps of its ends."""

    lo: int
    hi: int
    ts_lo: int
    ts_hi: int
    created: float


@dataclass(frozen=True, slots=True)
class Hole:
    """Sequence numbers ``lo..hi`` not seen, between samples at ``ts_before``/``ts_after``."""

    stream: StreamSpec
    lo: int
    hi: int
    ts_before: int
    ts_after: int


@dataclass(frozen=True, slots=True)
class Gap:
    """A confirmed run of missing sequence numbers; stored just after the sample before it."""

    stream: StreamSpec
    from_seq: int
    to_seq: int
    ts_ns: int

    @property
    def missing(self) -> int:
        """Return how many sequence numbers are missing."""
        return self.to_seq - self.from_seq + 1


@dataclass
class StreamTrack:
    """The written ranges of one stream."""

    stream: StreamSpec
    spans: list[Span] = field(default_factory=list)
    settled: set[tuple[int, int]] = field(default_factory=set)  # holes already checked

    def new_samples(self, lo: int, hi: int) -> int:
        """Return how many of ``lo..hi`` are not inside a written range."""
        covered = 0
        for span in self.spans:
            a, b = max(lo, span.lo), min(hi, span.hi)
            if a <= b:
                covered += b - a + 1
        return (hi - lo + 1) - covered

    def add(self, lo: int, hi: int, ts_lo: int, ts_hi: int, max_spans: int) -> None:
        """Merge ``lo..hi`` into the written ranges."""
        spans = self.spans
        now = time.monotonic()
        new = Span(lo, hi, ts_lo, ts_hi, now)
        out: list[Span] = []
        placed = False
        for span in spans:
            if span.hi + 1 < new.lo:
                out.append(span)
            elif new.hi + 1 < span.lo:
                if not placed:
                    out.append(new)
                    placed = True
                out.append(span)
            else:  # overlapping or adjacent: merge into new
                if span.lo < new.lo:
                    new.lo, new.ts_lo = span.lo, span.ts_lo
                if span.hi > new.hi:
                    new.hi, new.ts_hi = span.hi, span.ts_hi
                new.created = min(new.created, span.created)
        if not placed:
            out.append(new)
        self.spans = out[-max_spans:]

    def due_holes(self, grace_s: float, now: float) -> list[Hole]:
        """Return the holes between written ranges older than ``grace_s``."""
        holes = []
        for before, after in zip(self.spans, self.spans[1:], strict=False):
            if (before.hi + 1, after.lo - 1) in self.settled:
                continue
            if now - after.created >= grace_s:
                holes.append(Hole(self.stream, before.hi + 1, after.lo - 1, before.ts_hi,
                                  after.ts_lo))
        return holes

    def fill(self, hole: Hole) -> None:
        """Mark a checked hole as settled; its numbers still count as not written here.

        Samples arriving later for it are written (never taken for duplicates).
        """
        self.settled.add((hole.lo, hole.hi))
        if len(self.settled) > 4 * len(self.spans) + 64:  # forget holes long merged away
            live = {(a.hi + 1, b.lo - 1) for a, b in zip(self.spans, self.spans[1:],
                                                          strict=False)}
            self.settled &= live


class SeqTracker:
    """Duplicate and gap bookkeeping for every stream one ingest worker sees."""

    def __init__(self, max_spans: int = 256) -> None:
        self.max_spans = max_spans
        self.streams: dict[str, StreamTrack] = {}

    def observe(self, batch: SampleBatch) -> int:
        """Record a batch about to be written; return how many of its samples are new."""
        track = self.streams.get(batch.stream.key)
        if track is None:
            track = self.streams[batch.stream.key] = StreamTrack(batch.stream)
        lo, hi = batch.first_seq, batch.last_seq
        new = track.new_samples(lo, hi)
        if new:
            track.add(lo, hi, int(batch.timestamps_ns[0]), int(batch.timestamps_ns[-1]),
                      self.max_spans)
        return new

    def due_holes(self, grace_s: float) -> list[Hole]:
        """Return every stream's holes older than ``grace_s``."""
        now = time.monotonic()
        return [h for track in self.streams.values() for h in track.due_holes(grace_s, now)]

    def settle(self, hole: Hole, present: set[int]) -> list[Gap]:
        """Close a checked hole: return the runs of it not in ``present`` as gaps."""
        self.streams[hole.stream.key].fill(hole)
        gaps: list[Gap] = []
        start = hole.lo
        for seq in sorted(s for s in present if hole.lo <= s <= hole.hi):
            if seq > start:
                gaps.append(Gap(hole.stream, start, seq - 1, hole.ts_before + 1 + len(gaps)))
            start = seq + 1
        if start <= hole.hi:
            gaps.append(Gap(hole.stream, start, hole.hi, hole.ts_before + 1 + len(gaps)))
        return gaps


def gap_line(gap: Gap) -> bytes:
    """Return the ``medgw_gap`` line-protocol point of a gap (names are topic-safe)."""
    s = gap.stream
    return (f"{GAP_MEASUREMENT},device={s.device},site={s.site},stream={s.stream} "
            f"from_seq={gap.from_seq}i,to_seq={gap.to_seq}i,missing={gap.missing}i,"
            f'measurement="{s.measurement}" {gap.ts_ns}\n').encode()
