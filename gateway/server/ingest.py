"""MQTT -> InfluxDB ingest: a shared subscription, batched line-protocol writes, late acks.

Each worker subscribes to ``$share/{group}/{prefix}/#`` (MQTT 5), so several workers split
the load on one broker. Messages are acknowledged (manual PUBACK) only after InfluxDB
accepted their points: a worker that dies before a write loses nothing, the broker
redelivers. A malformed payload is counted, sent to the dead-letter topic (and file)
and acknowledged: it never stops the worker.

After the write and the PUBACK, the worker confirms each data message to its gateway on
``{prefix}_ctl/commit/{site}/{gateway}`` (stream key and first sequence number): the gateway
keeps a record in its spool until then and sends it again when nobody confirmed it, so
messages a killed worker or a killed broker held are not lost. Sessions are clean by
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
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

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
from gateway.wire.mqtt import describe_reason, make_mqtt_client
from gateway.wire.topics import ingest_status_topic

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


def _guarded(name: str, fail: Callable[[str], None],
             callback: Callable[..., None]) -> Callable[..., None]:
    """Wrap a paho callback: an exception is fatal and loud, never paho's thread dying."""
    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as err:
            log.exception("ingest %s callback failed", name)
            fail(f"{name} callback: {type(err).__name__}: {err}")
    return run


class Ingest:
    """One ingest worker; ``start()`` subscribes, ``stop()`` flushes and disconnects."""

    def __init__(self, loaded: LoadedConfig, writer: InfluxWriter | None = None,
                 worker_id: str = "0") -> None:
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
        password = loaded.secret(self.config.mqtt.password, "mqtt.password")
        self.client = make_mqtt_client(self.config.mqtt, self.client_id, password,
                                       manual_ack=True)
        self._status_topic = ingest_status_topic(self.prefix, self.client_id)
        self.client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        self.loop = self._make_loop()
        self._thread: threading.Thread | None = None
        self._server: StatusServer | None = None
        self.client.on_connect = _guarded("connect", self._fail, self._on_connect)
        self.client.on_disconnect = _guarded("disconnect", self._fail, self._on_disconnect)
        self.client.on_subscribe = _guarded("subscribe", self._fail, self._on_subscribe)
        self.client.on_message = _guarded("message", self._fail, self._on_message)

    def _make_loop(self) -> WriteLoop:
        cfg, influx = self.config.ingest, self.config.influxdb
        tracker = SeqTracker()
        gaps = GapChecker(tracker, self.writer, _influxql(self.loaded, self.writer),
                          cfg.gap_grace_s, influx.retention_policy, enabled=cfg.record_gaps)
        dead = DeadLetters(self.client, cfg.dead_letter_topic, cfg.dead_letter_file,
                           max_payload_bytes=cfg.dead_letter_max_payload_bytes,
                           file_max_bytes=cfg.dead_letter_file_max_bytes,
                           file_backups=cfg.dead_letter_file_backups)
        settings = LoopSettings(prefix=self.prefix, batch_lines=influx.batch_lines,
                                flush_s=influx.flush_ms / 1000.0,
                                max_pending_bytes=cfg.max_pending_bytes)
        return WriteLoop(settings, self.writer, self.client, dead, gaps, tracker,
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

    # -- paho callbacks (paho's thread) ----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object = None) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {describe_reason(reason)}"
            log.error(self.last_error)
            return
        self.loop.generation += 1  # packet ids of earlier connections mean nothing now
        self.connected.set()
        client.subscribe(self.topic_filter, qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object = None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.last_error = f"disconnected: {describe_reason(reason)}"
        if not self.loop.stop_event.is_set():
            log.warning("ingest %s", self.last_error)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[ReasonCode], properties: object = None) -> None:
        if any(r.is_failure for r in reasons):
            self.last_error = f"subscription to {self.topic_filter} refused: {reasons}"
            log.error(self.last_error)
            return
        self.subscribed.set()
        client.publish(self._status_topic, self._status("online"), qos=1, retain=True)
        log.info("subscribed to %s", self.topic_filter)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        self.loop.receive(message.mid, message.qos, message.topic, bytes(message.payload))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect, subscribe and start the writer thread."""
        props = Properties(PacketTypes.CONNECT)
        # The broker sends at most this many unacknowledged messages (the inbox also
        # bounds their bytes).
        props.ReceiveMaximum = min(self.config.ingest.max_pending_messages, 65535)
        expiry = self.config.ingest.session_expiry_s
        props.SessionExpiryInterval = expiry
        self.client.connect_async(self.config.mqtt.host, self.config.mqtt.port,
                                  keepalive=self.config.mqtt.keepalive_s,
                                  clean_start=expiry == 0, properties=props)
        self.client.loop_start()
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
        with contextlib.suppress(Exception):
            self.client.disconnect()
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
            info = self.client.publish(self._status_topic, self._status("offline"), qos=1,
                                       retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        self.writer.close()
        if self._server is not None:
            self._server.stop()
