"""The Spool: add / batch / accept / reject / discard / confirm (see the package docstring)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.edge.spool import records as fmt
from gateway.edge.spool.index import RecordIndex, SpoolRecord, State
from gateway.edge.spool.losses import LossLog
from gateway.edge.spool.recovery import recover
from gateway.edge.spool.segments import SegmentFiles, SpoolError, SpoolWriteError
from gateway.wire.bundle import per_stream

log = logging.getLogger("medgw.spool")

SpoolPolicy = Literal["drop_oldest", "drop_newest", "block"]
DropListener = Callable[[str, int, str], None]
_WRITE_ATTEMPTS = 8  # a failed write frees space and tries again at most this often


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish; report it back with its record id and attempt."""

    record_id: int
    attempt: int
    key: str
    topic: str
    payload: bytes  # as spooled: a replay still needs gateway.wire.payload.as_historical
    n: int
    replay: bool


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot of the spool for /metrics and /health."""

    records: int
    bytes: int
    unconfirmed_samples: int
    dropped_samples: int
    write_errors: int
    degraded: str | None



class Spool:
    """Bounded disk FIFO of MQTT messages: add / batch / accept / reject / confirm."""

    def __init__(self, directory: Path, max_bytes: int, *, segment_bytes: int = 8 << 20,
                 flush_interval_s: float = 1.0, policy: SpoolPolicy = "drop_oldest",
                 replay_window_s: float = 60.0, on_drop: DropListener | None = None,
                 confirm: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4 or 4096))
        self.flush_interval_s = flush_interval_s
        self.policy = policy
        self.replay_window_s = replay_window_s
        self._on_drop = on_drop
        self._confirm = confirm
        self._clock = clock
        self._index = RecordIndex(min(16 << 20, max_bytes))
        self._dropped: dict[str, int] = {}
        self._evicted_unconfirmed: dict[str, int] = {}
        self._losses = LossLog(self.dir, clock)
        self._resent = 0
        self._write_errors = 0
        self._write_problem: str | None = None
        self._flush_problem: str | None = None
        self._last_flush = clock()
        self._dirty = False
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            found = recover(self.dir)
        except OSError as err:
            raise SpoolError(f"cannot use spool directory {self.dir}: {err.strerror}") from err
        self._files = SegmentFiles(self.dir)
        self.report = found.problems  # what recovery cut or skipped, one line each
        self.cut_records = found.cut_records
        self._next_id = found.next_id
        for record in found.records:
            self._index.add(record)
        for segment in found.segments:
            self._files.adopt(segment)
        for segment in found.unneeded:
            self._files.delete(segment)
        self.recovered = len(self._index)

    # -- read-only views -----------------------------------------------------------------
    @property
    def confirming(self) -> bool:
        """True while records wait for an ingest worker's confirmation."""
        return self._confirm

    @property
    def records(self) -> int:
        """Records held (unsent, in flight, or awaiting acknowledgement or confirmation)."""
        return len(self._index)

    @property
    def held_bytes(self) -> int:
        """Bytes held on disk by the retained records."""
        return self._index.bytes

    @property
    def dropped(self) -> dict[str, int]:
        """Samples dropped by the policy (never sent), per stream key."""
        return dict(self._dropped)

    @property
    def evicted_unconfirmed(self) -> dict[str, int]:
        """Samples evicted for room after the broker's ack but before any confirmation."""
        return dict(self._evicted_unconfirmed)

    @property
    def resent(self) -> int:
        """Records sent again because no ingest worker confirmed them in time."""
        return self._resent

    @property
    def degraded(self) -> str | None:
        """Why the spool cannot do its job right now (a failing write or flush), or None."""
        return self._write_problem or self._flush_problem

    def stats(self) -> SpoolStats:
        """Return a snapshot of sizes and counts."""
        return SpoolStats(len(self._index), self._index.bytes, self.unconfirmed_samples(),
                          sum(self._dropped.values()), self._write_errors, self.degraded)

    # -- add -----------------------------------------------------------------------------
    def add(self, key: str, topic: str, payload: bytes, first_seq: int, n: int,
            replay: bool) -> bool:
        """Spool one message; False when refused (full spool or disk under drop_newest/block)."""
        parts = fmt.pack(self._next_id, first_seq, n, replay, key, topic, payload)
        size = sum(len(part) for part in parts)
        if not self._make_room(size):
            if self.policy != "block":
                self._count_drop(key, n, "spool_full_newest")
            return False
        placed = self._write(parts, size, key, n)
        if placed is None:
            return False
        rid = self._next_id
        self._next_id += 1
        self._index.add(SpoolRecord(rid, placed[0], placed[1], size, key, topic, first_seq, n,
                                    replay), payload)
        self._dirty = True
        return True

    def _write(self, parts: tuple[bytes, ...], size: int, key: str,
               n: int) -> tuple[int, int] | None:
        """Write one record; on a write error free disk space by policy and try again."""
        for _ in range(_WRITE_ATTEMPTS):
            try:
                placed = self._files.append(parts, size, self._next_id, self.segment_bytes)
            except SpoolWriteError as err:
                self._write_errors += 1
                if self._write_problem is None:
                    log.error("spool: %s; applying the %s policy", err, self.policy)
                self._write_problem = f"disk full or failing: {err}"
                if not self._free_disk():
                    break
                continue
            if self._write_problem is not None:
                log.info("spool: writing again after %d failed writes", self._write_errors)
                self._write_problem = None
            return placed
        if self.policy != "block":
            self._count_drop(key, n, "disk_full")
        return None

    def _free_disk(self) -> bool:
        """Free a segment file: evict acknowledged records, then (drop_oldest) unsent ones."""
        deleted = self._files.deleted
        self._evict_acked(force_bytes=self.max_bytes + 1)
        if self._files.deleted == deleted and self.policy == "drop_oldest":
            self._drop_oldest_segment()
        return self._files.deleted > deleted

    def _drop_oldest_segment(self) -> None:
        """Drop the records of the oldest segment that holds only unsent ones (counted)."""
        for segment in self._files.segments():
            held = self._index.in_segment(segment)
            if held and all(r.state == State.UNSENT for r in held):
                for record in held:
                    self._drop(record, "disk_full")
                self._files.delete(segment)
                return

    def _make_room(self, size: int) -> bool:
        if size > self.max_bytes:
            return False
        self._evict_acked(force_bytes=size)
        while self._index.bytes + size > self.max_bytes:
            oldest = self._index.oldest_unsent() if self.policy == "drop_oldest" else None
            if oldest is None:
                return False
            self._drop(oldest, "spool_full_oldest")
            self._delete_unused_segments()
        return True

    def _drop(self, record: SpoolRecord, reason: str) -> None:
        self._index.remove(record)
        self._dirty = True
        self._count_drop(record.key, record.n, reason)

    def _count_drop(self, key: str, n: int, reason: str) -> None:
        for stream, count in per_stream(key, n):  # a bundle's record counts per stream
            self._dropped[stream] = self._dropped.get(stream, 0) + count
            self._losses.note("dropped", stream, count, reason)
            if self._on_drop is not None:
                self._on_drop(stream, count, reason)

    def _count_evicted(self, record: SpoolRecord) -> None:
        for stream, count in per_stream(record.key, record.n):
            self._evicted_unconfirmed[stream] = self._evicted_unconfirmed.get(stream, 0) + count
            self._losses.note("evicted (acknowledged by the broker, not confirmed yet)",
                              stream, count, "spool_full_unconfirmed")
            if self._on_drop is not None:
                self._on_drop(stream, count, "spool_full_unconfirmed")

    # -- batch / accept / reject / discard / confirm -------------------------------------
    def batch(self, limit: int) -> list[Outgoing]:
        """Return up to ``limit`` records to send, oldest first; they are in flight now."""
        out: list[Outgoing] = []
        while len(out) < limit:
            record = self._index.next_unsent()
            if record is None:
                break
            message = self._load(record)
            if message is not None:
                out.append(message)
        return out

    def _load(self, record: SpoolRecord) -> Outgoing | None:
        payload = self._index.take_payload(record.record_id)
        if payload is None:
            try:
                data = self._files.read(record.segment, record.offset, record.size)
                _key, _topic, payload = fmt.unpack_body(data)
            except (OSError, ValueError) as err:
                log.error("spool: record %d of %s cannot be read back (%s)", record.record_id,
                          record.key, err)
                self._drop(record, "unreadable")
                return None
        record.state = State.INFLIGHT
        record.attempt += 1
        return Outgoing(record.record_id, record.attempt, record.key, record.topic, payload,
                        record.n, record.replay)

    def accept(self, record_id: int, attempt: int | None = None) -> bool:
        """The broker acknowledged a record (kept until confirmed or past the window).

        False when the answer changes nothing (a stale answer to an earlier send).
        """
        record = self._index.current(record_id, attempt)
        if record is None or record.state != State.INFLIGHT:
            return False
        record.state = State.ACKED
        record.acked_at = self._clock()
        self._dirty = True
        return True

    def reject(self, record_id: int, attempt: int | None = None) -> None:
        """Send a record again (as a replay), in its place in the order."""
        record = self._index.current(record_id, attempt)
        if record is not None and record.state != State.UNSENT:
            self._index.requeue(record)

    def discard(self, record_id: int, reason: str, attempt: int | None = None) -> bool:
        """Give a record up (the broker refused it for good): a counted drop."""
        record = self._index.current(record_id, attempt)
        if record is None:
            return False
        self._drop(record, reason)
        return True

    def confirm(self, key: str, first_seq: int) -> bool:
        """An ingest worker confirmed that InfluxDB holds a record's samples."""
        record = self._index.by_seq(key, first_seq)
        if record is None or record.state == State.CONFIRMED:
            return False
        record.state = State.CONFIRMED
        if record.acked_at is None:
            record.acked_at = self._clock()
        self._dirty = True
        return True

    def require_confirmation(self, on: bool) -> None:
        """Keep records until confirmed (on) or only until acknowledged and the window (off)."""
        self._confirm = on

    def resend_unconfirmed(self, timeout_s: float) -> int:
        """Send again what the broker acknowledged but nobody confirmed for ``timeout_s``."""
        if not self._confirm:
            return 0
        now = self._clock()
        due = [r for r in self._index if r.state == State.ACKED
               and now - (now if r.acked_at is None else r.acked_at) >= timeout_s]
        for record in due:
            self._index.requeue(record)
        if due:
            self._resent += len(due)
            log.warning("%d records acknowledged by the broker but not confirmed by an ingest "
                        "worker within %.0f s: sending them again", len(due), timeout_s)
        return len(due)

    def resend_all(self) -> int:
        """Send every unconfirmed record again (the broker lost its state); return how many."""
        due = [r for r in self._index if r.state != State.CONFIRMED]
        for record in due:
            self._index.requeue(record)
        return len(due)

    def has_unsent(self) -> bool:
        """Return True while some record waits to be handed to MQTT."""
        return self._index.has_unsent()

    def unsent(self) -> int:
        """Return how many records wait to be handed to MQTT."""
        return sum(1 for r in self._index if r.state == State.UNSENT)

    def _done(self, record: SpoolRecord) -> bool:
        if self._confirm:
            return record.state == State.CONFIRMED
        return record.state >= State.ACKED

    def first_unacked(self) -> int:
        """Return the lowest record id still to be delivered (the next id when none)."""
        return next((r.record_id for r in self._index if not self._done(r)), self._next_id)

    def unconfirmed_samples(self) -> int:
        """Return the samples spooled and not yet delivered (confirmed or acknowledged)."""
        return sum(r.n for r in self._index if not self._done(r))

    def _evict_acked(self, force_bytes: int = 0) -> None:
        """Evict delivered records from the head; acknowledged ones too to make room."""
        now = self._clock()
        evicted = False
        while (head := self._index.head()) is not None and head.state >= State.ACKED:
            if self._confirm:
                expired = head.state == State.CONFIRMED
            else:
                acked_at = now if head.acked_at is None else head.acked_at
                expired = now - acked_at >= self.replay_window_s
            if not expired and self._index.bytes + force_bytes <= self.max_bytes:
                break
            self._index.remove(head)
            self._dirty = evicted = True
            if self._confirm and head.state != State.CONFIRMED:
                self._count_evicted(head)
        if evicted:  # not on every add: most adds evict nothing
            self._delete_unused_segments()

    def _delete_unused_segments(self) -> None:
        for segment in self._files.segments():
            if segment != self._files.active and not self._index.holds(segment):
                self._files.delete(segment)

    # -- durability ----------------------------------------------------------------------
    def maybe_flush(self) -> bool:
        """fsync and persist the delivery position if the flush interval passed."""
        if self._clock() - self._last_flush < self.flush_interval_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """fsync the active segment and persist the first undelivered id (errors: degraded)."""
        self._last_flush = self._clock()
        self._losses.summarize()
        self._evict_acked()
        self._delete_unused_segments()
        try:
            self._files.fsync_active()
            if self._dirty:
                fmt.write_state(self.dir, self.first_unacked())
                self._dirty = False
        except OSError as err:
            if self._flush_problem is None:
                log.error("spool: cannot flush %s: %s (retried at the next flush)", self.dir,
                          err.strerror or err)
            self._flush_problem = f"cannot flush: {err.strerror or err}"
            return
        if self._flush_problem is not None:
            log.info("spool: flushing again")
            self._flush_problem = None

    def close(self) -> None:
        """Flush and close every segment file."""
        self.flush()
        self._files.close()
