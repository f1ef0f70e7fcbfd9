"""Per-stream sequence tracking in the ingest: duplicates and gaps.

A sample is identified by (gateway, epoch, stream, seq) (DESIGN.md "Identity"): the
tracking is keyed on (gateway, epoch, stream key), so a stranger's payload or a cloned
gateway (same names, another epoch) never makes real samples look like duplicates. For a
gateway that restarts with its state intact (a new epoch, sequence numbers continuing
upward) the new epoch's ranges start from the previous epoch's high-water mark, so the
samples lost across the restart are still a gap.

Each tracked stream keeps the sorted, merged ranges of sequence numbers this worker wrote, with the
timestamps at their ends. A message entirely inside written ranges is a duplicate (a
broker redelivery or a spool replay): it is acknowledged without a write and not counted
again. A hole between two ranges becomes a *candidate* gap; after a grace period the
ingest checks InfluxDB for the hole's time window (another worker of the shared
subscription may have written those samples) and records what is still missing as a
``medgw_gap`` point. Only the last ``max_spans`` ranges per stream are kept in memory.
At most ``max_tracks`` (gateway, epoch, stream) entries are kept, least recently seen
dropped first, so a flood of made-up epochs cannot grow memory without bound. A worker that
restarts starts with empty ranges: a gap across its own restart is not seen.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.model import SampleBatch, StreamSpec

TrackKey = tuple[str, int, str]  # (gateway, epoch, stream key)


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
    gateway: str = ""
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Gap:
    """A confirmed run of missing sequence numbers; stored just after the sample before it."""

    stream: StreamSpec
    from_seq: int
    to_seq: int
    ts_ns: int
    gateway: str = ""

    @property
    def missing(self) -> int:
        """Return how many sequence numbers are missing."""
        return self.to_seq - self.from_seq + 1


@dataclass
class StreamTrack:
    """The written ranges of one stream."""

    stream: StreamSpec
    gateway: str = ""
    epoch: int = 0
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
                                  after.ts_lo, self.gateway, self.epoch))
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
    """Duplicate and gap bookkeeping for every (gateway, epoch, stream) one worker sees."""

    def __init__(self, max_spans: int = 256, max_tracks: int = 16384) -> None:
        self.max_spans = max_spans
        self.max_tracks = max_tracks
        self.tracks: OrderedDict[TrackKey, StreamTrack] = OrderedDict()
        self._latest: dict[tuple[str, str], int] = {}  # (gateway, stream key) -> epoch

    def observe(self, batch: SampleBatch, gateway: str = "", epoch: int = 0) -> int:
        """Record a batch about to be written; return how many of its samples are new."""
        key = (gateway, epoch, batch.stream.key)
        track = self.tracks.get(key)
        if track is None:
            track = self._new_track(key, batch)
        else:
            self.tracks.move_to_end(key)
        lo, hi = batch.first_seq, batch.last_seq
        new = track.new_samples(lo, hi)
        if new:
            track.add(lo, hi, int(batch.timestamps_ns[0]), int(batch.timestamps_ns[-1]),
                      self.max_spans)
        return new

    def _new_track(self, key: TrackKey, batch: SampleBatch) -> StreamTrack:
        gateway, epoch, stream_key = key
        track = self.tracks[key] = StreamTrack(batch.stream, gateway, epoch)
        previous = self._latest.get((gateway, stream_key))
        self._latest[(gateway, stream_key)] = epoch
        before = self.tracks.get((gateway, previous, stream_key)) if previous is not None \
            else None
        if before is not None and before.spans and before.spans[-1].hi < batch.first_seq:
            last = before.spans[-1]  # the previous epoch's high-water mark
            track.spans.append(Span(last.hi, last.hi, last.ts_hi, last.ts_hi, time.monotonic()))
        while len(self.tracks) > self.max_tracks:
            (old_gw, old_epoch, old_key), _ = self.tracks.popitem(last=False)
            if self._latest.get((old_gw, old_key)) == old_epoch:
                del self._latest[(old_gw, old_key)]
        return track

    def due_holes(self, grace_s: float) -> list[Hole]:
        """Return every stream's holes older than ``grace_s``."""
        now = time.monotonic()
        return [h for track in self.tracks.values() for h in track.due_holes(grace_s, now)]

    def settle(self, hole: Hole, present: set[int]) -> list[Gap]:
        """Close a checked hole: return the runs of it not in ``present`` as gaps."""
        track = self.tracks.get((hole.gateway, hole.epoch, hole.stream.key))
        if track is not None:
            track.fill(hole)
        gaps: list[Gap] = []
        start = hole.lo
        for seq in sorted(s for s in present if hole.lo <= s <= hole.hi):
            if seq > start:
                gaps.append(Gap(hole.stream, start, seq - 1, hole.ts_before + 1 + len(gaps),
                                hole.gateway))
            start = seq + 1
        if start <= hole.hi:
            gaps.append(Gap(hole.stream, start, hole.hi, hole.ts_before + 1 + len(gaps),
                            hole.gateway))
        return gaps
