"""MQTT publisher: reads the rings through its own cursor, spools, publishes QoS 1.

Batching: a stream is taken from its ring when it has ``max_batch_samples`` pending, when
its oldest pending sample waited ``min(max_latency_ms, spool.flush_interval_ms)``, or at
once for event streams (priority lane). Every batch is written to the disk spool first
(gateway/spool.py) and published from there in order; it leaves the spool when an ingest
worker confirmed that InfluxDB holds it (a small QoS 1 message on
``{prefix}_ctl/commit/{site}/{gateway}``, end to end); a record the broker acknowledged but
no worker confirmed within ``spool.confirm_timeout_s`` is sent again, so a message lost
inside the broker (SIGKILL) or with a dead ingest worker is delivered after all. With
``spool.confirm: false``, and until an ingest worker has announced itself at least once
(a deployment whose consumer is not the medgw ingest), the broker's PUBACK ends a record's
life after ``spool.replay_window_s`` instead; resends happen only while a worker is online.
While the broker is down the publisher keeps moving the rings into the spool, so a ring
never overruns because of the broker.

Loss window: a gateway killed with SIGKILL loses only samples still in the ring, i.e. at
most those appended in the last ``min(max_latency_ms, spool.flush_interval_ms)`` plus one
publisher tick (<= 50 ms); an OS crash can lose in addition what was spooled since the
last fsync (``spool.flush_interval_ms``). After a restart, per-stream sequence numbers
resume past everything handed out before (gateway/seqstate.py), so a loss shows as a gap.

When the broker comes back without our session (it restarted and lost its state), it may
have lost messages it had acknowledged but not yet delivered to an ingest worker: the
publisher waits (bounded by ``spool.ingest_wait_s``) until an ingest worker announces
itself on ``{prefix}_ctl/ingest/+/status`` and resends every record still in the spool,
including those acknowledged within ``spool.replay_window_s``, marked historical.

The number of unacknowledged publishes is bounded by ``mqtt.max_inflight``: paho's own
queue is unbounded, so without this bound a slow broker would grow memory without limit.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway import __version__
from gateway.config import LoadedConfig
from gateway.edge.seqstate import SeqRingStore
from gateway.edge.spool import Spool
from gateway.errors import BrokerError
from gateway.metrics import GatewayMetrics
from gateway.model import SampleBatch, StreamSpec
from gateway.ring import RingReader, RingStore, StreamRing
from gateway.wire.mqtt import describe_reason, make_mqtt_client
from gateway.wire.payload import ENCODERS
from gateway.wire.topics import commit_topic, data_topic, ingest_status_topic, status_topic

log = logging.getLogger("medgw.publisher")


@dataclass
class StreamCounters:
    """Per-stream totals the publisher keeps for status output."""

    sent: int = 0
    acked: int = 0
    lost: int = 0
    messages: int = 0
    last_flush: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _InFlight:
    key: str
    n: int
    record_id: int


def resolve_spool_dir(loaded: LoadedConfig) -> tuple[Path, bool]:
    """Return the spool directory and whether it is a private temporary one."""
    configured = loaded.config.spool.dir
    if configured is not None:
        return Path(configured), False
    return Path(tempfile.mkdtemp(prefix=f"medgw-spool-{loaded.config.gateway}-")), True


class MqttPublisher:
    """Publishes every ring's new samples to MQTT through the disk spool; ``start()``/``stop()``."""

    def __init__(self, loaded: LoadedConfig, store: RingStore, metrics: GatewayMetrics,
                 spool_dir: Path | None = None, temporary_spool: bool = False) -> None:
        self.config = loaded.config
        self.prefix = self.config.mqtt.topic_prefix
        self.store = store
        self.metrics = metrics
        self.reader: RingReader = store.reader("publisher")
        self.counters: dict[str, StreamCounters] = {}
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.broker_state_losses = 0
        self.historical = False  # mark every batch historical (replay of recorded data)
        self._encode = ENCODERS[self.config.publisher.encoding]
        self._wake = threading.Event()
        self._scan_requested = False  # scan the rings at the next wake-up, not only pump
        self._window_full = False  # the pump waits for a PUBACK to free an in-flight slot
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.config.mqtt.max_inflight)
        self._lock = threading.Lock()
        self._inflight: dict[int, _InFlight] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self._status_mids: set[int] = set()
        self._acked_records: deque[int] = deque()
        self._commits: deque[tuple[str, int]] = deque()
        self._commit_topic = commit_topic(self.prefix, self.config.site, self.config.gateway)
        self._thread: threading.Thread | None = None
        self._connected_once = False
        self._rewind_pending = False
        self._hold_until: float | None = None
        self._ingest_seen = threading.Event()
        self.ingest_workers: dict[str, str] = {}  # announced ingest workers -> state
        self._worker_seen = False
        cfg = self.config.spool
        self._temp_spool = temporary_spool  # delete the directory at stop
        if spool_dir is None:
            spool_dir, self._temp_spool = resolve_spool_dir(loaded)
        self.spool = Spool(spool_dir, cfg.max_bytes, segment_bytes=cfg.segment_bytes,
                           flush_interval_s=cfg.flush_interval_ms / 1000.0, policy=cfg.policy,
                           replay_window_s=cfg.replay_window_s, on_drop=self._on_drop,
                           confirm=False)  # on once an ingest worker announced itself
        self._latency_ms = min(self.config.publisher.max_latency_ms, cfg.flush_interval_ms)
        client_id = self.config.mqtt.client_id or f"medgw-{self.config.site}-{self.config.gateway}"
        password = loaded.secret(self.config.mqtt.password, "mqtt.password")
        self.client = make_mqtt_client(self.config.mqtt, client_id, password)
        self._status_topic = status_topic(self.prefix, self.config.site, self.config.gateway)
        self.client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        store.add_listener(self._on_append, events_only=True)

    def _status(self, state: str) -> bytes:
        return orjson.dumps({"v": 1, "site": self.config.site, "gateway": self.config.gateway,
                             "state": state, "ts": time.time_ns(), "version": __version__})

    def _publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(self._status_topic, self._status(state), qos=1, retain=True)
        with self._lock:
            if self._early_acks.pop(info.mid, None) is None:
                self._status_mids.add(info.mid)
        return info

    def _request_scan(self) -> None:
        """Wake the publisher thread to look at every ring now."""
        self._scan_requested = True
        self._wake.set()

    def _on_append(self, stream: StreamSpec) -> None:
        self._request_scan()  # an event: the priority lane publishes it at once

    def _on_drop(self, key: str, n: int, reason: str) -> None:
        self.metrics.dropped.labels(key, reason).inc(n)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: object = None) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {describe_reason(reason)}"
            log.error(self.last_error)
            return
        self.last_error = None
        if self._connected_once and not flags.session_present:
            # The broker lost our session: it restarted and may have lost acknowledged
            # messages not yet delivered to an ingest worker. Resend once a worker is back.
            self.broker_state_losses += 1
            self._ingest_seen.clear()
            self._rewind_pending = True
            log.warning("broker came back without our session: resending the spool "
                        "(replay window %.0f s) once an ingest worker is subscribed",
                        self.config.spool.replay_window_s)
        self._connected_once = True
        client.subscribe([(ingest_status_topic(self.prefix, "+"), 1), (self._commit_topic, 1)])
        self._publish_status("online")
        self.connected.set()
        self._request_scan()
        log.info("connected to broker %s:%d", self.config.mqtt.host, self.config.mqtt.port)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        try:
            doc = orjson.loads(message.payload)
            if message.topic == self._commit_topic:
                commits = [(str(key), int(seq)) for key, seq in doc["c"]]
                with self._lock:
                    self._commits.extend(commits)
                return
            state = doc.get("state")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed message on %s", message.topic)
            return
        self.ingest_workers[message.topic] = str(state)
        if state == "online":
            self._worker_seen = True
            self._ingest_seen.set()
            self._request_scan()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object = None) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); spooling, paho reconnects", reason)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: ReasonCode, properties: object = None) -> None:
        with self._lock:
            if mid in self._status_mids:
                self._status_mids.discard(mid)
                return
            done = self._inflight.pop(mid, None)
            if done is None:  # PUBACK arrived before publish() returned
                self._early_acks[mid] = reason
                return
        self._acknowledged(done, reason)

    def _acknowledged(self, done: _InFlight, reason: ReasonCode) -> None:
        self._slots.release()
        with self._lock:
            self._acked_records.append(done.record_id)
        if self._window_full:  # the pump stopped on a full window: let it go on at once
            self._window_full = False
            self._wake.set()
        if reason.is_failure:
            self.last_error = f"broker refused a publish: {describe_reason(reason)}"
            log.error("%s (stream %s, %d samples)", self.last_error, done.key, done.n)
            self.metrics.dropped.labels(done.key, "refused").inc(done.n)
            return
        counters = self._counters(done.key)
        counters.acked += done.n
        self.metrics.child(self.metrics.published, done.key).inc(done.n)

    def start(self) -> None:
        """Connect (in the background, retrying) and start the publishing thread."""
        self.client.connect_async(self.config.mqtt.host, self.config.mqtt.port,
                                  keepalive=self.config.mqtt.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="medgw-publisher", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> None:
        """Block until the broker accepted the connection; BrokerError explains a refusal."""
        if not self.connected.wait(timeout):
            reason = self.last_error or "no answer"
            raise BrokerError(f"cannot connect to MQTT broker {self.config.mqtt.host}:"
                              f"{self.config.mqtt.port} within {timeout:.0f} s: {reason}")

    def _run(self) -> None:
        tick = min(self._latency_ms / 4000.0, 0.05)
        next_scan = 0.0
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            now = time.monotonic()
            if self._scan_requested or now >= next_scan:
                self._scan_requested = False
                next_scan = now + tick
                self.flush(force=False)
            else:  # woken by a PUBACK that freed the window: publish, skip the ring scan
                self._apply_acks()
                self._pump()

    def flush(self, force: bool) -> int:
        """Move what is due (everything when ``force``) into the spool and publish what can be.

        Returns the number of samples spooled. Runs in the publisher thread only.
        """
        self._apply_acks()
        total = 0
        if isinstance(self.store, SeqRingStore):
            self.store.seq_state.reserve(self.store.rings())
        for ring in self.store.rings():
            while self._due(ring, force):
                moved = self._spool_next(ring)
                if moved <= 0:
                    break
                total += moved
                self._pump()  # publish while spooling: the payload is still in the cache
        # Confirmation needs an ingest worker: until one announced itself, the broker's
        # PUBACK is final (after the replay window); resend only while one is online.
        self.spool.confirm = self.config.spool.confirm and self._worker_seen
        if self.spool.maybe_flush():
            self._export_spool_state()
            if self._worker_online():
                self.spool.resend_unconfirmed(self.config.spool.confirm_timeout_s)
        self._pump()
        return total

    def _export_spool_state(self) -> None:
        """Publish the spool's size on /metrics (once per spool flush)."""
        self.metrics.spool_records.set(len(self.spool.records))
        self.metrics.spool_bytes.set(self.spool.bytes)
        self.metrics.spool_unconfirmed.set(self.spool.unacked_samples())

    def _apply_acks(self) -> None:
        with self._lock:
            acked = list(self._acked_records)
            self._acked_records.clear()
            commits = list(self._commits)
            self._commits.clear()
        for record_id in acked:
            self.spool.ack(record_id)
        for key, first_seq in commits:
            self.spool.commit(key, first_seq)

    def _due(self, ring: StreamRing, force: bool) -> bool:
        pending = self.reader.pending(ring)
        if pending <= 0:
            return False
        if force or ring.stream.is_event or pending >= self.config.publisher.max_batch_samples:
            return True
        counters = self._counters(ring.stream.key)
        waited = time.monotonic() - counters.last_flush
        return waited * 1000.0 >= self._latency_ms

    def _counters(self, key: str) -> StreamCounters:
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = StreamCounters()
        return counters

    def _spool_next(self, ring: StreamRing) -> int:
        """Move one batch from the ring into the spool; return its size (0: nothing/refused)."""
        result = self.reader.read(ring, self.config.publisher.max_batch_samples)
        counters = self._counters(ring.stream.key)
        counters.last_flush = time.monotonic()
        if result.lost:
            counters.lost += result.lost
            self.metrics.overrun.labels("publisher", ring.stream.key).inc(result.lost)
            log.warning("publisher fell behind on %s: %d samples overwritten before publish",
                        ring.stream.key, result.lost)
        batch = result.batch
        if batch is None:
            return 0
        if isinstance(self.store, SeqRingStore):
            self.store.seq_state.reserve([ring])  # spooled numbers stay below the reservation
        batch.historical = (self.historical or not self.connected.is_set()
                            or self.spool.has_unsent())
        topic = data_topic(self.prefix, batch.stream)
        payload = self._encode(batch, self.config.gateway)
        if not self.spool.append(batch.stream.key, topic, payload, batch.first_seq, len(batch),
                                 batch.historical):
            if self.config.spool.policy == "block":
                self.reader.seek(ring.stream.key, batch.first_seq)  # keep it in the ring
                return 0
            return len(batch)
        self.metrics.child(self.metrics.spooled, batch.stream.key).inc(len(batch))
        return len(batch)

    def _holding(self) -> bool:
        """True while waiting for an ingest worker after the broker lost its state."""
        if self._rewind_pending:
            self._rewind_pending = False
            self._hold_until = time.monotonic() + self.config.spool.ingest_wait_s
            self.spool.rewind(include_acked=True)
        if self._hold_until is None:
            return False
        if self._ingest_seen.is_set():
            self._hold_until = None
            log.info("an ingest worker is subscribed again: resending the spool")
            return False
        if time.monotonic() >= self._hold_until:
            self._hold_until = None
            log.warning("no ingest worker announced itself within %.0f s: resending anyway",
                        self.config.spool.ingest_wait_s)
            return False
        return True

    def _pump(self) -> None:
        """Publish spooled records in order while connected and the in-flight window allows."""
        while self.connected.is_set() and not self._holding():
            if not self._acquire_slot():
                return
            message = self.spool.next_unsent()
            if message is None:
                self._slots.release()
                return
            self._publish(message.key, message.topic, message.payload, message.n,
                          message.record_id)

    def _acquire_slot(self) -> bool:
        """Take an in-flight slot without waiting; a full window wakes us on the next PUBACK."""
        self._window_full = True  # before trying, so a PUBACK racing with us still wakes us
        if self._slots.acquire(blocking=False):
            self._window_full = False
            return True
        self._apply_acks()
        return False

    def publish_batch(self, batch: SampleBatch) -> None:
        """Spool one batch and publish what the in-flight window allows (tests, tools)."""
        topic = data_topic(self.prefix, batch.stream)
        self.spool.append(batch.stream.key, topic, self._encode(batch, self.config.gateway),
                          batch.first_seq, len(batch), batch.historical)
        self._pump()

    def _publish(self, key: str, topic: str, payload: bytes, n: int, record_id: int) -> None:
        """Publish one spooled record at QoS 1 (a slot must be held); tracked until PUBACK."""
        counters = self._counters(key)
        counters.sent += n
        counters.messages += 1
        # Never hold self._lock across publish(): paho's network thread holds its own
        # mutex while calling _on_publish, which takes self._lock (lock-order deadlock).
        info = self.client.publish(topic, payload, qos=1)
        record = _InFlight(key, n, record_id)
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = record
        if early is not None:
            self._acknowledged(record, early)

    def inflight(self) -> int:
        """Return the number of publishes not yet acknowledged by the broker."""
        with self._lock:
            return len(self._inflight)

    def _draining(self) -> bool:
        """True while something is unsent, unacknowledged, or unconfirmed by a live worker."""
        if self.inflight() or self.spool.has_unsent():
            return True
        waiting_confirm = self.spool.confirm and self.spool.unacked_samples() > 0
        return waiting_confirm and self._worker_online() and self.connected.is_set()

    def _worker_online(self) -> bool:
        """True while at least one ingest worker announced itself online."""
        return any(state == "online" for state in list(self.ingest_workers.values()))

    def backlog(self) -> int:
        """Return the samples spooled but not yet acknowledged by the broker."""
        return self.spool.unacked_samples()

    def stop(self, drain_timeout: float = 10.0) -> bool:
        """Spool everything pending, publish it (bounded wait for acks), close the spool.

        While an ingest worker is online it also waits (bounded) for its confirmations.
        Returns True if the broker acknowledged every sample; what was not acknowledged or
        confirmed stays in the spool (when its directory is configured) for the next start.
        """
        deadline = time.monotonic() + drain_timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout)
        self.flush(force=True)
        while self._draining() and time.monotonic() < deadline:
            time.sleep(0.02)
            self.flush(force=True)
        self._apply_acks()
        all_acked = self.inflight() == 0 and not self.spool.has_unsent()
        if not all_acked:
            log.error("stopping with %d messages not acknowledged by the broker (kept in the "
                      "spool %s)", self.inflight(), self.spool.dir)
        if self.connected.is_set():
            self._publish_status("offline").wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        if self._temp_spool:
            shutil.rmtree(self.spool.dir, ignore_errors=True)
        return all_acked
