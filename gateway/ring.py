"""Preallocated numpy ring buffers, one per stream, with independent reader cursors.

Positions are sequence numbers: sample ``seq`` lives at slot ``seq % capacity``. A reader
keeps the next sequence number it wants per stream; when the writer has lapped it, the
read says exactly how many samples were overwritten before the reader saw them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.model import (
    Quality,
    QualityArray,
    SampleBatch,
    StreamSpec,
    TimestampArray,
    ValueArray,
)

AppendListener = Callable[[StreamSpec], None]


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one cursor read returned: the samples, how many were lost before them, next cursor."""

    batch: SampleBatch | None
    lost: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class Decimated:
    """Min/max/mean per time window over good-quality samples; arrays are (windows, width)."""

    window_start_ns: TimestampArray
    count: npt.NDArray[np.int64]
    minimum: ValueArray
    maximum: ValueArray
    mean: ValueArray


class StreamRing:
    """A fixed-capacity ring for one stream. Appends copy whole batches, never allocate."""

    def __init__(self, stream: StreamSpec, capacity: int, first_seq: int = 0) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be >= 1")
        self.stream = stream
        self.capacity = capacity
        self._ts = np.zeros(capacity, dtype=np.int64)
        self._rx = np.zeros(capacity, dtype=np.int64)
        self._values = np.zeros((capacity, stream.width), dtype=np.float64)
        self._quality = np.zeros(capacity, dtype=np.uint8)
        self._text: npt.NDArray[np.object_] | None = (
            np.full(capacity, "", dtype=object) if stream.is_event else None
        )
        self._start_seq = first_seq  # first sequence number this ring ever held
        self._write_seq = first_seq  # next sequence number to be written
        self._lock = threading.Lock()
        self._listeners: list[AppendListener] = []

    @property
    def write_seq(self) -> int:
        """Return the sequence number the next appended sample will get."""
        return self._write_seq

    @property
    def start_seq(self) -> int:
        """Return the first sequence number this ring ever held (its origin)."""
        return self._start_seq

    @property
    def oldest_seq(self) -> int:
        """Return the sequence number of the oldest sample still held."""
        return max(self._start_seq, self._write_seq - self.capacity)

    def __len__(self) -> int:
        return self._write_seq - self.oldest_seq

    def add_listener(self, listener: AppendListener) -> None:
        """Call ``listener(stream)`` after every append (keep it cheap: it runs inline)."""
        self._listeners.append(listener)

    def append(
        self,
        timestamps_ns: TimestampArray,
        values: ValueArray,
        quality: QualityArray,
        text: tuple[str, ...] | list[str] | None = None,
        receive_ns: TimestampArray | None = None,
    ) -> int:
        """Append a batch with vectorized copies; return the sequence number of its first sample."""
        n = timestamps_ns.shape[0]
        if values.shape != (n, self.stream.width) or quality.shape != (n,):
            raise ValueError(
                f"{self.stream.key}: batch shapes {values.shape}/{quality.shape}"
                f" do not match {n} samples of width {self.stream.width}"
            )
        with self._lock:
            first = self._write_seq
            skip = max(0, n - self.capacity)  # only the newest `capacity` samples can be kept
            self._copy_in(first + skip, skip, n, timestamps_ns, values, quality, text, receive_ns)
            self._write_seq = first + n
        for listener in self._listeners:
            listener(self.stream)
        return first

    def append_one(self, timestamp_ns: int, values: ValueArray, quality: int = Quality.GOOD,
                   text: str | None = None, receive_ns: int = 0) -> int:
        """Append a single sample (the per-message path of drivers); return its sequence number."""
        with self._lock:
            seq = self._write_seq
            slot = seq % self.capacity
            self._ts[slot] = timestamp_ns
            self._rx[slot] = receive_ns
            self._values[slot] = values
            self._quality[slot] = quality
            if self._text is not None:
                self._text[slot] = text or ""
            self._write_seq = seq + 1
        for listener in self._listeners:
            listener(self.stream)
        return seq

    def _copy_in(
        self,
        seq: int,
        lo: int,
        hi: int,
        ts: TimestampArray,
        values: ValueArray,
        quality: QualityArray,
        text: tuple[str, ...] | list[str] | None,
        receive_ns: TimestampArray | None,
    ) -> None:
        for dst, src_lo, src_hi in self._spans(seq, lo, hi):
            self._ts[dst] = ts[src_lo:src_hi]
            self._values[dst] = values[src_lo:src_hi]
            self._quality[dst] = quality[src_lo:src_hi]
            if receive_ns is not None:
                self._rx[dst] = receive_ns[src_lo:src_hi]
            else:
                self._rx[dst] = 0
            if self._text is not None:
                self._text[dst] = "" if text is None else list(text[src_lo:src_hi])

    def _spans(self, seq: int, lo: int, hi: int) -> Iterator[tuple[slice, int, int]]:
        """Yield (ring slice, source start, source stop) covering source rows lo:hi at seq."""
        slot = seq % self.capacity
        first_len = min(hi - lo, self.capacity - slot)
        yield slice(slot, slot + first_len), lo, lo + first_len
        if lo + first_len < hi:
            yield slice(0, hi - lo - first_len), lo + first_len, hi

    def read(self, from_seq: int, max_samples: int | None = None) -> ReadResult:
        """Copy out samples from ``from_seq`` on; report how many were lost to overwrite."""
        with self._lock:
            oldest = self.oldest_seq
            lost = max(0, oldest - from_seq)
            start = max(from_seq, oldest)
            stop = self._write_seq
            if max_samples is not None:
                stop = min(stop, start + max_samples)
            if stop <= start:
                return ReadResult(None, lost, start)
            batch = self._copy_out(start, stop)
        return ReadResult(batch, lost, stop)

    def _copy_out(self, start: int, stop: int) -> SampleBatch:
        n = stop - start
        slot = start % self.capacity
        if slot + n <= self.capacity:  # one span (the usual case): copy the slices
            end = slot + n
            return SampleBatch(
                self.stream, self._ts[slot:end].copy(), self._values[slot:end].copy(),
                self._quality[slot:end].copy(), start,
                text=None if self._text is None else tuple(self._text[slot:end].tolist()),
                receive_ns=self._rx[slot:end].copy(),
            )
        ts = np.empty(n, dtype=np.int64)
        rx = np.empty(n, dtype=np.int64)
        values = np.empty((n, self.stream.width), dtype=np.float64)
        quality = np.empty(n, dtype=np.uint8)
        text: list[str] | None = [] if self._text is not None else None
        for src, dst_lo, dst_hi in self._spans(start, 0, n):
            ts[dst_lo:dst_hi] = self._ts[src]
            rx[dst_lo:dst_hi] = self._rx[src]
            values[dst_lo:dst_hi] = self._values[src]
            quality[dst_lo:dst_hi] = self._quality[src]
            if text is not None and self._text is not None:
                text.extend(self._text[src].tolist())
        return SampleBatch(
            self.stream, ts, values, quality, start,
            text=None if text is None else tuple(text),
            receive_ns=rx,
        )

    def snapshot(self) -> SampleBatch | None:
        """Copy out every sample still held, oldest first."""
        return self.read(self.oldest_seq).batch

    def last(self, seconds: float) -> SampleBatch | None:
        """Return the held samples whose timestamp is within ``seconds`` of the newest one."""
        batch = self.snapshot()
        if batch is None:
            return None
        cutoff = int(batch.timestamps_ns.max()) - int(seconds * 1e9)
        keep = np.flatnonzero(batch.timestamps_ns >= cutoff)
        start = int(keep[0]) if keep.size else len(batch)
        return batch.slice(start, len(batch))

    def decimate(self, window_ns: int, seconds: float | None = None) -> Decimated:
        """Reduce held samples (optionally only the last ``seconds``) to min/max/mean windows."""
        if window_ns <= 0:
            raise ValueError("window_ns must be > 0")
        batch = self.snapshot() if seconds is None else self.last(seconds)
        return decimate(batch, window_ns, self.stream.width)


def decimate(batch: SampleBatch | None, window_ns: int, width: int) -> Decimated:
    """Min/max/mean per ``window_ns``-aligned window over the GOOD/UNCERTAIN samples of a batch."""
    if batch is None or len(batch) == 0:
        return _empty_decimated(width)
    good = batch.quality <= Quality.UNCERTAIN
    ts = batch.timestamps_ns[good]
    values = batch.values[good]
    if ts.size == 0:
        return _empty_decimated(width)
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    window = ts // window_ns
    starts = np.concatenate(([0], np.flatnonzero(np.diff(window)) + 1))
    counts = np.diff(np.concatenate((starts, [ts.size]))).astype(np.int64)
    sums = np.add.reduceat(values, starts, axis=0)
    return Decimated(
        window_start_ns=(window[starts] * window_ns).astype(np.int64),
        count=counts,
        minimum=np.minimum.reduceat(values, starts, axis=0),
        maximum=np.maximum.reduceat(values, starts, axis=0),
        mean=sums / counts[:, None],
    )


def _empty_decimated(width: int) -> Decimated:
    empty = np.empty((0, width), dtype=np.float64)
    return Decimated(np.empty(0, np.int64), np.empty(0, np.int64), empty, empty, empty)


class RingStore:
    """All stream rings of one gateway, keyed by ``StreamSpec.key``."""

    def __init__(self, default_capacity: int = 16384) -> None:
        self.default_capacity = default_capacity
        self._rings: dict[str, StreamRing] = {}
        self._lock = threading.Lock()
        self._listeners: list[tuple[AppendListener, bool]] = []  # (listener, events only)

    def add_stream(self, stream: StreamSpec, capacity: int | None = None,
                   first_seq: int = 0) -> StreamRing:
        """Register a stream (idempotent for an identical spec) and return its ring."""
        with self._lock:
            ring = self._rings.get(stream.key)
            if ring is not None:
                if ring.stream != stream:
                    raise ValueError(f"stream {stream.key} already registered with another shape")
                return ring
            ring = StreamRing(stream, capacity or self.default_capacity, first_seq)
            for listener, events_only in self._listeners:
                if stream.is_event or not events_only:
                    ring.add_listener(listener)
            self._rings[stream.key] = ring
            return ring

    def ring(self, key: str) -> StreamRing:
        """Return the ring of stream ``key``; KeyError names the stream if unknown."""
        try:
            return self._rings[key]
        except KeyError:
            raise KeyError(f"unknown stream {key!r}") from None

    def rings(self) -> list[StreamRing]:
        """Return every ring, in registration order."""
        with self._lock:
            return list(self._rings.values())

    def add_listener(self, listener: AppendListener, events_only: bool = False) -> None:
        """Call ``listener(stream)`` after every append on every ring, present and future.

        With ``events_only`` only event streams' rings call it (sampled appends stay free).
        """
        with self._lock:
            self._listeners.append((listener, events_only))
            for ring in self._rings.values():
                if ring.stream.is_event or not events_only:
                    ring.add_listener(listener)

    def reserve_seq(self, rings: Iterable[StreamRing] | None = None) -> None:
        """Persist sequence reservations ahead of ``rings`` (all by default) before use.

        The publisher calls this at every tick and before it spools a batch; a store that
        does not persist sequence numbers (this one) does nothing. See gateway.edge.seqstate.
        """
        return None

    def settle_seq(self, rings: Iterable[StreamRing]) -> None:
        """Persist that ``rings`` used every number below their write position, and no more.

        The publisher calls this at a clean stop once those rings are fully spooled, so the
        next start resumes right after their last sample instead of after the reservation
        (unused reserved numbers would show as a false gap). This store does nothing.
        """
        return None

    def reader(self, name: str, from_start: bool = True) -> RingReader:
        """Create a reader with its own cursors (from each ring's first sample, or from now)."""
        return RingReader(name, self, from_start)


class RingReader:
    """An independent cursor over every ring of a store; counts what it lost per stream."""

    def __init__(self, name: str, store: RingStore, from_start: bool = True) -> None:
        self.name = name
        self._store = store
        self._from_start = from_start
        self.cursors: dict[str, int] = {}
        self.lost: dict[str, int] = {}

    def _cursor(self, ring: StreamRing) -> int:
        key = ring.stream.key
        if key not in self.cursors:
            # from_start: from the ring's origin, so samples lost before the first read count
            self.cursors[key] = ring.start_seq if self._from_start else ring.write_seq
            self.lost[key] = 0
        return self.cursors[key]

    def read(self, ring: StreamRing, max_samples: int | None = None) -> ReadResult:
        """Read the next samples of one ring and advance this reader's cursor past them."""
        result = ring.read(self._cursor(ring), max_samples)
        self.cursors[ring.stream.key] = result.next_seq
        self.lost[ring.stream.key] += result.lost
        return result

    def pending(self, ring: StreamRing) -> int:
        """Return how many samples of ``ring`` this reader has not read yet."""
        return ring.write_seq - max(self._cursor(ring), ring.oldest_seq)

    def seek(self, key: str, seq: int) -> None:
        """Move this reader's cursor of stream ``key`` to ``seq`` (used after a restart)."""
        self.cursors[key] = seq
        self.lost.setdefault(key, 0)
