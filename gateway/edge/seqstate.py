"""Per-stream sequence numbers that survive restarts (``seq.json`` in the spool directory).

The gateway never reuses a sequence number within an epoch. For every stream it persists
a *reservation*: a number above every sequence number handed out so far. While running,
the publisher moves the reservation forward (by ``step``, e.g. two publisher batches)
whenever the ring's write position comes within half a step of it, at every tick and
before every batch it spools (``RingStore.reserve_seq``), so every spooled (or published)
sample's number stays below the reservation; should the publisher thread stall, the
driver's appends move it instead (``SeqRingStore._guard``). After a restart, even after
SIGKILL, a stream resumes at its reservation, so samples lost with the process leave a
visible hole in the sequence numbers, which the ingest records as a gap. The hole may also
hold numbers that were reserved but never used: a restart gap says "at most this many
samples". A clean stop settles the reservations to the write positions (``settle``), so
it leaves no such hole.

Every start of the gateway also draws a new *epoch* (``new_epoch``): the ingest tracks
duplicates per (gateway, epoch, stream), so when ``seq.json`` is lost or corrupt and the
numbers restart at 0, the new samples can never be taken for duplicates of the old ones.
A lost, unreadable or out-of-range ``seq.json`` is never fatal and never silent: a warning
naming the file (and the key), the bad file kept beside it as ``seq.json.corrupt``, a
``medgw_seq_state_resets_total`` count and a ``seq_state`` entry in /health.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from gateway.files import atomic_write
from gateway.metrics import GatewayMetrics
from gateway.model import StreamSpec
from gateway.ring import RingStore, StreamRing

log = logging.getLogger("medgw.seqstate")

SEQ_LIMIT = 2**63  # sequence numbers are int64 on the wire and in InfluxDB


def new_epoch() -> int:
    """Draw this start's epoch: a random 63-bit integer, always > 0 (0 means "no epoch")."""
    return secrets.randbits(63) | 1


class SeqStateError(ValueError):
    """``seq.json`` cannot be used; the message names the file and, where one is, the key."""


def parse_reservations(data: bytes, path: Path, step: int) -> dict[str, int]:
    """Return the reservations in ``data``; SeqStateError says what is wrong and where."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise SeqStateError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise SeqStateError(f"{path}: expected a JSON object of stream key -> next sequence "
                            f"number, found {type(doc).__name__}")
    limit = SEQ_LIMIT - step
    reserved: dict[str, int] = {}
    for key, value in doc.items():
        if not key:
            raise SeqStateError(f"{path}: an empty stream key")
        # bool is an int in Python; 1e30 and 5.0 are floats: none is a sequence number
        if type(value) is not int:
            raise SeqStateError(f"{path}: key {key!r}: {value!r} is not an integer")
        if not 0 <= value < limit:
            raise SeqStateError(f"{path}: key {key!r}: {value} is out of range "
                                f"(0 <= n < 2**63 - {step})")
        reserved[key] = value
    return reserved


class SeqState:
    """Reserved next sequence number per stream key, persisted atomically to a JSON file."""

    def __init__(self, path: Path, step: int = 4096, *, epoch: int = 0,
                 metrics: GatewayMetrics | None = None) -> None:
        self.path = Path(path)
        self.step = max(2, step)
        self.epoch = epoch
        self._metrics = metrics
        self._lock = threading.Lock()
        self.reset_reason: str | None = None  # why the file was not used (lost or corrupt)
        self.write_error: str | None = None  # the last failed save, None once one succeeds
        self.reserved: dict[str, int] = self._load()
        self.restored = dict(self.reserved)

    def _load(self) -> dict[str, int]:
        """Read the file; a lost, unreadable or invalid one is reported and starts empty."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            others = self._spool_files()
            if others:
                self._reset("lost", f"{self.path} is missing although the spool directory "
                            f"holds {', '.join(others[:3])}")
            else:
                log.info("no sequence state at %s yet (a first start): numbers from 0 under "
                         "epoch %d", self.path, self.epoch)
            return {}
        except OSError as err:
            self._reset("unreadable", f"{self.path}: cannot be read ({err.strerror or err})")
            return {}
        try:
            return parse_reservations(data, self.path, self.step)
        except SeqStateError as err:
            self._reset("corrupt", str(err), keep_aside=True)
            return {}

    def _spool_files(self) -> list[str]:
        """Names of other files in the directory (a spool that ran before), sorted."""
        try:
            return sorted(p.name for p in self.path.parent.iterdir()
                          if p.name != self.path.name and not p.name.startswith("."))
        except OSError:
            return []

    def _reset(self, reason: str, detail: str, keep_aside: bool = False) -> None:
        """Log, count and remember that sequence numbers restart at 0 under the new epoch."""
        self.reset_reason = f"{reason}: {detail}"
        aside = ""
        if keep_aside:
            target = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, target)
                aside = f"; the bad file is kept as {target}"
            except OSError as err:
                aside = f"; could not keep the bad file aside ({err.strerror or err})"
        log.warning("sequence state %s (%s): sequence numbers restart at 0 under the new "
                    "epoch %d, which the ingest tracks apart from the previous ones%s",
                    reason, detail, self.epoch, aside)
        if self._metrics is not None:
            self._metrics.seq_state_resets.labels(reason).inc()

    def resume_seq(self, key: str) -> int:
        """Return the first sequence number a stream gets at start (0 for a new stream)."""
        return self.restored.get(key, 0)

    def reserve(self, rings: Iterable[StreamRing]) -> bool:
        """Move reservations ahead of every ring's write position; persist if any moved.

        A failed write (disk full, read-only) is logged and counted, never raised: it must
        not stop the publisher thread that calls this. True if the file was written.
        """
        with self._lock:
            changed = False
            for ring in rings:
                key = ring.stream.key
                if ring.write_seq + self.step // 2 >= self.reserved.get(key, -1):
                    self.reserved[key] = ring.write_seq + self.step
                    changed = True
            return changed and self._save()

    def settle(self, rings: Iterable[StreamRing]) -> bool:
        """Lower fully spooled rings' reservations to their write position (a clean stop).

        Only at a clean stop, after the last sample of each ring went to the spool: the next
        start then resumes right after it, and the unused reserved numbers do not show as a
        gap. True if the file was written.
        """
        with self._lock:
            changed = False
            for ring in rings:
                key = ring.stream.key
                if self.reserved.get(key, -1) > ring.write_seq:
                    self.reserved[key] = ring.write_seq
                    changed = True
            return changed and self._save()

    def _save(self) -> bool:
        try:
            atomic_write(self.path, orjson.dumps(self.reserved))
        except OSError as err:
            first = self.write_error is None
            self.write_error = f"cannot write {self.path}: {err.strerror or err}"
            if first:  # once per failure streak, not once per publisher tick
                log.error("%s; a restart after a crash may then reuse sequence numbers "
                          "(under a new epoch, so nothing is taken for a duplicate)",
                          self.write_error)
            if self._metrics is not None:
                self._metrics.seq_state_write_errors.inc()
            return False
        if self.write_error is not None:
            log.info("sequence state %s written again", self.path)
            self.write_error = None
        return True

    def health(self) -> dict[str, Any]:
        """Return the /health entry: file, epoch, why it was reset, the last write error."""
        return {"path": str(self.path), "epoch": self.epoch, "streams": len(self.reserved),
                "reset": self.reset_reason, "write_error": self.write_error}


class SeqRingStore(RingStore):
    """A RingStore whose new streams resume at their persisted sequence number."""

    def __init__(self, default_capacity: int, seq_state: SeqState,
                 on_add: Callable[[StreamRing], None] | None = None) -> None:
        super().__init__(default_capacity)
        self.seq_state = seq_state
        self._on_add = on_add

    def add_stream(self, stream: StreamSpec, capacity: int | None = None,
                   first_seq: int = 0) -> StreamRing:
        """Register a stream; a stream seen before resumes after its reserved numbers.

        ``on_add`` (given at construction) is called once with each new stream's ring.
        """
        try:
            known: StreamRing | None = self.ring(stream.key)
        except KeyError:
            known = None
        ring = super().add_stream(stream, capacity,
                                  first_seq or self.seq_state.resume_seq(stream.key))
        self.seq_state.reserve([ring])
        if known is None:  # once per stream: add_stream is idempotent for a known one
            ring.add_listener(functools.partial(self._guard, ring))
            if self._on_add is not None:
                self._on_add(ring)
        return ring

    def _guard(self, ring: StreamRing, _stream: StreamSpec) -> None:
        """After an append: move a reservation the publisher has not moved in time.

        The publisher keeps every reservation more than half a step ahead at each tick; if
        its thread stalls while the driver appends a quarter step more, the driver's append
        moves it, so a SIGKILL then never leaves lost numbers above the reservation (the next
        start would reuse them and the gap would say less than was lost). Normally only the
        comparison runs here.
        """
        seq_state = self.seq_state
        if ring.write_seq + seq_state.step // 4 >= seq_state.reserved.get(ring.stream.key, 0):
            seq_state.reserve([ring])

    def reserve_seq(self, rings: Iterable[StreamRing] | None = None) -> None:
        """Persist reservations ahead of ``rings`` (default: every ring) before they are used."""
        self.seq_state.reserve(self.rings() if rings is None else rings)

    def settle_seq(self, rings: Iterable[StreamRing]) -> None:
        """Persist the exact next number of ``rings`` (fully spooled, at a clean stop)."""
        self.seq_state.settle(rings)
