"""The MqttPublisher: rings -> disk spool -> MQTT (QoS 1), in one thread that never dies quietly.

See the package docstring for batching, confirmation and the loss window. This thread alone
touches the spool; the transport's thread reports through the BrokerLink (link.py).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from gateway import __version__
from gateway.backoff import Backoff
from gateway.config import LoadedConfig
from gateway.edge.publisher.bundling import Bundle, Part, Record, by_device
from gateway.edge.publisher.link import BrokerLink, InFlight, Taken
from gateway.edge.publisher.views import PublisherHealth, StreamCounters, resolve_spool_dir
from gateway.edge.spool import Outgoing, Spool
from gateway.errors import BrokerError
from gateway.metrics import GatewayMetrics
from gateway.model import StreamSpec
from gateway.ring import RingReader, RingStore, StreamRing
from gateway.wire.bundle import as_historical, per_stream
from gateway.wire.payload import ENCODERS
from gateway.wire.topics import commit_topic, ingest_status_topic, status_topic
from gateway.wire.transport import PahoTransport, Transport, TransportError

log = logging.getLogger("medgw.publisher")
Clock = Callable[[], float]


class MqttPublisher:
    """Publishes every ring's new samples to MQTT through the disk spool; ``start()``/``stop()``."""

    def __init__(self, loaded: LoadedConfig, store: RingStore, metrics: GatewayMetrics,
                 spool_dir: Path | None = None, temporary_spool: bool = False, *,
                 epoch: int = 0, transport: Transport | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.config = cfg = loaded.config
        self.store = store
        self.metrics = metrics
        self.epoch = epoch
        self.reader: RingReader = store.reader("publisher")
        self.counters: dict[str, StreamCounters] = {}
        self.historical = False  # mark every batch historical (replay of recorded data)
        self._clock = clock
        self._encode = ENCODERS[cfg.publisher.encoding]
        self._wake = threading.Event()
        self._scan = threading.Event()  # an event was appended: look at every ring now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(0.05, 5.0)
        self._health_lock = threading.Lock()  # the loop's failure state, read by /health
        self._failing = 0  # loop failures in a row
        self._loop_errors = 0
        self._loop_error: str | None = None
        self._hold_until: float | None = None
        self._reported_write_errors = 0
        self._temp_spool = temporary_spool  # delete the directory at stop
        if spool_dir is None:
            spool_dir, self._temp_spool = resolve_spool_dir(loaded)
        self.spool = Spool(spool_dir, cfg.spool.max_bytes, segment_bytes=cfg.spool.segment_bytes,
                           flush_interval_s=cfg.spool.flush_interval_ms / 1000.0,
                           policy=cfg.spool.policy, replay_window_s=cfg.spool.replay_window_s,
                           on_drop=self._on_drop, confirm=False, clock=clock)
        if self.spool.cut_records:
            metrics.spool_cut_records.inc(self.spool.cut_records)
        self._stats = self.spool.stats()  # refreshed by the publisher thread only
        self._latency_ms = min(cfg.publisher.max_latency_ms, cfg.spool.flush_interval_ms)
        prefix = cfg.mqtt.topic_prefix
        self.prefix = prefix
        if transport is None:
            client_id = cfg.mqtt.client_id or f"medgw-{cfg.site}-{cfg.gateway}"
            password = loaded.secret(cfg.mqtt.password, "mqtt.password")
            transport = PahoTransport(cfg.mqtt, client_id, password)
        self.transport = transport
        self.link = BrokerLink(
            transport, max_inflight=cfg.mqtt.max_inflight,
            commit_topic=commit_topic(prefix, cfg.site, cfg.gateway),
            ingest_filter=ingest_status_topic(prefix, "+"),
            status_topic=status_topic(prefix, cfg.site, cfg.gateway), status=self._status,
            wake=self._wake.set, on_malformed=self._on_malformed,
            count_error=lambda where: metrics.publisher_errors.labels(where).inc())
        transport.bind(self.link)
        transport.set_will(self.link.status_topic, self._status("offline"))
        store.add_listener(self._on_append, events_only=True)

    # -- read-only views -----------------------------------------------------------------
    @property
    def connected(self) -> threading.Event:
        """Set while the broker connection is up."""
        return self.link.connected

    @property
    def last_error(self) -> str | None:
        """The publisher loop's failure while it lasts, else the latest broker problem."""
        with self._health_lock:
            failing, error = self._failing, self._loop_error
        return error if failing else self.link.last_error

    @property
    def broker_state_losses(self) -> int:
        """How often the broker came back without our session."""
        return self.link.broker_state_losses

    @property
    def ingest_workers(self) -> dict[str, str]:
        """The ingest workers that announced themselves, and their state."""
        return self.link.workers()

    def inflight(self) -> int:
        """Return the number of publishes not yet acknowledged by the broker."""
        return self.link.inflight()

    def health(self) -> PublisherHealth:
        """Return a snapshot for /health (safe from any thread)."""
        thread = self._thread
        stats = self._stats  # the spool itself belongs to the publisher thread
        with self._health_lock:
            failing, loop_errors = self._failing, self._loop_errors
        return PublisherHealth(
            thread_alive=thread is not None and thread.is_alive() and not failing,
            broker_connected=self.connected.is_set(), last_error=self.last_error,
            spool_degraded=self.spool.degraded, inflight=self.inflight(),
            loop_errors=loop_errors, callback_errors=self.link.callback_errors,
            spool_records=stats.records, spool_unconfirmed_samples=stats.unconfirmed_samples,
            samples_dropped=stats.dropped_samples, epoch=self.epoch,
            spool_report=tuple(self.spool.report))

    # -- callbacks from other threads ----------------------------------------------------
    def _status(self, state: str) -> bytes:
        return orjson.dumps({"v": 1, "site": self.config.site, "gateway": self.config.gateway,
                             "state": state, "ts": time.time_ns(), "version": __version__})

    def _on_append(self, stream: StreamSpec) -> None:
        self._scan.set()  # an event: the priority lane publishes it at once
        self._wake.set()

    def _on_drop(self, key: str, n: int, reason: str) -> None:
        self.metrics.dropped.labels(key, reason).inc(n)  # per stream (the spool splits)

    def _on_malformed(self, topic: str) -> None:
        self.metrics.malformed.labels("broker", "control_message").inc()

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background, retrying) and start the publishing thread."""
        self.transport.start()
        self._thread = threading.Thread(target=self._run, name="medgw-publisher", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> None:
        """Block until the broker accepted the connection; BrokerError explains a refusal."""
        if not self.connected.wait(timeout):
            mqtt = self.config.mqtt
            raise BrokerError(f"cannot connect to MQTT broker {mqtt.host}:{mqtt.port} within "
                              f"{timeout:.0f} s: {self.link.last_error or 'no answer'}")

    def _run(self) -> None:
        """The thread: the loop, restarted after any unexpected exception (never quietly)."""
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as err:
                with self._health_lock:
                    self._failing += 1
                    self._loop_errors += 1
                    self._loop_error = f"publisher loop failed: {type(err).__name__}: {err}"
                    failing = self._failing
                self.metrics.publisher_errors.labels("loop").inc()
                log.exception("publisher loop failed (%d in a row); restarting it", failing)
                self._stop.wait(self._backoff.next())

    def _loop(self) -> None:
        tick = min(self._latency_ms / 4000.0, 0.05)
        next_scan = 0.0
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            now = time.monotonic()
            if self._scan.is_set() or now >= next_scan:
                self._scan.clear()
                next_scan = now + tick
                self.flush(force=False)
            else:  # woken by an answer from the broker: publish, skip the ring scan
                self._apply(self.link.take())
                self._pump()
            if self._failing:
                with self._health_lock:
                    failing, self._failing = self._failing, 0
                log.info("publisher loop running again after %d failures", failing)
                self._backoff.reset()

    # -- one step ------------------------------------------------------------------------
    def flush(self, force: bool) -> int:
        """Move what is due (everything when ``force``) into the spool and publish what can be.

        Returns the number of samples spooled. Runs in the publisher thread only.
        """
        self._apply(self.link.take())
        self.store.reserve_seq()
        total = 0
        if self.config.publisher.bundle:
            for rings in by_device(self.store.rings()):
                total += self._spool_device(rings)
                self._pump()
        else:
            for ring in self.store.rings():
                while self._due(ring, force):
                    moved = self._spool_next(ring)
                    if moved <= 0:
                        break
                    total += moved
                    self._pump()  # publish while spooling: the payload is still in the cache
        # Confirmation needs an ingest worker: until one announced itself, the broker's
        # PUBACK is final (after the replay window); resend only while one is online.
        self.spool.require_confirmation(self.config.spool.confirm and self.link.worker_seen())
        if self.spool.maybe_flush():
            self._export_spool_state()
            if self.link.worker_online():
                self.spool.resend_unconfirmed(self.config.spool.confirm_timeout_s)
        self._pump()
        return total

    def _apply(self, taken: Taken) -> None:
        """Apply the broker's answers and the ingest's confirmations to the spool."""
        if taken.session_lost:
            self.spool.resend_all()
            self._hold_until = self._clock() + self.config.spool.ingest_wait_s
        for answer in taken.answers:
            sent = answer.sent
            if answer.refusal is None:
                if self.spool.accept(sent.record_id, sent.attempt):  # not a stale answer
                    for key, n in per_stream(sent.key, sent.n):
                        self._counters(key).acked += n
                        self.metrics.child(self.metrics.published, key).inc(n)
            elif answer.refusal.transient:
                log.warning("broker refused a publish for now (%s): sending it again",
                            answer.refusal.reason)
                self.spool.reject(sent.record_id, sent.attempt)
            else:
                self.link.set_error(f"broker refused a publish: {answer.refusal.reason}")
                log.error("broker refused a publish: %s (stream %s, %d samples dropped)",
                          answer.refusal.reason, sent.key[:300], sent.n)
                self.spool.discard(sent.record_id, "refused", sent.attempt)
        for key, first_seq in taken.commits:
            self.spool.confirm(key, first_seq)

    def _export_spool_state(self) -> None:
        """Publish the spool's size on /metrics (once per spool flush)."""
        stats = self._stats = self.spool.stats()
        self.metrics.spool_records.set(stats.records)
        self.metrics.spool_bytes.set(stats.bytes)
        self.metrics.spool_unconfirmed.set(stats.unconfirmed_samples)
        if stats.write_errors > self._reported_write_errors:
            self.metrics.spool_write_errors.inc(stats.write_errors - self._reported_write_errors)
            self._reported_write_errors = stats.write_errors

    def _due(self, ring: StreamRing, force: bool) -> bool:
        pending = self.reader.pending(ring)
        if pending <= 0:
            return False
        if force or ring.stream.is_event or pending >= self.config.publisher.max_batch_samples:
            return True
        counters = self._counters(ring.stream.key)
        if (self._clock() - counters.last_flush) * 1000.0 >= self._latency_ms:
            return True
        if not self.config.publisher.flush_when_idle:
            return False
        # idle: nothing was appended since the previous scan, so the source's burst is
        # over and waiting longer adds latency without making the batch larger; a stream
        # that keeps growing (busy) is batched by the rules above
        write = ring.write_seq
        idle = write == counters.seen_write
        counters.seen_write = write
        return idle

    def _counters(self, key: str) -> StreamCounters:
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = StreamCounters(last_flush=self._clock())
        return counters

    def _read_part(self, ring: StreamRing) -> Part | None:
        """Take one batch from the ring and encode it; None when nothing is pending."""
        key = ring.stream.key
        result = self.reader.read(ring, self.config.publisher.max_batch_samples)
        counters = self._counters(key)
        counters.last_flush = self._clock()
        if result.lost:
            counters.lost += result.lost
            self.metrics.overrun.labels("publisher", key).inc(result.lost)
            log.warning("publisher fell behind on %s: %d samples overwritten before publish",
                        key, result.lost)
        batch = result.batch
        if batch is None:
            return None
        self.store.reserve_seq([ring])  # spooled numbers stay below the reservation
        batch.historical = self.historical
        return Part(ring, batch.first_seq, len(batch),
                    self._encode(batch, self.config.gateway, self.epoch))

    def _spool_next(self, ring: StreamRing) -> int:
        """Move one batch from the ring into the spool; return its size (0: nothing/blocked)."""
        part = self._read_part(ring)
        if part is None:
            return 0
        bundle = Bundle(0)
        bundle.add(part)
        return self._spool_bundle(bundle)

    def _spool_device(self, rings: list[StreamRing]) -> int:
        """Spool every pending sample of one device's rings, as few records as the size
        cap allows; return the samples moved (stops early when the spool blocks)."""
        bundle, total = Bundle(self.config.publisher.max_bundle_bytes), 0
        for ring in rings:
            while self.reader.pending(ring) > 0:
                part = self._read_part(ring)
                if part is None:
                    break
                if bundle.add(part):
                    moved = self._spool_bundle(bundle)
                    if moved <= 0:
                        return total
                    total += moved
                    bundle = Bundle(bundle.max_bytes)
        if bundle.parts:
            total += self._spool_bundle(bundle)
        return total

    def _spool_bundle(self, bundle: Bundle) -> int:
        """Write a bundle's record to the spool; return its samples (0: blocked, kept)."""
        record: Record = bundle.record(self.prefix)
        replay = self.historical or not self.connected.is_set() or self.spool.has_unsent()
        if not self.spool.add(record.key, record.topic, record.payload, record.first_seq,
                              record.n, replay):
            if self.config.spool.policy == "block":
                for part in reversed(bundle.parts):  # keep them in the rings
                    self.reader.seek(part.ring.stream.key, part.first_seq)
                return 0
            return record.n  # dropped, counted by the spool
        for part in bundle.parts:
            self.metrics.child(self.metrics.spooled, part.ring.stream.key).inc(part.n)
        return record.n

    def _holding(self) -> bool:
        """True while waiting for an ingest worker after the broker lost its state."""
        if self._hold_until is None:
            return False
        if self.link.ingest_seen.is_set():
            self._hold_until = None
            log.info("an ingest worker is subscribed again: resending the spool")
            return False
        if self._clock() >= self._hold_until:
            self._hold_until = None
            log.warning("no ingest worker announced itself within %.0f s: resending anyway",
                        self.config.spool.ingest_wait_s)
            return False
        return True

    def _pump(self) -> None:
        """Publish spooled records in order while connected and the in-flight window allows."""
        while self.connected.is_set() and not self._holding():
            free = self.link.free_slots()
            if free <= 0:
                return  # the next answer from the broker wakes the thread
            batch = self.spool.batch(free)
            if not batch:
                return
            for number, message in enumerate(batch):
                if not self._publish(message):
                    for rest in batch[number + 1:]:
                        self.spool.reject(rest.record_id, rest.attempt)
                    return

    def _publish(self, message: Outgoing) -> bool:
        """Publish one spooled record at QoS 1; False if the transport refused the call."""
        payload = as_historical(message.payload) if message.replay else message.payload
        try:
            mid = self.transport.publish(message.topic, payload, 1, False)
        except TransportError as err:
            if err.transient:
                self.spool.reject(message.record_id, message.attempt)
            else:
                self.link.set_error(str(err))
                log.error("%s (stream %s, %d samples dropped)", err, message.key[:300],
                          message.n)
                self.spool.discard(message.record_id, "refused", message.attempt)
            return False
        for key, n in per_stream(message.key, message.n):
            counters = self._counters(key)
            counters.sent += n
            counters.messages += 1
        self.link.track(mid, InFlight(message.key, message.n, message.record_id,
                                      message.attempt))
        return True

    # -- stopping ------------------------------------------------------------------------
    def _draining(self) -> bool:
        """True while something is unsent, unacknowledged, or unconfirmed by a live worker."""
        if self.inflight() or self.spool.has_unsent():
            return True
        waiting = self.spool.confirming and self.spool.unconfirmed_samples() > 0
        return waiting and self.link.worker_online() and self.connected.is_set()

    def _drain(self, deadline: float) -> None:
        """Spool what the rings hold; publish until all is answered or the deadline."""
        self.flush(force=True)
        while self._draining() and time.monotonic() < deadline:
            self._wake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
            self.flush(force=True)
        self._apply(self.link.take())
        # every sample of these rings is in the spool: the next start resumes right after
        # them, not after the reservation (whose unused numbers would look like a gap)
        self.store.settle_seq([r for r in self.store.rings() if self.reader.pending(r) == 0])

    def stop(self, drain_timeout: float = 10.0) -> bool:
        """Spool everything pending, publish it (bounded wait for acks), close the spool.

        While an ingest worker is online it also waits (bounded) for its confirmations.
        Returns True if the broker acknowledged every sample; what was not acknowledged or
        confirmed stays in the spool (when its directory is configured) for the next start.
        """
        deadline = time.monotonic() + drain_timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout)
            if self._thread.is_alive():
                log.error("the publisher thread did not stop within %.0f s", drain_timeout)
        try:
            self._drain(deadline)
        except Exception:  # still close the spool and the connection below
            log.exception("draining the publisher failed")
        all_acked = self.inflight() == 0 and not self.spool.has_unsent()
        if not all_acked:
            log.error("stopping with %d messages not acknowledged by the broker (kept in the "
                      "spool %s)", self.inflight() + self.spool.unsent(), self.spool.dir)
        if self.connected.is_set():
            self.link.publish_status("offline").wait(2)
        self.link.stopping = True
        self.transport.stop()
        self.spool.close()
        if self._temp_spool:
            shutil.rmtree(self.spool.dir, ignore_errors=True)
        return all_acked
