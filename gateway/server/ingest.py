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
Duplicates (redeliveries, spool replays) are acknowledged without a second write and are
not counted twice; every PUBACK goes out in the order the messages arrived; sequence gaps
are recorded in ``medgw_gap`` (see gateway/seqtrack.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import LoadedConfig
from gateway.errors import BrokerError, PayloadError, StoreError
from gateway.model import SampleBatch
from gateway.server.influx import InfluxWriter, create_writer
from gateway.server.lineproto import encode_batch, gap_line
from gateway.server.seqtrack import Gap, Hole, SeqTracker
from gateway.wire.mqtt import describe_reason, make_mqtt_client
from gateway.wire.payload import decode
from gateway.wire.topics import commit_topic, data_topic, ingest_status_topic

log = logging.getLogger("medgw.ingest")


@dataclass
class IngestStats:
    """What one ingest worker did; read by the CLI and the tests."""

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
    gateways: dict[str, str] = field(default_factory=dict)
    by_stream: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    mid: int
    qos: int
    topic: str
    payload: bytes
    lines: bytes = b""
    n_lines: int = 0
    n_samples: int = 0
    stream_key: str = ""
    gateway: str = ""
    site: str = ""
    first_seq: int = 0
    batch: SampleBatch | None = None
    error: str | None = None


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


class Ingest:
    """One ingest worker; ``start()`` subscribes, ``stop()`` flushes and disconnects."""

    def __init__(self, loaded: LoadedConfig, writer: InfluxWriter | None = None,
                 worker_id: str = "0") -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.stats = IngestStats()
        self.writer = writer or make_writer(loaded)
        self.prefix = self.config.mqtt.topic_prefix
        self.topic_filter = f"$share/{self.config.ingest.group}/{self.prefix}/#"
        self.subscribed = threading.Event()
        self.last_error: str | None = None
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._stop = threading.Event()
        self._created = False  # create_database tried (at most once per worker)
        self._thread: threading.Thread | None = None
        self._dead_letter_file: Path | None = self.config.ingest.dead_letter_file
        client_id = self.config.ingest.client_id or (
            f"medgw-ingest-{self.config.ingest.group}-{worker_id}"
        )
        password = loaded.secret(self.config.mqtt.password, "mqtt.password")
        self.client_id = client_id
        self.client = make_mqtt_client(self.config.mqtt, client_id, password, manual_ack=True)
        self._status_topic = ingest_status_topic(self.prefix, client_id)
        self.client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        self.tracker = SeqTracker()
        self._query_session: requests.Session | None = None
        self._last_gap_check = time.monotonic()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _status(self, state: str) -> bytes:
        return orjson.dumps({"v": 1, "worker": self.client_id, "group": self.config.ingest.group,
                             "state": state, "ts": time.time_ns()})

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object = None) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {describe_reason(reason)}"
            log.error(self.last_error)
            return
        client.subscribe(self.topic_filter, qos=1)

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
        item = _Pending(message.mid, message.qos, message.topic, bytes(message.payload))
        if not item.topic.endswith("/status"):
            self._decode(item)
        self._queue.put(item)

    def _decode(self, item: _Pending) -> None:
        """Decode and encode to line protocol here, in paho's thread: stateless CPU work that
        overlaps the writer thread's wait on InfluxDB."""
        try:
            item.gateway, batch = decode(item.payload)
            expected = data_topic(self.prefix, batch.stream)
            if item.topic != expected:
                raise PayloadError(f"topic {item.topic} does not match payload stream {expected}")
            item.lines, item.n_lines = encode_batch(batch)
            item.batch = batch
        except PayloadError as err:
            item.error = str(err)

    def start(self) -> None:
        """Connect, subscribe and start the writer thread."""
        props = Properties(PacketTypes.CONNECT)
        # The broker sends at most this many unacknowledged messages: our queue stays bounded.
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

    def wait_subscribed(self, timeout: float) -> None:
        """Block until the subscription is active; BrokerError explains a refusal."""
        if not self.subscribed.wait(timeout):
            raise BrokerError(f"ingest not subscribed within {timeout:.0f} s: "
                              f"{self.last_error or 'no answer from the broker'}")

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch = self._collect()
            if batch:
                self._process(batch)
            self._check_gaps()

    def _collect(self) -> list[_Pending]:
        """Gather messages until the line budget or the flush interval is reached."""
        cfg = self.config.influxdb
        deadline = time.monotonic() + cfg.flush_ms / 1000.0
        batch: list[_Pending] = []
        lines = 0
        while lines < cfg.batch_lines:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                item = self._queue.get(timeout=min(timeout, 0.1))
            except queue.Empty:
                if self._stop.is_set():
                    break
                continue
            self._prepare(item)
            batch.append(item)  # written or not, acknowledged in arrival order after the write
            lines += item.n_lines
        return batch

    def _prepare(self, item: _Pending) -> None:
        """Ready one message for the write; one that needs none keeps no lines.

        Every message of a batch is acknowledged after the batch's write, in the order the
        broker sent them (MQTT asks for PUBACKs in order): a duplicate or a status message
        is not acknowledged ahead of earlier messages still waiting for InfluxDB.
        """
        self.stats.messages += 1
        if item.topic.endswith("/status"):
            self._record_status(item)
            self._no_write(item)
            return
        batch = item.batch
        if batch is None:
            self._quarantine(item, item.error or "not decoded")
            self._no_write(item)
            return
        item.batch = None  # the lines are all the writer needs
        item.stream_key = batch.stream.key
        item.site = batch.stream.site
        item.first_seq = batch.first_seq
        item.n_samples = self.tracker.observe(batch)
        duplicates = len(batch) - item.n_samples
        self.stats.duplicates += duplicates
        if item.n_samples == 0:  # already written: a redelivery or a replay
            self._no_write(item)

    @staticmethod
    def _no_write(item: _Pending) -> None:
        item.lines, item.n_lines = b"", 0

    def _record_status(self, item: _Pending) -> None:
        self.stats.status_messages += 1
        try:
            doc = orjson.loads(item.payload)
            self.stats.gateways[f"{doc['site']}/{doc['gateway']}"] = str(doc["state"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            if item.payload:  # an empty retained message only clears the topic
                self._quarantine(item, "status message is not a medgw status")

    def _quarantine(self, item: _Pending, reason: str) -> None:
        """Count and dead-letter a message (it is acknowledged with its batch)."""
        self.stats.malformed += 1
        log.warning("quarantined message on %s: %s", item.topic, reason)
        envelope = orjson.dumps({"topic": item.topic, "reason": reason,
                                 "received_ns": time.time_ns(),
                                 "payload": item.payload.decode("utf-8", "replace")})
        self.client.publish(f"{self.config.ingest.dead_letter_topic}/{item.topic}", envelope,
                            qos=1)
        if self._dead_letter_file is not None:
            with self._dead_letter_file.open("ab") as out:
                out.write(envelope + b"\n")

    def _create_database(self) -> bool:
        """Create the v1 database when configured to; True if the write is worth repeating."""
        create = getattr(self.writer, "create_database", None)
        if not self.config.influxdb.create_database or create is None or self._created:
            return False
        self._created = True  # once: a 404 after that is not a missing database
        try:
            create()
        except StoreError as err:
            log.error("InfluxDB database %s is missing and could not be created: %s",
                      self.config.influxdb.database, err)
            return False
        log.info("created InfluxDB database %s", self.config.influxdb.database)
        return True

    def _process(self, batch: list[_Pending]) -> None:
        if self._write(batch):
            self._ack(batch)

    def _write(self, batch: list[_Pending]) -> bool:
        """Write the batch's lines; retry transient errors, split to isolate bad messages.

        Returns False only when stopping before the write succeeded: the messages stay
        unacknowledged and the broker redelivers them.
        """
        n_lines = sum(item.n_lines for item in batch)
        if n_lines == 0:  # duplicates, status or quarantined messages only: ack them
            return True
        body = b"".join(item.lines for item in batch)
        return self._write_lines(body, n_lines, batch)

    def _write_lines(self, body: bytes, n_lines: int, batch: list[_Pending]) -> bool:
        delay = 0.2
        while True:
            try:
                self.writer.write(body, n_lines)
            except StoreError as err:
                if err.status == 404 and self._create_database():
                    continue  # the database did not exist yet: created, write again
                if err.retryable:
                    self.stats.retries += 1
                    wait = err.retry_after_s or delay * random.uniform(0.5, 1.5)
                    log.warning("InfluxDB write failed (%s); retrying in %.1f s", err, wait)
                    if self._stop.wait(wait):
                        return False
                    delay = min(delay * 2, 10.0)
                    continue
                return self._split_or_quarantine(body, n_lines, batch, err)
            self.stats.writes += 1
            self.stats.lines += n_lines
            for item in batch:
                self.stats.samples += item.n_samples
                by_stream = self.stats.by_stream
                by_stream[item.stream_key] = by_stream.get(item.stream_key, 0) + item.n_samples
            return True

    def _split_or_quarantine(self, body: bytes, n_lines: int, batch: list[_Pending],
                             err: StoreError) -> bool:
        if len(batch) > 1:
            half = len(batch) // 2
            return self._write(batch[:half]) and self._write(batch[half:])
        if err.status == 413 and n_lines > 1:
            lines = body.splitlines(keepends=True)
            half = len(lines) // 2
            first, second = b"".join(lines[:half]), b"".join(lines[half:])
            only = batch[0]
            samples, only.n_samples = only.n_samples, 0  # count the samples once
            ok = self._write_lines(first, half, batch)
            only.n_samples = samples
            return ok and self._write_lines(second, n_lines - half, batch)
        self._quarantine(batch[0], f"InfluxDB refused the points (HTTP {err.status}): {err}")
        return True

    def _ack(self, batch: list[_Pending]) -> None:
        commits: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for item in batch:
            if item.qos > 0:
                self.client.ack(item.mid, item.qos)
            if item.stream_key:
                commits.setdefault((item.site, item.gateway), []).append(
                    (item.stream_key, item.first_seq))
        for (site, gateway), done in commits.items():
            self.client.publish(commit_topic(self.prefix, site, gateway),
                                orjson.dumps({"c": done}), qos=1)

    def _check_gaps(self, force: bool = False) -> None:
        """Confirm holes older than the grace period and record the missing runs."""
        cfg = self.config.ingest
        if not cfg.record_gaps:
            return
        now = time.monotonic()
        if not force and now - self._last_gap_check < max(cfg.gap_grace_s / 2, 0.2):
            return
        self._last_gap_check = now
        holes = self.tracker.due_holes(0.0 if force else cfg.gap_grace_s)
        if not holes:
            return
        gaps: list[Gap] = []
        for hole in holes:
            try:
                present = self._present(hole)
            except StoreError as err:
                log.warning("cannot check gap %s %d..%d yet: %s", hole.stream.key, hole.lo,
                            hole.hi, err)
                return
            gaps.extend(self.tracker.settle(hole, present))
        if gaps:
            self._record_gaps(gaps)

    def _present(self, hole: Hole) -> set[int]:
        """Return the sequence numbers of ``hole`` InfluxDB already holds.

        Another worker of the shared subscription may have written them. Only the v1
        backend is queried (InfluxQL); with v2 every hole left after the grace is a gap.
        """
        cfg = self.config.influxdb
        if cfg.backend != "v1":
            return set()
        s = hole.stream
        source = f'"{cfg.retention_policy}"."{s.measurement}"' if cfg.retention_policy \
            else f'"{s.measurement}"'
        influxql = (f'SELECT "seq" FROM {source} WHERE "site"=\'{s.site}\' AND '
                    f'"device"=\'{s.device}\' AND "stream"=\'{s.stream}\' AND '
                    f"time > {hole.ts_before} AND time < {hole.ts_after}")
        if self._query_session is None:
            self._query_session = requests.Session()
            if cfg.username is not None:
                password = self.loaded.secret(cfg.password, "influxdb.password") or ""
                self._query_session.auth = (cfg.username, password)
        try:
            resp = self._query_session.post(f"{cfg.url.rstrip('/')}/query",
                                            data={"q": influxql, "db": cfg.database},
                                            timeout=cfg.timeout_s)
            resp.raise_for_status()
            results = resp.json().get("results", [{}])
        except (requests.RequestException, ValueError) as err:
            raise StoreError(f"gap check query failed: {err}") from err
        present: set[int] = set()
        for series in results[0].get("series", []) if results else []:
            present.update(int(row[1]) for row in series.get("values", []) if row[1] is not None)
        return present

    def _record_gaps(self, gaps: list[Gap]) -> None:
        body = b"".join(gap_line(g.stream, g.from_seq, g.to_seq, g.ts_ns, g.gateway) for g in gaps)
        for gap in gaps:
            log.warning("sequence gap in %s: %d..%d (%d samples missing)", gap.stream.key,
                        gap.from_seq, gap.to_seq, gap.missing)
        try:
            self.writer.write(body, len(gaps))
        except StoreError as err:
            log.error("cannot record %d gaps: %s", len(gaps), err)
            return
        self.stats.gaps += len(gaps)
        self.stats.missing += sum(gap.missing for gap in gaps)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what has arrived, acknowledge it, disconnect."""
        self._stop.set()
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
        if self._query_session is not None:
            self._query_session.close()


