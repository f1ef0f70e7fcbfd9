"""MQTT publisher: reads the rings through its own cursor, batches per stream, publishes QoS 1.

Batching: a stream is flushed when it has ``max_batch_samples`` pending, when its oldest
pending sample waited ``max_latency_ms``, or at once for event streams (priority lane).
The number of unacknowledged publishes is bounded by ``mqtt.max_inflight``: paho's own
queue is unbounded, so without this bound a slow broker would grow memory without limit.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway import __version__
from gateway.config import LoadedConfig, MqttConfig
from gateway.errors import BrokerError
from gateway.metrics import GatewayMetrics
from gateway.model import SampleBatch, StreamSpec
from gateway.payload import data_topic, encode, status_topic
from gateway.ring import RingReader, RingStore, StreamRing

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
    newest_ns: int


def make_mqtt_client(mqtt_config: MqttConfig, client_id: str, password: str | None,
                     protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                     manual_ack: bool = False) -> mqtt.Client:
    """Build a paho client with auth, TLS and the in-flight window from config."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         manual_ack=manual_ack)
    if mqtt_config.username is not None:
        client.username_pw_set(mqtt_config.username, password)
    if mqtt_config.tls is not None:
        tls = mqtt_config.tls
        client.tls_set(ca_certs=str(tls.ca_file),
                       certfile=str(tls.cert_file) if tls.cert_file else None,
                       keyfile=str(tls.key_file) if tls.key_file else None,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(mqtt_config.max_inflight)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def describe_reason(reason: ReasonCode | int) -> str:
    """Turn a CONNACK/PUBACK reason into words an operator can act on."""
    text = str(reason)
    value = getattr(reason, "value", reason)
    if value in (4, 5, 134, 135):
        return f"{text}: check the username, password and ACL configured for this gateway"
    return text


class MqttPublisher:
    """Publishes every ring's new samples to MQTT; run it with ``start()`` / ``stop()``."""

    def __init__(self, loaded: LoadedConfig, store: RingStore, metrics: GatewayMetrics) -> None:
        self.config = loaded.config
        self.prefix = self.config.mqtt.topic_prefix
        self.store = store
        self.metrics = metrics
        self.reader: RingReader = store.reader("publisher")
        self.counters: dict[str, StreamCounters] = {}
        self.connected = threading.Event()
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.config.mqtt.max_inflight)
        self._lock = threading.Lock()
        self._inflight: dict[int, _InFlight] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self._status_mids: set[int] = set()
        self._thread: threading.Thread | None = None
        self._drain_deadline: float | None = None
        client_id = self.config.mqtt.client_id or f"medgw-{self.config.site}-{self.config.gateway}"
        password = loaded.secret(self.config.mqtt.password, "mqtt.password")
        self.client = make_mqtt_client(self.config.mqtt, client_id, password)
        self._status_topic = status_topic(self.prefix, self.config.site, self.config.gateway)
        self.client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        store.add_listener(self._on_append)

    def _status(self, state: str) -> bytes:
        return orjson.dumps({"v": 1, "site": self.config.site, "gateway": self.config.gateway,
                             "state": state, "ts": time.time_ns(), "version": __version__})

    def _publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(self._status_topic, self._status(state), qos=1, retain=True)
        with self._lock:
            if self._early_acks.pop(info.mid, None) is None:
                self._status_mids.add(info.mid)
        return info

    def _on_append(self, stream: StreamSpec) -> None:
        if stream.is_event:
            self._wake.set()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object = None) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {describe_reason(reason)}"
            log.error(self.last_error)
            return
        self.last_error = None
        self._publish_status("online")
        self.connected.set()
        log.info("connected to broker %s:%d", self.config.mqtt.host, self.config.mqtt.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object = None) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); paho reconnects", reason)

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
        if reason.is_failure:
            self.last_error = f"broker refused a publish: {describe_reason(reason)}"
            log.error("%s (stream %s, %d samples)", self.last_error, done.key, done.n)
            self.metrics.dropped.labels(done.key, "refused").inc(done.n)
            return
        self.counters[done.key].acked += done.n
        self.metrics.published.labels(done.key).inc(done.n)
        self.metrics.lag.labels(done.key).set(max(0.0, (time.time_ns() - done.newest_ns) / 1e9))

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
        tick = min(self.config.publisher.max_latency_ms / 4000.0, 0.05)
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            self.flush(force=False)

    def flush(self, force: bool) -> int:
        """Publish what is due (everything when ``force``); return the samples handed to paho."""
        total = 0
        for ring in self.store.rings():
            while self._due(ring, force):
                sent = self._publish_next(ring)
                if sent == 0:
                    break
                total += sent
        return total

    def _due(self, ring: StreamRing, force: bool) -> bool:
        pending = self.reader.pending(ring)
        if pending <= 0:
            return False
        if force or ring.stream.is_event or pending >= self.config.publisher.max_batch_samples:
            return True
        counters = self._counters(ring.stream.key)
        waited = time.monotonic() - counters.last_flush
        return waited * 1000.0 >= self.config.publisher.max_latency_ms

    def _counters(self, key: str) -> StreamCounters:
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = StreamCounters()
        return counters

    def _publish_next(self, ring: StreamRing) -> int:
        if not self._acquire_slot():
            return 0
        result = self.reader.read(ring, self.config.publisher.max_batch_samples)
        counters = self._counters(ring.stream.key)
        counters.last_flush = time.monotonic()
        if result.lost:
            counters.lost += result.lost
            self.metrics.overrun.labels("publisher", ring.stream.key).inc(result.lost)
            log.warning("publisher fell behind on %s: %d samples overwritten before publish",
                        ring.stream.key, result.lost)
        if result.batch is None:
            self._slots.release()
            return 0
        self.publish_batch(result.batch)
        return len(result.batch)

    def _acquire_slot(self) -> bool:
        while not self._slots.acquire(timeout=0.1):
            if self._stop.is_set() and (
                self._drain_deadline is None or time.monotonic() > self._drain_deadline
            ):
                return False
        return True

    def publish_batch(self, batch: SampleBatch) -> None:
        """Publish one batch at QoS 1 (a slot must be held) and track it until PUBACK."""
        payload = encode(batch, self.config.gateway)
        key = batch.stream.key
        counters = self._counters(key)
        counters.sent += len(batch)
        counters.messages += 1
        # Never hold self._lock across publish(): paho's network thread holds its own
        # mutex while calling _on_publish, which takes self._lock (lock-order deadlock).
        info = self.client.publish(data_topic(self.prefix, batch.stream), payload, qos=1)
        record = _InFlight(key, len(batch), int(batch.timestamps_ns[-1]))
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

    def stop(self, drain_timeout: float = 10.0) -> bool:
        """Publish everything pending, wait (bounded) for acks, say goodbye; True if all acked."""
        deadline = time.monotonic() + drain_timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout)
        self._drain_deadline = deadline
        self.flush(force=True)
        while self.inflight() and time.monotonic() < deadline:
            time.sleep(0.02)
        all_acked = self.inflight() == 0
        if not all_acked:
            log.error("stopping with %d unacknowledged messages", self.inflight())
        if self.connected.is_set():
            self._publish_status("offline").wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        return all_acked
