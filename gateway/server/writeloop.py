"""The ingest's state machine, without a broker: decode -> prepare -> batch -> write ->
ack in arrival order -> commit.

``receive()`` runs in the transport's thread (paho's): it decodes and encodes to line
protocol (stateless CPU work that overlaps the writer's wait on InfluxDB) and queues the
message in the byte-bounded Inbox. A bundle (several streams of one device, see
gateway/wire/bundle.py) is decoded part by part: a bad part is quarantined alone. ``run()``
is the writer thread: it takes what is queued, up to the line budget, and writes as soon as
the inbox is empty (``flush_s`` > 0: waits up to that long to fill the budget; under load
messages pile up during a write, so batches grow by themselves). It skips duplicates
(SeqTracker, keyed on gateway, epoch and stream), quarantines what cannot be stored, writes
one body, retries transient errors with the shared Backoff (honouring Retry-After), splits
to isolate a refused message, then acknowledges every message of the batch in arrival
order and confirms the data messages (composite key for a bundle) to their gateways. A
message received on an earlier connection is written but not acknowledged.

Between threads: messages cross in the Inbox (one lock, two conditions). Everything else is
written by one thread only and read by others as a single reference or int (``generation``
by the transport thread; ``stats``, ``store_error`` and the tracker by the writer; /health
reads copies), so no reader ever sees a half-made value.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gateway.backoff import Backoff
from gateway.errors import MedgwError, StoreError
from gateway.server.deadletter import DeadLetters
from gateway.server.decoding import Pending, decode_message
from gateway.server.gapcheck import GapChecker
from gateway.server.inbox import Inbox
from gateway.server.influx import InfluxWriter
from gateway.server.seqtrack import SeqTracker
from gateway.wire.topics import commit_topic

log = logging.getLogger("medgw.ingest")

MAX_STATUS_BYTES = 64 * 1024  # a gateway's birth/death message is a few hundred bytes
IDLE_WAIT_S = 0.5  # how long an idle writer waits for a message before its gap check


class Transport(Protocol):
    """What the ingest needs of its broker connection (paho's Client fits)."""

    def ack(self, mid: int, qos: int) -> object:
        """Acknowledge (PUBACK) one received message."""
        ...

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> object:
        """Send one message."""
        ...


@dataclass
class IngestStats:
    """What one ingest worker did; read by the CLI, /health and the tests."""

    messages: int = 0
    samples: int = 0
    lines: int = 0
    writes: int = 0
    retries: int = 0
    malformed: int = 0
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    status_messages: int = 0
    stale_acks: int = 0  # written, not acknowledged: received on an earlier connection
    gateways: dict[str, str] = field(default_factory=dict)
    by_stream: dict[str, int] = field(default_factory=dict)


@dataclass
class LoopSettings:
    """The knobs of the write loop (from the ingest and influxdb config sections)."""

    prefix: str = "medgw/v1"
    batch_lines: int = 5000
    flush_s: float = 0.0  # 0: write as soon as nothing more is queued
    commit_every_s: float = 0.1  # confirmations go out at most this often
    max_pending_bytes: int = 64 * 1024 * 1024


class WriteLoop:
    """The ingest worker's state, driven by ``receive`` (transport thread) and ``run``."""

    def __init__(self, settings: LoopSettings, writer: InfluxWriter, transport: Transport,
                 dead_letters: DeadLetters, gap_checker: GapChecker | None = None,
                 tracker: SeqTracker | None = None,
                 create_database: Callable[[], bool] | None = None,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.transport = transport
        self.dead_letters = dead_letters
        self.tracker = tracker or (gap_checker.tracker if gap_checker else SeqTracker())
        self.gap_checker = gap_checker
        self.create_database = create_database or (lambda: False)
        self.stats = IngestStats()
        self.inbox: Inbox[Pending] = Inbox(settings.max_pending_bytes)
        self.generation = 0  # bumped by the transport on every (re)connection
        self.store_error: str | None = None  # the last write failure, None once one succeeds
        self.stop_event = threading.Event()
        self._backoff = backoff or Backoff(0.2, 10.0)
        self._status_slashes = settings.prefix.count("/") + 3  # {prefix}/{site}/{gw}/status
        self._commits: dict[tuple[str, str], list[tuple[str, int]]] = {}  # not yet sent
        self._last_commit = -math.inf  # monotonic time of the last send

    def is_status(self, topic: str) -> bool:
        """True for a gateway's status topic (not a device's bundle named ``status``)."""
        return topic.endswith("/status") and topic.count("/") == self._status_slashes

    # -- transport thread ------------------------------------------------------------------
    def receive(self, mid: int, qos: int, topic: str, payload: bytes) -> bool:
        """Decode one message and queue it (waits for room); never raises.

        Only the head of the payload is kept past the decode (a dead letter carries no
        more), so a large message costs its lines and arrays, a large malformed one nothing.
        """
        item = Pending(mid, qos, topic, payload, self.generation, len(payload))
        status = self.is_status(topic)
        if not status:
            decode_message(item, self.settings.prefix)
        elif len(payload) > MAX_STATUS_BYTES:
            item.error = f"status message of {len(payload)} bytes is not a medgw status"
        keep = self.dead_letters.max_payload_bytes
        if item.error is not None or item.part_errors or (len(payload) > keep and not status):
            item.payload = payload[:keep]
        item.size = len(item.payload) + len(item.lines) + 256 + sum(map(len, item.part_errors))
        for batch in item.batches:
            item.size += batch.values.nbytes + 17 * len(batch)
        return self.inbox.put(item, item.size)

    # -- writer thread ---------------------------------------------------------------------
    def run(self) -> None:
        """Write until stopped and drained (the writer thread's body)."""
        while not self.stop_event.is_set() or len(self.inbox):
            batch = self.collect()
            if batch:
                self.process(batch)
            self.send_commits()
            if self.gap_checker is not None:
                self.gap_checker.check()
                self.stats.gaps, self.stats.missing = self.gap_checker.gaps, \
                    self.gap_checker.missing
        self.send_commits(force=True)

    def collect(self) -> list[Pending]:
        """Gather what is queued, up to the line budget; wait only for the first message.

        With ``flush_s`` 0 the batch is written as soon as the inbox is empty: an idle
        worker writes each message at once, a busy one finds the messages that arrived
        during its last write. With ``flush_s`` > 0 it waits up to that long to fill the
        budget.
        """
        wait = self.settings.flush_s or IDLE_WAIT_S
        if self.gap_checker is not None:
            wait = min(wait, self.gap_checker.interval_s)
        if self._commits:  # wake up in time to send them
            wait = min(wait, max(0.0, self._last_commit + self.settings.commit_every_s
                                 - time.monotonic()))
        first = self.inbox.get(wait)
        if first is None:
            return []
        batch = [self.prepare(first[0])]
        lines = batch[0].n_lines
        deadline = time.monotonic() + self.settings.flush_s
        while lines < self.settings.batch_lines:
            got = self.inbox.get(max(0.0, deadline - time.monotonic()))
            if got is None:
                break
            batch.append(self.prepare(got[0]))
            lines += batch[-1].n_lines
        return batch

    def prepare(self, item: Pending) -> Pending:
        """Ready one message for the write; one that needs none keeps no lines.

        Every message of a batch is acknowledged after the batch's write, in the order the
        broker sent them (MQTT asks for PUBACKs in order): a duplicate or a status message
        is not acknowledged ahead of earlier messages still waiting for InfluxDB. A bundle
        with at least one new part is written whole: its duplicate parts land on the same
        series and timestamps, overwriting the same values (as a partly duplicate message).
        """
        self.stats.messages += 1
        batches, item.batches = item.batches, ()
        if self.is_status(item.topic):
            self._record_status(item)
        elif not batches:
            self.quarantine(item, item.error or "not decoded")
        else:
            if item.part_errors:  # one dead letter for all (not a bundle's head per part)
                self.quarantine(item, "; ".join(item.part_errors), len(item.part_errors))
            written = []
            for batch in batches:
                new = self.tracker.observe(batch, item.gateway, item.epoch)
                self.stats.duplicates += len(batch) - new
                if new:
                    written.append((batch.stream.key, new))
            if written:
                item.written = tuple(written)
                return item
        item.lines, item.n_lines = b"", 0
        return item

    def _record_status(self, item: Pending) -> None:
        self.stats.status_messages += 1
        if item.error is not None:
            self.quarantine(item, item.error)
            return
        try:
            doc = orjson.loads(item.payload)
            key = f"{str(doc['site'])[:256]}/{str(doc['gateway'])[:256]}"
            self.stats.gateways[key] = str(doc["state"])[:64]
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            if item.payload:  # an empty retained message only clears the topic
                self.quarantine(item, "status message is not a medgw status")

    def quarantine(self, item: Pending, reason: str, count: int = 1) -> None:
        """Count (``count`` bad parts) and dead-letter a message; it is acknowledged with
        its batch."""
        self.stats.malformed += count
        log.warning("quarantined message on %s: %s", item.topic[:200], reason[:500])
        self.dead_letters.send(item.topic, reason, item.payload, item.payload_bytes)

    def process(self, batch: list[Pending]) -> None:
        """Write a batch, then acknowledge and confirm it; release its bytes."""
        try:
            if self.write(batch):
                self.ack(batch)
        finally:
            self.inbox.release(sum(item.size for item in batch))

    def write(self, batch: list[Pending]) -> bool:
        """Write the batch's lines; retry transient errors, split to isolate bad messages.

        Returns False only when stopping before the write succeeded: the messages stay
        unacknowledged and the broker redelivers them.
        """
        n_lines = sum(item.n_lines for item in batch)
        if n_lines == 0:  # duplicates, status or quarantined messages only: ack them
            return True
        return self._write_lines(b"".join(item.lines for item in batch), n_lines, batch)

    def _write_lines(self, body: bytes, n_lines: int, batch: list[Pending]) -> bool:
        while True:
            try:
                self.writer.write(body, n_lines)
            except StoreError as err:
                if err.status == 404 and self.create_database():
                    continue  # the database did not exist yet: created, write again
                if not err.retryable:
                    return self._split_or_quarantine(body, n_lines, batch, err)
                self.store_error = str(err)
                self.stats.retries += 1
                delay = self._backoff.next(retry_after=err.retry_after_s)
                log.warning("InfluxDB write failed (%s); retrying in %.1f s", err, delay)
                if self.stop_event.wait(delay):
                    return False
                continue
            self._backoff.reset()
            self.store_error = None
            self._count_written(n_lines, batch)
            return True

    def _count_written(self, n_lines: int, batch: list[Pending]) -> None:
        self.stats.writes += 1
        self.stats.lines += n_lines
        by_stream = self.stats.by_stream
        for item in batch:
            for key, n in item.written:
                self.stats.samples += n
                by_stream[key] = by_stream.get(key, 0) + n

    def _split_or_quarantine(self, body: bytes, n_lines: int, batch: list[Pending],
                             err: StoreError) -> bool:
        if len(batch) > 1:
            half = len(batch) // 2
            return self.write(batch[:half]) and self.write(batch[half:])
        if err.status == 413 and n_lines > 1:
            lines = body.splitlines(keepends=True)
            half = len(lines) // 2
            first, second = b"".join(lines[:half]), b"".join(lines[half:])
            only = batch[0]
            written, only.written = only.written, ()  # count the samples once
            ok = self._write_lines(first, half, batch)
            only.written = written
            return ok and self._write_lines(second, n_lines - half, batch)
        self.quarantine(batch[0], f"InfluxDB refused the points (HTTP {err.status}): {err}")
        batch[0].written = ()
        return True

    def ack(self, batch: list[Pending]) -> None:
        """PUBACK every message in arrival order, then confirm data to its gateways."""
        commits = self._commits
        for item in batch:
            if item.qos > 0:
                if item.generation == self.generation:
                    self.transport.ack(item.mid, item.qos)
                else:
                    self.stats.stale_acks += 1
            if item.key:
                commits.setdefault((item.site, item.gateway), []).append(
                    (item.key, item.first_seq))
        self.send_commits()

    def send_commits(self, force: bool = False) -> None:
        """Confirm the written records to their gateways: at once after a quiet spell, else
        at most every ``commit_every_s``, so one write per message (flush_s 0 at a low rate)
        does not also cost one commit message per message."""
        now = time.monotonic()
        if not self._commits or (not force and
                                 now - self._last_commit < self.settings.commit_every_s):
            return
        commits, self._commits, self._last_commit = self._commits, {}, now
        for (site, gateway), done in commits.items():
            try:
                self.transport.publish(commit_topic(self.settings.prefix, site, gateway),
                                       orjson.dumps({"c": done}), qos=1)
            except (MedgwError, ValueError, RuntimeError, OSError) as err:
                log.error("cannot confirm %d records to %s/%s: %s", len(done), site, gateway,
                          err)

    def stop(self) -> None:
        """Ask the writer to drain what is queued and return."""
        self.stop_event.set()
        self.inbox.close()
