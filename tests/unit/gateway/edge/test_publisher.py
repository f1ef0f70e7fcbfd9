"""The publisher's state machine with a fake transport: no broker, no sleeps, a hand-moved clock.

The tests drive the publisher step by step (``flush``) from the test thread, and play the
broker by calling the listener's callbacks as the transport's thread would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest

from gateway.config import parse_config
from gateway.edge.publisher import MqttPublisher
from gateway.edge.seqstate import SeqRingStore, SeqState
from gateway.edge.spool import Spool
from gateway.metrics import GatewayMetrics
from gateway.model import StreamSpec
from gateway.ring import RingStore, StreamRing
from gateway.wire.transport import (
    PahoTransport,
    Received,
    Refusal,
    TransportError,
    TransportListener,
)
from tests.helpers import wait_until

SPEC = StreamSpec("site", "dev", "joints", ("a",), ("",), rate_hz=100.0)
COMMIT = "medgw/v1_ctl/commit/site/gw"
INGEST = "medgw/v1_ctl/ingest/worker-1/status"
STATUS = "medgw/v1/site/gw/status"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Records what the publisher sends; the test plays the broker through the listener."""

    def __init__(self) -> None:
        self.listener: TransportListener | None = None
        self.sent: list[tuple[int, str, bytes, bool]] = []  # mid, topic, payload, retain
        self.subscriptions: list[tuple[str, int]] = []
        self.will: tuple[str, bytes] | None = None
        self.auto_ack = False  # answer every publish before publish() returns
        self.fail_next: TransportError | None = None
        self.started = self.stopped = False
        self._mid = 0

    def bind(self, listener: TransportListener) -> None:
        self.listener = listener

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self.will = (topic, payload)

    def start(self) -> None:
        self.started = True

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        self._mid += 1
        self.sent.append((self._mid, topic, payload, retain))
        if self.auto_ack or retain:  # status messages are answered at once
            self.on().on_published(self._mid, None)
        return self._mid

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> int:
        self.subscriptions.extend(topics)
        self._mid += 1
        return self._mid

    def ack(self, mid: int, qos: int) -> None:
        raise AssertionError("the publisher never acknowledges received messages by hand")

    def stop(self) -> None:
        self.stopped = True

    # -- the broker's side ---------------------------------------------------------------
    def on(self) -> TransportListener:
        assert self.listener is not None
        return self.listener

    def connect(self, session_present: bool = False) -> None:
        self.on().on_connected(session_present)

    def data(self) -> list[tuple[int, dict[str, Any]]]:
        """The data publishes so far: (mid, payload header as a dict)."""
        out = []
        for mid, topic, payload, _ in self.sent:
            if topic.startswith("medgw/v1/site/dev/"):
                doc = orjson.loads(payload)  # JSON encoding: the header is the document
                out.append((mid, {"seq": doc["seq"], "n": doc["n"],
                                  "historical": doc["historical"]}))
        return out

    def answer_all(self, refusal: Refusal | None = None) -> None:
        for mid, _ in self.data():
            self.on().on_published(mid, refusal)

    def message(self, topic: str, doc: object) -> None:
        self.on().on_message(Received(topic, orjson.dumps(doc), 0, 1))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, store: RingStore | None = None,
         **overrides: Any) -> tuple[MqttPublisher, FakeTransport, StreamRing]:
    spool = {"dir": str(tmp_path / "spool"), "replay_window_s": 0, "confirm_timeout_s": 30,
             "flush_interval_ms": 1000, "ingest_wait_s": 30, **overrides.pop("spool", {})}
    loaded = parse_config({
        "site": "site", "gateway": "gw",
        "mqtt": {"max_inflight": overrides.pop("max_inflight", 100)},
        "publisher": {"max_batch_samples": 10, "max_latency_ms": 100, "bundle": False,
                      **overrides.pop("publisher", {})},
        "spool": spool,
    })
    store = store or RingStore(4096)
    ring = store.add_stream(SPEC)
    transport = FakeTransport()
    publisher = MqttPublisher(loaded, store, GatewayMetrics(), epoch=7, transport=transport,
                              clock=clock)
    return publisher, transport, ring


def append(ring: StreamRing, n: int) -> None:
    start = ring.write_seq
    ring.append(np.arange(start, start + n, dtype=np.int64) * 1000, np.zeros((n, 1)),
                np.zeros(n, np.uint8))


def seqs(transport: FakeTransport) -> list[int]:
    return [doc["seq"] for _, doc in transport.data()]


def metric(publisher: MqttPublisher, name: str, **labels: str) -> float:
    return publisher.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def started(tmp_path: Path, clock: Clock) -> Iterator[tuple[MqttPublisher, FakeTransport,
                                                            StreamRing]]:
    publisher, transport, ring = make(tmp_path, clock)
    transport.connect()
    yield publisher, transport, ring
    publisher.stop(drain_timeout=0)


def test_publishes_when_connected_live_with_the_epoch(started: Any) -> None:
    publisher, transport, ring = started
    assert transport.subscriptions == [("medgw/v1_ctl/ingest/+/status", 1), (COMMIT, 1)]
    assert transport.sent[0][1] == STATUS and transport.sent[0][3]  # retained "online"
    append(ring, 10)
    assert publisher.flush(force=False) == 10  # a full batch is due at once
    ((mid, doc),) = transport.data()
    assert doc == {"seq": 0, "n": 10, "historical": False}
    payload = next(p for m, _, p, _ in transport.sent if m == mid)
    assert orjson.loads(payload)["epoch"] == 7
    assert transport.will is not None and transport.will[0] == STATUS


def test_nothing_is_published_before_the_broker_accepts(tmp_path: Path, clock: Clock) -> None:
    publisher, transport, ring = make(tmp_path, clock)
    append(ring, 30)
    publisher.flush(force=True)
    assert transport.data() == [] and publisher.spool.records == 3
    transport.connect()
    publisher.flush(force=False)
    assert seqs(transport) == [0, 10, 20]
    assert all(doc["historical"] for _, doc in transport.data())  # spooled while offline
    publisher.stop(drain_timeout=0)


def test_the_inflight_window_bounds_unanswered_publishes(tmp_path: Path, clock: Clock) -> None:
    publisher, transport, ring = make(tmp_path, clock, max_inflight=2)
    transport.connect()
    append(ring, 50)
    publisher.flush(force=True)
    assert seqs(transport) == [0, 10] and publisher.inflight() == 2
    transport.on().on_published(transport.data()[0][0], None)
    publisher.flush(force=False)
    assert seqs(transport) == [0, 10, 20] and publisher.inflight() == 2
    publisher.stop(drain_timeout=0)


def test_puback_accepts_and_counts(started: Any, clock: Clock) -> None:
    publisher, transport, ring = started
    append(ring, 20)
    publisher.flush(force=True)
    transport.answer_all()
    publisher.flush(force=False)
    assert publisher.counters[SPEC.key].acked == 20 and publisher.inflight() == 0
    assert metric(publisher, "medgw_samples_published_total", stream=SPEC.key) == 20
    clock.now += 1.0  # the spool's flush interval: acknowledged records leave (window 0)
    publisher.flush(force=False)
    assert publisher.spool.records == 0


def test_an_answer_before_publish_returns_is_not_lost(started: Any) -> None:
    publisher, transport, ring = started
    transport.auto_ack = True
    append(ring, 30)
    publisher.flush(force=True)
    publisher.flush(force=False)
    assert publisher.counters[SPEC.key].acked == 30 and publisher.inflight() == 0


def test_a_refused_publish_is_a_counted_drop_with_the_reason(started: Any) -> None:
    publisher, transport, ring = started
    append(ring, 10)
    publisher.flush(force=True)
    transport.answer_all(Refusal("Not authorized: check the username, password and ACL"))
    publisher.flush(force=False)
    assert metric(publisher, "medgw_samples_dropped_total", stream=SPEC.key,
                  reason="refused") == 10
    assert "broker refused a publish" in (publisher.last_error or "")
    assert publisher.spool.records == 0 and publisher.counters[SPEC.key].acked == 0


def test_a_transient_refusal_is_sent_again_as_a_replay(started: Any) -> None:
    publisher, transport, ring = started
    append(ring, 10)
    publisher.flush(force=True)
    transport.answer_all(Refusal("Quota exceeded", transient=True))
    publisher.flush(force=False)
    assert [doc for _, doc in transport.data()][-1] == {"seq": 0, "n": 10, "historical": True}
    assert len(transport.data()) == 2 and publisher.spool.dropped == {}


def test_a_publish_the_transport_refuses_is_dropped_and_counted(started: Any) -> None:
    publisher, transport, ring = started
    append(ring, 10)
    transport.fail_next = TransportError("cannot publish: Payload too large.")
    publisher.flush(force=True)
    assert publisher.spool.dropped == {SPEC.key: 10}
    assert "Payload too large" in (publisher.last_error or "")


def test_after_a_disconnect_spooled_records_follow_in_order_as_historical(started: Any) -> None:
    publisher, transport, ring = started
    append(ring, 20)
    publisher.flush(force=True)
    transport.answer_all()
    transport.on().on_disconnected("connection lost")
    append(ring, 30)
    publisher.flush(force=True)
    assert seqs(transport) == [0, 10]  # nothing sent while down
    transport.connect(session_present=True)
    publisher.flush(force=False)
    assert seqs(transport) == [0, 10, 20, 30, 40]
    assert [doc["historical"] for _, doc in transport.data()] == [False] * 2 + [True] * 3


def test_a_broker_that_lost_our_session_gets_everything_again_once_ingest_is_back(
        started: Any, clock: Clock) -> None:
    publisher, transport, ring = started
    append(ring, 30)
    publisher.flush(force=True)
    transport.answer_all()
    publisher.flush(force=False)
    transport.on().on_disconnected("broker restarted")
    transport.connect(session_present=False)
    publisher.flush(force=False)
    assert publisher.broker_state_losses == 1
    assert seqs(transport) == [0, 10, 20]  # holding: no ingest worker subscribed yet
    transport.message(INGEST, {"state": "online"})
    publisher.flush(force=False)
    assert seqs(transport) == [0, 10, 20, 0, 10, 20]
    assert [doc["historical"] for _, doc in transport.data()[3:]] == [True] * 3


def test_a_late_puback_of_a_send_before_the_session_loss_is_not_counted(started: Any) -> None:
    publisher, transport, ring = started
    append(ring, 10)
    publisher.flush(force=True)
    old_mid = transport.data()[0][0]  # in flight when the broker restarts
    transport.on().on_disconnected("broker restarted")
    transport.connect(session_present=False)
    transport.message(INGEST, {"state": "online"})
    publisher.flush(force=False)
    new_mid = transport.data()[-1][0]
    assert seqs(transport) == [0, 0] and new_mid != old_mid
    transport.on().on_published(old_mid, None)  # the client library's own resend, answered
    publisher.flush(force=False)
    assert publisher.counters[SPEC.key].acked == 0 and publisher.spool.has_unsent() is False
    transport.on().on_published(new_mid, None)
    publisher.flush(force=False)
    assert publisher.counters[SPEC.key].acked == 10


def test_the_wait_for_an_ingest_worker_is_bounded(started: Any, clock: Clock) -> None:
    publisher, transport, ring = started
    append(ring, 10)
    publisher.flush(force=True)
    transport.connect(session_present=False)
    publisher.flush(force=False)
    assert seqs(transport) == [0]
    clock.now += 30.0  # spool.ingest_wait_s
    publisher.flush(force=False)
    assert seqs(transport) == [0, 0]


def test_a_confirmation_on_the_commit_topic_releases_records(started: Any, clock: Clock) -> None:
    publisher, transport, ring = started
    transport.message(INGEST, {"state": "online"})
    append(ring, 20)
    publisher.flush(force=True)
    transport.answer_all()
    clock.now += 1.0
    publisher.flush(force=False)
    assert publisher.spool.confirming and publisher.spool.records == 2  # acked, unconfirmed
    transport.message(COMMIT, {"c": [[SPEC.key, 0], [SPEC.key, 10]]})
    clock.now += 1.0
    publisher.flush(force=False)
    assert publisher.spool.records == 0 and publisher.spool.unconfirmed_samples() == 0


def test_unconfirmed_records_are_sent_again_after_the_confirm_timeout(started: Any,
                                                                      clock: Clock) -> None:
    publisher, transport, ring = started
    transport.message(INGEST, {"state": "online"})
    append(ring, 20)
    publisher.flush(force=True)
    transport.answer_all()
    publisher.flush(force=False)
    clock.now += 29.0
    publisher.flush(force=False)
    assert len(transport.data()) == 2
    transport.message(COMMIT, {"c": [[SPEC.key, 0]]})
    clock.now += 1.0  # 30 s after the PUBACK: the confirm timeout
    publisher.flush(force=False)
    assert seqs(transport) == [0, 10, 10] and publisher.spool.resent == 1
    assert transport.data()[-1][1]["historical"] is True


def test_a_malformed_control_message_is_counted_not_fatal(started: Any) -> None:
    publisher, transport, ring = started
    transport.on().on_message(Received(COMMIT, b"{not json", 0, 1))
    transport.message(COMMIT, {"c": [["k", "not a number"]]})
    assert metric(publisher, "medgw_malformed_messages_total", source="broker",
                  reason="control_message") == 2
    append(ring, 10)
    publisher.flush(force=True)
    assert seqs(transport) == [0]


def test_stop_drains_everything_and_says_offline(tmp_path: Path, clock: Clock) -> None:
    publisher, transport, ring = make(tmp_path, clock)
    transport.connect()
    transport.auto_ack = True
    append(ring, 35)
    assert publisher.stop(drain_timeout=5) is True
    assert sum(doc["n"] for _, doc in transport.data()) == 35
    assert publisher.counters[SPEC.key].acked == 35
    assert orjson.loads(transport.sent[-1][2])["state"] == "offline" and transport.stopped


def test_stop_keeps_what_the_broker_did_not_acknowledge(tmp_path: Path, clock: Clock) -> None:
    publisher, transport, ring = make(tmp_path, clock)
    transport.connect()
    append(ring, 35)
    assert publisher.stop(drain_timeout=0) is False
    again = Spool(tmp_path / "spool", 1 << 20)
    assert again.recovered == 4 and again.unconfirmed_samples() == 35


def test_a_clean_stop_leaves_no_false_gap_at_the_next_start(tmp_path: Path,
                                                            clock: Clock) -> None:
    store = SeqRingStore(4096, SeqState(tmp_path / "seq.json", step=2000))
    publisher, transport, ring = make(tmp_path, clock, store=store)
    transport.connect()
    transport.auto_ack = True
    append(ring, 1064)
    publisher.flush(force=True)
    assert store.seq_state.reserved[SPEC.key] > 1064  # the reservation runs a step ahead
    assert publisher.stop(drain_timeout=5)
    again = SeqRingStore(4096, SeqState(tmp_path / "seq.json", step=2000))
    assert again.add_stream(SPEC).start_seq == ring.write_seq == 1064


def test_the_loop_survives_an_unexpected_exception(tmp_path: Path, clock: Clock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    publisher, transport, ring = make(tmp_path, clock)
    failures = iter([RuntimeError("bug in a step")] * 3)
    healed = threading.Event()
    real_reserve = publisher.store.reserve_seq

    def flaky(rings: Any = None) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        healed.set()
        real_reserve(rings)

    monkeypatch.setattr(publisher.store, "reserve_seq", flaky)
    transport.connect()
    transport.auto_ack = True
    publisher.start()
    try:
        assert healed.wait(30)
        append(ring, 10)
        wait_until(lambda: publisher.counters.get(SPEC.key) is not None
                   and publisher.counters[SPEC.key].acked == 10, 30, message="a publish")
        health = publisher.health()
        assert health.loop_errors == 3 and health.thread_alive
        assert metric(publisher, "medgw_publisher_errors_total", where="loop") == 3
    finally:
        assert publisher.stop(drain_timeout=5)


def test_health_reports_the_loop_and_the_spool(started: Any) -> None:
    publisher = started[0]
    health = publisher.health()
    assert health.broker_connected and health.epoch == 7 and health.inflight == 0
    assert not health.thread_alive  # never started in this test
    assert health.spool_degraded is None and health.samples_dropped == 0
    assert health.spool_report == ()


def test_health_carries_what_spool_recovery_skipped(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "seg-5.spool").write_bytes(b"stray")
    publisher, _, _ = make(tmp_path, clock)
    (line,) = publisher.health().spool_report
    assert "seg-5.spool: not a segment name" in line
    publisher.stop(drain_timeout=0)


def test_paho_transport_keeps_a_failing_callback_out_of_the_network_loop() -> None:
    loaded = parse_config({"site": "site", "gateway": "gw"})
    transport = PahoTransport(loaded.config.mqtt, "test-client", None)
    errors: list[tuple[str, Exception]] = []

    class Listener:
        def on_message(self, message: Received) -> None:
            raise ValueError(f"cannot handle {message.topic}")

        def on_callback_error(self, callback: str, err: Exception) -> None:
            errors.append((callback, err))

    transport.bind(Listener())  # type: ignore[arg-type]
    message = mqtt.MQTTMessage(mid=3, topic=b"a/b")
    message.payload = b"x"
    transport.client.on_message(transport.client, None, message)  # type: ignore[misc]
    assert [(name, str(err)) for name, err in errors] == [("on_message", "cannot handle a/b")]


def test_with_flush_when_idle_a_stream_is_sent_once_nothing_more_arrives(
        tmp_path: Path, clock: Clock) -> None:
    publisher, transport, ring = make(tmp_path, clock, publisher={"flush_when_idle": True})
    transport.connect()
    try:
        append(ring, 3)
        assert publisher.flush(force=False) == 0  # it grew since the last scan: more may come
        clock.now += 0.01
        append(ring, 2)
        assert publisher.flush(force=False) == 0  # still growing: batching
        clock.now += 0.01
        assert publisher.flush(force=False) == 5  # nothing new since the last scan: sent now
        for _ in range(12):  # a stream that grows at every scan waits for a full batch
            clock.now += 0.01
            append(ring, 1)
            publisher.flush(force=False)
        assert [doc["n"] for _, doc in transport.data()] == [5, 10]  # max_batch_samples 10
    finally:
        publisher.stop(drain_timeout=0)


def test_by_default_a_stream_waits_for_max_latency_even_when_idle(started: Any,
                                                                 clock: Clock) -> None:
    publisher, transport, ring = started
    append(ring, 3)
    assert publisher.flush(force=False) == 0  # the stream's clock starts at its first scan
    for _ in range(3):
        clock.now += 0.03
        assert publisher.flush(force=False) == 0  # 90 ms < max_latency_ms 100
    clock.now += 0.02
    assert publisher.flush(force=False) == 3
    assert [doc["n"] for _, doc in transport.data()] == [3]
