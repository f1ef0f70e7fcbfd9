"""Disk spool of the publisher: a bounded, append-only FIFO of MQTT messages in segment files.

Every batch the publisher takes from a ring is appended here *before* it is published
(write-ahead). With ``confirm`` (the default) a record leaves the spool only when an ingest
worker confirmed that InfluxDB holds it (``commit``, end to end); a record the broker
acknowledged but nobody confirmed within ``confirm_timeout_s`` is sent again (the broker
or an ingest worker lost it). Without ``confirm`` a record leaves once the broker
acknowledged it and its replay window (``replay_window_s``) passed. Records are replayed
in order after a reconnect and after a restart, marked ``"historical": true``.

Record layout (little endian)::

    u32 body_len | u32 crc32(body) | u64 record_id | u64 first_seq | u32 n_samples | u8 flags
    body = stream_key NUL topic NUL payload

Segments are ``seg-<first record id>.spool`` files of about ``segment_bytes``. A torn
record at the end of the last segment (crash during a write) fails its CRC and is cut off.
``state.json`` holds the lowest record id not yet confirmed (acknowledged, without
``confirm``); it is replaced atomically at every flush.

Loss window: ``append`` hands the record to the kernel with ``write()`` at once, so a
process killed with SIGKILL loses nothing that reached the spool; only an OS crash or power
loss can lose what was written after the last ``fsync``, i.e. at most
``flush_interval_ms`` of data. The publisher moves samples from the ring into the spool at
least every ``min(publisher.max_latency_ms, spool.flush_interval_ms)`` (plus one publisher
tick of at most 50 ms), which bounds what a SIGKILL of the gateway can lose: the samples
still only in the ring.

Bound: the retained records never exceed ``max_bytes``. When a new record does not fit,
acknowledged records are evicted first; then the policy applies: ``drop_oldest`` evicts
the oldest records not yet handed to MQTT, ``drop_newest`` refuses the new record,
``block`` refuses it and the caller keeps the samples in the ring (which may overrun).
Every dropped sample is counted per stream (``on_drop``) and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from gateway.errors import MedgwError

log = logging.getLogger("medgw.spool")

SpoolPolicy = Literal["drop_oldest", "drop_newest", "block"]
_HEADER = struct.Struct("<IIQQIB")
FLAG_HISTORICAL = 1
_LIVE = b'"historical":false'
_HISTORICAL = b'"historical":true'

DropListener = Callable[[str, int, str], None]


class SpoolError(MedgwError):
    """The spool directory cannot be used (permissions, disk full, foreign files)."""


@dataclass(slots=True)
class SpoolRecord:
    """Index entry of one spooled MQTT message (the payload stays on disk)."""

    record_id: int
    segment: int
    offset: int
    size: int
    key: str
    first_seq: int
    n: int
    flags: int
    topic: str = ""
    sent: bool = False
    acked_at: float | None = None
    committed: bool = False

    @property
    def last_seq(self) -> int:
        """Return the sequence number of the last sample in the record."""
        return self.first_seq + self.n - 1


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """One record read back for publishing."""

    record_id: int
    key: str
    topic: str
    payload: bytes
    n: int


def mark_historical(payload: bytes) -> bytes:
    """Flip the payload's ``"historical"`` flag to true (orjson output: the key occurs once)."""
    return payload.replace(_LIVE, _HISTORICAL, 1)


class Spool:
    """Bounded disk FIFO of MQTT messages with ack tracking and in-order replay."""

    def __init__(self, directory: Path, max_bytes: int, *, segment_bytes: int = 8 << 20,
                 flush_interval_s: float = 1.0, policy: SpoolPolicy = "drop_oldest",
                 replay_window_s: float = 60.0, on_drop: DropListener | None = None,
                 confirm: bool = False) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4 or 4096))
        self.flush_interval_s = flush_interval_s
        self.policy = policy
        self.replay_window_s = replay_window_s
        self.on_drop = on_drop
        self.confirm = confirm
        self.by_seq: dict[tuple[str, int], SpoolRecord] = {}
        self.resent = 0
        # payloads of records not yet sent, kept in memory (bounded) to skip the read-back
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self.cache_limit = min(16 << 20, max_bytes)
        self.records: deque[SpoolRecord] = deque()
        self.by_id: dict[int, SpoolRecord] = {}
        self.bytes = 0
        self.dropped: dict[str, int] = {}  # samples dropped by the policy, never sent
        self.evicted_unconfirmed: dict[str, int] = {}  # sent, acked, maybe not stored
        self.recovered = 0
        self._next_id = 0
        self._send_pos = 0  # index into self.records of the next record to hand to MQTT
        self._fds: dict[int, int] = {}
        self._segment_records: dict[int, int] = {}  # segment -> records retained in it
        self._active: int | None = None
        self._active_size = 0
        self._last_flush = time.monotonic()
        self._dirty = False
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SpoolError(f"cannot create spool directory {self.dir}: {err.strerror}") from err
        self._recover()

    # -- recovery ------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        found = []
        for path in self.dir.glob("seg-*.spool"):
            with contextlib.suppress(ValueError):
                found.append(int(path.stem.split("-", 1)[1]))
        return sorted(found)

    def _seg_path(self, segment: int) -> Path:
        return self.dir / f"seg-{segment:016d}.spool"

    def _read_state(self) -> int:
        try:
            doc = orjson.loads((self.dir / "state.json").read_bytes())
            return int(doc["first_unacked"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _recover(self) -> None:
        """Index every intact record at or after the persisted first unacknowledged id."""
        first_unacked = self._read_state()
        segments = self._segments()
        for number, segment in enumerate(segments):
            path = self._seg_path(segment)
            data = path.read_bytes()
            offset = self._scan(segment, data, first_unacked)
            if offset < len(data):
                log.warning("spool %s: cut a torn record at byte %d (crash during a write)",
                            path, offset)
                with open(path, "r+b") as out:
                    out.truncate(offset)
            if number == len(segments) - 1:
                self._active, self._active_size = segment, offset
        for segment in segments:  # segments holding nothing still needed
            if not self._segment_records.get(segment) and segment != self._active:
                self._seg_path(segment).unlink(missing_ok=True)
        self.recovered = len(self.records)
        if self.records:
            log.info("spool %s: %d records (%d samples, %d bytes) to replay", self.dir,
                     len(self.records), sum(r.n for r in self.records), self.bytes)

    def _scan(self, segment: int, data: bytes, first_unacked: int) -> int:
        offset = 0
        while offset + _HEADER.size <= len(data):
            body_len, crc, rid, first_seq, n, flags = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + body_len
            if end > len(data):
                break
            body = data[offset + _HEADER.size:end]
            if zlib.crc32(body) != crc:
                break
            self._next_id = max(self._next_id, rid + 1)
            if rid >= first_unacked:
                key = body.split(b"\0", 1)[0].decode()
                self._index(SpoolRecord(rid, segment, offset, end - offset, key, first_seq, n,
                                        flags | FLAG_HISTORICAL))
            offset = end
        return offset

    def _index(self, record: SpoolRecord) -> None:
        self.records.append(record)
        self.by_id[record.record_id] = record
        self.by_seq[(record.key, record.first_seq)] = record
        self.bytes += record.size
        self._segment_records[record.segment] = self._segment_records.get(record.segment, 0) + 1

    # -- writing -------------------------------------------------------------------------
    def append(self, key: str, topic: str, payload: bytes, first_seq: int, n: int,
               historical: bool) -> bool:
        """Spool one message; False when it was refused (drop_newest/block on a full spool)."""
        prefix = b"%s\0%s\0" % (key.encode(), topic.encode())
        body_len = len(prefix) + len(payload)
        size = _HEADER.size + body_len
        if not self._make_room(size):
            if self.policy != "block":
                self._count_drop(key, n, "spool_full_newest")
            return False
        flags = FLAG_HISTORICAL if historical else 0
        rid = self._next_id
        self._next_id += 1
        crc = zlib.crc32(payload, zlib.crc32(prefix))
        header = _HEADER.pack(body_len, crc, rid, first_seq, n, flags)
        segment = self._segment_for(size)
        self._write(segment, (header, prefix, payload), size)
        self._index(SpoolRecord(rid, segment, self._active_size, size, key, first_seq, n, flags,
                                topic))
        self._active_size += size
        if self._cache_bytes + len(payload) <= self.cache_limit:
            self._cache[rid] = payload
            self._cache_bytes += len(payload)
        self._dirty = True
        return True

    def _write(self, segment: int, parts: tuple[bytes, ...], size: int) -> None:
        """Write one record with a single writev (no copy of the payload)."""
        try:
            fd = self._fds[segment]
            written = os.writev(fd, parts)
            while written < size:  # short write (disk nearly full): finish it or raise
                written += os.write(fd, b"".join(parts)[written:])
        except OSError as err:
            raise SpoolError(f"cannot write spool segment in {self.dir}: {err.strerror}") from err

    def _segment_for(self, size: int) -> int:
        if self._active is None or self._active_size + size > self.segment_bytes:
            if self._active is not None:
                self._fsync(self._active)
            self._active = self._next_id - 1
            self._active_size = 0
        if self._active not in self._fds:
            path = self._seg_path(self._active)
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
            self._fds[self._active] = os.open(path, flags, 0o640)
            self._active_size = path.stat().st_size
        return self._active

    def _make_room(self, size: int) -> bool:
        if size > self.max_bytes:
            return False
        self._evict_acked(force_bytes=size)
        while self.bytes + size > self.max_bytes:
            if self.policy != "drop_oldest" or not self._drop_oldest_unsent():
                return False
        return True

    def _drop_oldest_unsent(self) -> bool:
        """Evict the oldest record not yet handed to MQTT; False if there is none."""
        for index in range(self._send_pos, len(self.records)):
            record = self.records[index]
            if not record.sent:
                del self.records[index]
                self._forget(record)
                self._count_drop(record.key, record.n, "spool_full_oldest")
                self._delete_unused_segments()
                return True
        return False

    def _count_drop(self, key: str, n: int, reason: str) -> None:
        self.dropped[key] = self.dropped.get(key, 0) + n
        log.warning("spool full (%d bytes): dropped %d samples of %s (%s)", self.max_bytes, n,
                    key, reason)
        if self.on_drop is not None:
            self.on_drop(key, n, reason)

    def _uncache(self, record_id: int) -> bytes | None:
        payload = self._cache.pop(record_id, None)
        if payload is not None:
            self._cache_bytes -= len(payload)
        return payload

    def _forget(self, record: SpoolRecord) -> None:
        self._uncache(record.record_id)
        self.by_id.pop(record.record_id, None)
        if self.by_seq.get((record.key, record.first_seq)) is record:
            del self.by_seq[(record.key, record.first_seq)]
        self.bytes -= record.size
        left = self._segment_records.get(record.segment, 0) - 1
        if left > 0:
            self._segment_records[record.segment] = left
        else:
            self._segment_records.pop(record.segment, None)
        self._dirty = True

    # -- sending and acknowledging -------------------------------------------------------
    def next_unsent(self) -> SpooledMessage | None:
        """Return the oldest record not yet handed to MQTT (and mark it sent), or None."""
        while self._send_pos < len(self.records):
            record = self.records[self._send_pos]
            self._send_pos += 1
            if record.sent or record.committed:
                continue
            record.sent = True
            return self._load(record)
        return None

    def has_unsent(self) -> bool:
        """Return True while some record waits to be handed to MQTT."""
        # records before the send position stay sent (rewinds move it back), so skipping
        # the sent ones here is what next_unsent would do anyway: amortized O(1)
        records = self.records
        while self._send_pos < len(records):
            record = records[self._send_pos]
            if not record.sent and not record.committed:
                return True
            self._send_pos += 1
        return False

    def unsent(self) -> int:
        """Return how many records wait to be handed to MQTT."""
        return sum(1 for i in range(self._send_pos, len(self.records))
                   if not self.records[i].sent and not self.records[i].committed)

    def _load(self, record: SpoolRecord) -> SpooledMessage:
        cached = self._uncache(record.record_id)
        if cached is not None:
            payload, topic = cached, ""
        else:
            fd = self._read_fd(record.segment)
            data = os.pread(fd, record.size, record.offset)
            _key, raw_topic, payload = data[_HEADER.size:].split(b"\0", 2)
            topic = raw_topic.decode()
        if record.flags & FLAG_HISTORICAL:
            payload = mark_historical(payload)
        return SpooledMessage(record.record_id, record.key, topic or record.topic, payload,
                              record.n)

    def _read_fd(self, segment: int) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            fd = self._fds[segment] = os.open(self._seg_path(segment), os.O_RDWR | os.O_APPEND)
        return fd

    def ack(self, record_id: int) -> None:
        """Record the broker's acknowledgement of a record (kept for the replay window)."""
        record = self.by_id.get(record_id)
        if record is not None and record.acked_at is None:
            record.acked_at = time.monotonic()
            self._dirty = True

    def rewind(self, include_acked: bool) -> int:
        """Mark every unacknowledged (and, if asked, every retained acked) record for resend.

        Used when the broker lost its state (restart without our session): messages it had
        acknowledged but not yet delivered to the ingest are gone, so they are sent again,
        marked historical. Returns the number of records to resend.
        """
        count = 0
        for record in self.records:
            if record.committed:
                continue
            if record.acked_at is None or include_acked:
                record.sent = False
                record.flags |= FLAG_HISTORICAL
                count += 1
        self._send_pos = 0
        return count

    def commit(self, key: str, first_seq: int) -> bool:
        """Record an ingest worker's confirmation that InfluxDB holds a record's samples."""
        record = self.by_seq.get((key, first_seq))
        if record is None or record.committed:
            return False
        record.committed = True
        if record.acked_at is None:
            record.acked_at = time.monotonic()
        self._dirty = True
        return True

    def resend_unconfirmed(self, timeout_s: float) -> int:
        """Mark records acknowledged but unconfirmed for ``timeout_s`` for sending again."""
        if not self.confirm:
            return 0
        now = time.monotonic()
        first: int | None = None
        count = 0
        for index, record in enumerate(self.records):
            if record.committed or record.acked_at is None or now - record.acked_at < timeout_s:
                continue
            record.sent = False
            record.acked_at = None
            record.flags |= FLAG_HISTORICAL
            first = index if first is None else first
            count += 1
        if first is not None:
            self._send_pos = min(self._send_pos, first)
            self.resent += count
            log.warning("%d records acknowledged by the broker but not confirmed by an ingest "
                        "worker within %.0f s: sending them again", count, timeout_s)
        return count

    def _done(self, record: SpoolRecord) -> bool:
        """True when a record needs no further delivery."""
        return record.committed if self.confirm else record.acked_at is not None

    def first_unacked(self) -> int:
        """Return the lowest record id not yet confirmed/acknowledged (next id when none)."""
        for record in self.records:
            if not self._done(record):
                return record.record_id
        return self._next_id

    def unacked_samples(self) -> int:
        """Return the samples spooled but not acknowledged by the broker."""
        return sum(r.n for r in self.records if not self._done(r))

    def _evict_acked(self, force_bytes: int = 0) -> None:
        """Drop acknowledged records from the head: past their window, or to make room."""
        now = time.monotonic()
        evicted = False
        while self.records:
            head = self.records[0]
            if head.acked_at is None:
                break
            if self.confirm:
                expired = head.committed
            else:
                expired = now - head.acked_at >= self.replay_window_s
            if not expired and self.bytes + force_bytes <= self.max_bytes:
                break
            self.records.popleft()
            self._send_pos = max(0, self._send_pos - 1)
            self._forget(head)
            evicted = True
            if self.confirm and not head.committed:  # acknowledged, never confirmed
                self.evicted_unconfirmed[head.key] = (
                    self.evicted_unconfirmed.get(head.key, 0) + head.n)
                log.warning("spool full: evicted %d samples of %s the broker acknowledged but "
                            "no ingest worker confirmed yet", head.n, head.key)
                if self.on_drop is not None:
                    self.on_drop(head.key, head.n, "spool_full_unconfirmed")
        if evicted:  # not on every append: most appends evict nothing
            self._delete_unused_segments()

    def _delete_unused_segments(self) -> None:
        for segment in list(self._fds):
            if segment != self._active and not self._segment_records.get(segment):
                os.close(self._fds.pop(segment))
                self._seg_path(segment).unlink(missing_ok=True)

    # -- durability ----------------------------------------------------------------------
    def maybe_flush(self) -> bool:
        """fsync and persist the ack position if the flush interval passed; True if done."""
        if time.monotonic() - self._last_flush < self.flush_interval_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """fsync the active segment and atomically persist the first unacknowledged id."""
        self._last_flush = time.monotonic()
        self._evict_acked()
        self._delete_unused_segments()
        if self._active is not None and self._active in self._fds:
            self._fsync(self._active)
        if not self._dirty:
            return
        state = self.dir / "state.json"
        tmp = state.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(orjson.dumps({"first_unacked": self.first_unacked()}))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, state)
        self._dirty = False

    def _fsync(self, segment: int) -> None:
        fd = self._fds.get(segment)
        if fd is not None:
            os.fsync(fd)

    def close(self) -> None:
        """Flush and close every segment file."""
        self.flush()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
