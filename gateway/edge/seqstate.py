"""Per-stream sequence numbers that survive restarts (``seq.json`` in the spool directory).

The gateway never reuses a sequence number. For every stream it persists a *reservation*:
a number above every sequence number handed out so far. While running, the publisher
moves the reservation forward (by ``step``, e.g. two publisher batches) whenever the ring's
write position comes within half a step of it, at every tick and before every batch it
spools, so every spooled (or published) sample's number stays below the reservation.
After a restart, even after SIGKILL, a stream resumes at its reservation, so samples lost
with the process leave a visible hole in the sequence numbers, which the ingest records
as a gap. The hole may also hold numbers that were reserved but
never used: a restart gap says "at most this many samples".
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson

from gateway.model import StreamSpec
from gateway.ring import RingStore, StreamRing


class SeqState:
    """Reserved next sequence number per stream key, persisted atomically to a JSON file."""

    def __init__(self, path: Path, step: int = 4096) -> None:
        self.path = Path(path)
        self.step = max(2, step)
        self._lock = threading.Lock()
        self.reserved: dict[str, int] = {}
        try:
            doc = orjson.loads(self.path.read_bytes())
            self.reserved = {str(k): int(v) for k, v in doc.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.reserved = {}
        self.restored = dict(self.reserved)

    def resume_seq(self, key: str) -> int:
        """Return the first sequence number a stream gets at start (0 for a new stream)."""
        return self.restored.get(key, 0)

    def reserve(self, rings: list[StreamRing]) -> bool:
        """Move reservations ahead of every ring's write position; persist if any moved."""
        changed = False
        with self._lock:
            for ring in rings:
                key = ring.stream.key
                current = self.reserved.get(key, -1)
                if ring.write_seq + self.step // 2 >= current:
                    self.reserved[key] = ring.write_seq + self.step
                    changed = True
            if changed:
                self._save()
        return changed

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(orjson.dumps(self.reserved))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class SeqRingStore(RingStore):
    """A RingStore whose new streams resume at their persisted sequence number."""

    def __init__(self, default_capacity: int, seq_state: SeqState) -> None:
        super().__init__(default_capacity)
        self.seq_state = seq_state

    def add_stream(self, stream: StreamSpec, capacity: int | None = None,
                   first_seq: int = 0) -> StreamRing:
        """Register a stream; a stream seen before resumes after its reserved numbers."""
        ring = super().add_stream(stream, capacity,
                                  first_seq or self.seq_state.resume_seq(stream.key))
        self.seq_state.reserve([ring])
        return ring
