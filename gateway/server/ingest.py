"""MQTT -> InfluxDB ingest: a shared subscription, batched line-protocol writes, late acks.

Each worker subscribes to ``$share/{group}/{prefix}/#`` (MQTT 5), so several workers split
the load on one broker. Messages are acknowledged (manual PUBACK) only after InfluxDB
accepted their points: a worker that dies before a write loses nothing, the broker
redelivers. A malformed payload is counted, sent to the dead-letter topic (and file)
and acknowledged: it never stops the worker.

After the write and the PUBACK, the worker confirms each data message to its gateway on
``{prefix}_ctl/commit/{site}/{gateway}`` (record key and first sequence number; a device
bundle's key names each part, gateway/wire/bundle.py; confirmations share a message, sent
at most every 100 ms after the first): the gateway keeps a record in its spool until then
and sends it again when nobody confirmed it, so messages a killed worker or a killed broker
held are not lost. Sessions are clean by
default (``ingest.session_expiry_s: 0``), so a dead worker's share does not wait in the
broker for it. Once subscribed, a worker announces itself (retained, with an "offline"
Will) on ``{prefix}_ctl/ingest/{client_id}/status``; gateways wait for that after a broker
restart before they resend.

The state machine is gateway/server/writeloop.py (testable with a fake transport and
writer); this module wires it to paho. No message can stop the worker: every paho callback
handles what it receives, and should the writer thread die anyway the worker says so
(``failure``, /health ``failed``), disconnects so the broker hands its messages to other
workers, and ``medgw ingest`` exits non-zero for systemd to restart it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from gateway.config import LoadedConfig
from gateway.errors import BrokerError, ConfigError, StoreError
from gateway.httpstatus import StatusServer, health_route, metrics_route
from gateway.server.deadletter import DeadLetters
from gateway.server.gapcheck import GapChecker
from gateway.server.influx import InfluxWriter, V1Writer, create_writer
from gateway.server.influxql import InfluxQL
from gateway.server.seqtrack import SeqTracker
from gateway.server.status import health_report, registry_for
from gateway.server.writeloop import IngestStats, LoopSettings, Pending, WriteLoop
from gateway.wire.topics import ingest_status_topic
from gateway.wire.transport import PahoTransport, Received, Refusal, Transport, TransportError

__all__ = ["Ingest", "IngestStats", "Pending", "make_writer"]

log = logging.getLogger("medgw.ingest")


def make_writer(loaded: LoadedConfig) -> InfluxWriter:
    """Build the configured InfluxDB writer, resolving its secrets."""
    cfg = loaded.config.influxdb
    return create_writer(
        cfg.backend, cfg.url, database=cfg.database, retention_policy=cfg.retention_policy,
        username=cfg.username, password=loaded.secret(cfg.password, "influxdb.password"),
        bucket=cfg.bucket or cfg.database, org=cfg.org,
        token=loaded.secret(cfg.token, "influxdb.token"), gzip_body=cfg.gzip,
        timeout_s=cfg.timeout_s,
    )


def _influxql(loaded: LoadedConfig, writer: InfluxWriter) -> InfluxQL | None:
    """The client for gap checks: the writer's own (v1), None for v2 (no InfluxQL)."""
    cfg = loaded.config.influxdb
    if cfg.backend != "v1":
        return None
    if isinstance(writer, V1Writer):
        return writer.influxql()
    return InfluxQL(cfg.url, cfg.database, username=cfg.username,
                    password=loaded.secret(cfg.password, "influxdb.password"),
                    timeout_s=cfg.timeout_s)


class Ingest:
    """One ingest worker; ``start()`` subscribes, ``stop()`` flushes and disconnects."""

    def __init__(self, loaded: LoadedConfig, writer: InfluxWriter | None = None,
                 worker_id: str = "0", transport: Transport | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        cfg = self.config.ingest
        self.prefix = self.config.mqtt.topic_prefix
        if cfg.dead_letter_topic == self.prefix or \
                cfg.dead_letter_topic.startswith(self.prefix + "/"):
            raise ConfigError(f"{cfg.dead_letter_topic!r} is under the data prefix "
                              f"{self.prefix!r}: the ingest would read its own dead letters",
                              str(loaded.path) if loaded.path else None,
                              "ingest.dead_letter_topic")
        self.writer = writer or make_writer(loaded)
        self.topic_filter = f"$share/{cfg.group}/{self.prefix}/#"
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.failure: str | None = None  # set once, when the worker can no longer work
        self.failed = threading.Event()
        self.on_failure: Callable[[], object] | None = None  # e.g. the CLI's stop
        self.client_id = cfg.client_id or f"medgw-ingest-{cfg.group}-{worker_id}"
        self.transport = transport or self._make_transport()
        self._status_topic = ingest_status_topic(self.prefix, self.client_id)
        self.transport.set_will(self._status_topic, self._status("offline"), qos=1, retain=True)
        self.loop = self._make_loop()
        self._thread: threading.Thread | None = None
        self._server: StatusServer | None = None
        # ids of publishes the broker acknowledged (on_published may beat publish's return)
        self._acked: deque[int] = deque(maxlen=4096)
        self._acked_cond = threading.Condition()
        self.transport.bind(self)

    def _make_transport(self) -> PahoTransport:
        cfg = self.config.ingest
        password = self.loaded.secret(self.config.mqtt.password, "mqtt.password")
        # The broker sends at most ReceiveMaximum unacknowledged messages (the inbox also
        # bounds their bytes).
        return PahoTransport(self.config.mqtt, self.client_id, password, manual_ack=True,
                             clean_start=cfg.session_expiry_s == 0,
                             session_expiry_s=cfg.session_expiry_s,
                             receive_maximum=min(cfg.max_pending_messages, 65535))

    def _make_loop(self) -> WriteLoop:
        cfg, influx = self.config.ingest, self.config.influxdb
        tracker = SeqTracker()
        gaps = GapChecker(tracker, self.writer, _influxql(self.loaded, self.writer),
                          cfg.gap_grace_s, influx.retention_policy, enabled=cfg.record_gaps)
        dead = DeadLetters(self.transport, cfg.dead_letter_topic, cfg.dead_letter_file,
                           max_payload_bytes=cfg.dead_letter_max_payload_bytes,
                           file_max_bytes=cfg.dead_letter_file_max_bytes,
                           file_backups=cfg.dead_letter_file_backups)
        settings = LoopSettings(prefix=self.prefix, batch_lines=influx.batch_lines,
                                flush_s=influx.flush_ms / 1000.0,
                                max_pending_bytes=cfg.max_pending_bytes)
        return WriteLoop(settings, self.writer, self.transport, dead, gaps, tracker,
                         create_database=self._create_database_once())

    @property
    def stats(self) -> IngestStats:
        """Return what this worker did so far."""
        return self.loop.stats

    @property
    def tracker(self) -> SeqTracker:
        """Return the worker's sequence tracking."""
        return self.loop.tracker

    def _create_database_once(self) -> Callable[[], bool]:
        tried = False

        def create() -> bool:
            """Create the v1 database when configured to; True if the write is worth
            repeating (at most once per worker: a 404 after that is not a missing database)."""
            nonlocal tried
            make = getattr(self.writer, "create_database", None)
            if not self.config.influxdb.create_database or make is None or tried:
                return False
            tried = True
            try:
                make()
            except StoreError as err:
                log.error("InfluxDB database %s is missing and could not be created: %s",
                          self.config.influxdb.database, err)
                return False
            log.info("created InfluxDB database %s", self.config.influxdb.database)
            return True
        return create

    def _status(self, state: str) -> bytes:
        return orjson.dumps({"v": 1, "worker": self.client_id, "group": self.config.ingest.group,
                             "state": state, "ts": time.time_ns()})

    # -- TransportListener (the transport's thread) ---------------------------------------
    def on_connected(self, session_present: bool) -> None:
        """Subscribe on every (re)connection; earlier packet ids mean nothing now."""
        self.loop.generation += 1
        self.connected.set()
        self.transport.subscribe([(self.topic_filter, 1)])

    def on_connect_failed(self, reason: str) -> None:
        """Say why the broker refused us (paho keeps trying)."""
        self.last_error = f"broker refused the connection: {reason}"
        log.error(self.last_error)

    def on_disconnected(self, reason: str) -> None:
        """Degrade /health until the transport has reconnected."""
        self.connected.clear()
        self.subscribed.clear()
        self.last_error = f"disconnected: {reason}"
        if not self.loop.stop_event.is_set():
            log.warning("ingest %s", self.last_error)

    def on_subscribed(self, mid: int, refusal: Refusal | None) -> None:
        """Announce the worker once the shared subscription is granted."""
        if refusal is not None:
            self.last_error = f"subscription to {self.topic_filter} refused: {refusal.reason}"
            log.error(self.last_error)
            return
        self.subscribed.set()
        self._publish(self._status_topic, self._status("online"), retain=True)
        log.info("subscribed to %s", self.topic_filter)

    def on_published(self, mid: int, refusal: Refusal | None) -> None:
        """A commit, dead letter or presence message was acknowledged (or refused)."""
        if refusal is not None:
            log.warning("broker refused a publish of the ingest: %s", refusal.reason)
        with self._acked_cond:
            self._acked.append(mid)
            self._acked_cond.notify_all()

    def on_message(self, message: Received) -> None:
        """Decode and queue (waits while the byte budget is spent)."""
        self.loop.receive(message.mid, message.qos, message.topic, message.payload)

    def on_callback_error(self, callback: str, err: Exception) -> None:
        """A callback raised: the worker can no longer be trusted to ack in order."""
        self._fail(f"{callback}: {type(err).__name__}: {err}")

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        try:
            return self.transport.publish(topic, payload, qos=1, retain=retain)
        except TransportError as err:
            log.error("cannot publish on %s: %s", topic, err)
            return None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect, subscribe and start the writer thread."""
        self.transport.start()
        self._thread = threading.Thread(target=self._run, name="medgw-ingest-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as err:  # the worker cannot go on: say so, loudly
            log.critical("ingest writer thread died", exc_info=True)
            self._fail(f"writer: {type(err).__name__}: {err}")

    def _fail(self, reason: str) -> None:
        """Stop taking messages for good: the broker gives ours to other workers."""
        if self.failure is None:
            self.failure = reason
            log.critical("ingest worker failed (%s); disconnecting", reason)
        self.failed.set()
        self.loop.stop()
        with contextlib.suppress(Exception):  # already failing: stop is best effort
            self.transport.stop()
        if self.on_failure is not None:
            with contextlib.suppress(RuntimeError):  # the caller's loop may be gone
                self.on_failure()

    def writer_alive(self) -> bool:
        """Return True while the writer thread runs."""
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    def health(self) -> dict[str, Any]:
        """Return the /health report (see gateway/server/status.py)."""
        return health_report(self)

    def serve_status(self, host: str, port: int) -> StatusServer:
        """Serve /health and /metrics on a loopback port (ConfigError if it is taken)."""
        routes = {"/health": health_route(self.health),
                  "/metrics": metrics_route(registry_for(self))}
        self._server = StatusServer(host, port, routes, config_key="ingest.health_port")
        self._server.start()
        log.info("ingest /health and /metrics on http://%s:%d", host, self._server.port)
        return self._server

    def wait_subscribed(self, timeout: float) -> None:
        """Block until the subscription is active; BrokerError explains a refusal."""
        if not self.subscribed.wait(timeout):
            raise BrokerError(f"ingest not subscribed within {timeout:.0f} s: "
                              f"{self.last_error or 'no answer from the broker'}")

    def stop(self, timeout: float = 10.0) -> None:
        """Write what has arrived, acknowledge it, disconnect."""
        self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.subscribed.is_set():
            mid = self._publish(self._status_topic, self._status("offline"), retain=True)
            with self._acked_cond:
                self._acked_cond.wait_for(lambda: mid is None or mid in self._acked, 2)
        self.transport.stop()
        self.writer.close()
        if self._server is not None:
            self._server.stop()
