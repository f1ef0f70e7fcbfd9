"""The spool's in-memory index: records in order, their state, and a bounded payload cache."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum


class State(IntEnum):
    """Where a spooled record is on its way to InfluxDB."""

    UNSENT = 0
    INFLIGHT = 1
    ACKED = 2  # by the broker
    CONFIRMED = 3  # by an ingest worker: InfluxDB holds it


@dataclass(slots=True)
class SpoolRecord:
    """Index entry of one spooled MQTT message (the payload stays on disk)."""

    record_id: int
    segment: int
    offset: int
    size: int
    key: str
    topic: str
    first_seq: int
    n: int
    replay: bool
    state: State = State.UNSENT
    attempt: int = 0  # how often it was handed out for sending
    acked_at: float | None = None


class RecordIndex:
    """Records in id order with lookups by id and by (stream key, first seq)."""

    def __init__(self, cache_limit: int) -> None:
        self._records: deque[SpoolRecord] = deque()
        self._by_id: dict[int, SpoolRecord] = {}
        self._by_seq: dict[tuple[str, int], SpoolRecord] = {}
        self._in_segment: dict[int, int] = {}  # segment -> records retained in it
        self._cache: dict[int, bytes] = {}  # payloads not sent yet: no read-back
        self._cache_bytes = 0
        self.cache_limit = cache_limit
        self.bytes = 0
        self._send_pos = 0  # records before this index are not UNSENT

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[SpoolRecord]:
        return iter(self._records)

    def head(self) -> SpoolRecord | None:
        """Return the oldest record, or None."""
        return self._records[0] if self._records else None

    def by_id(self, record_id: int) -> SpoolRecord | None:
        """Return a record by id."""
        return self._by_id.get(record_id)

    def current(self, record_id: int, attempt: int | None) -> SpoolRecord | None:
        """The record, unless confirmed or ``attempt`` names an earlier send of it."""
        record = self._by_id.get(record_id)
        if record is None or record.state == State.CONFIRMED:
            return None
        if attempt is not None and attempt != record.attempt:
            return None
        return record

    def by_seq(self, key: str, first_seq: int) -> SpoolRecord | None:
        """Return the record of a stream starting at ``first_seq``."""
        return self._by_seq.get((key, first_seq))

    def add(self, record: SpoolRecord, payload: bytes | None = None) -> None:
        """Append a record (and keep its payload in memory while the cache has room)."""
        self._records.append(record)
        self._by_id[record.record_id] = record
        self._by_seq[(record.key, record.first_seq)] = record
        self.bytes += record.size
        self._in_segment[record.segment] = self._in_segment.get(record.segment, 0) + 1
        if payload is not None and self._cache_bytes + len(payload) <= self.cache_limit:
            self._cache[record.record_id] = payload
            self._cache_bytes += len(payload)

    def take_payload(self, record_id: int) -> bytes | None:
        """Return and forget a cached payload (None: read it from disk)."""
        payload = self._cache.pop(record_id, None)
        if payload is not None:
            self._cache_bytes -= len(payload)
        return payload

    def remove(self, record: SpoolRecord) -> None:
        """Remove a record from the index."""
        index = self._records.index(record) if self._records[0] is not record else 0
        del self._records[index]
        if index < self._send_pos:
            self._send_pos -= 1
        self.take_payload(record.record_id)
        self._by_id.pop(record.record_id, None)
        if self._by_seq.get((record.key, record.first_seq)) is record:
            del self._by_seq[(record.key, record.first_seq)]
        self.bytes -= record.size
        left = self._in_segment.get(record.segment, 0) - 1
        if left > 0:
            self._in_segment[record.segment] = left
        else:
            self._in_segment.pop(record.segment, None)

    def holds(self, segment: int) -> bool:
        """True while some retained record lives in ``segment``."""
        return bool(self._in_segment.get(segment))

    def in_segment(self, segment: int) -> list[SpoolRecord]:
        """Return the retained records of one segment."""
        return [r for r in self._records if r.segment == segment]

    def next_unsent(self) -> SpoolRecord | None:
        """Return the oldest UNSENT record (moving the send position past it), or None."""
        while self._send_pos < len(self._records):
            record = self._records[self._send_pos]
            self._send_pos += 1
            if record.state == State.UNSENT:
                return record
        return None

    def has_unsent(self) -> bool:
        """Return True while some record is UNSENT (amortized O(1))."""
        records = self._records
        while self._send_pos < len(records):
            if records[self._send_pos].state == State.UNSENT:
                return True
            self._send_pos += 1
        return False

    def oldest_unsent(self) -> SpoolRecord | None:
        """Return the oldest UNSENT record without handing it out."""
        return self._records[self._send_pos] if self.has_unsent() else None

    def requeue(self, record: SpoolRecord) -> None:
        """Make a record UNSENT again, as a replay, in its place in the order."""
        record.state = State.UNSENT
        record.acked_at = None
        record.replay = True
        self._send_pos = 0  # has_unsent() skips forward again, amortized
