"""The ingest state machine with a fake transport and a fake writer (no broker, no InfluxDB).

decode -> prepare -> batch -> write -> ack in arrival order -> commit; hostile messages
(issue 13 #1) are quarantined and acknowledged, never fatal; retries use the shared
Backoff with Retry-After; a refused message is isolated; a dead writer is loud.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from gateway.backoff import Backoff
from gateway.config import parse_config
from gateway.errors import StoreError
from gateway.model import StreamSpec, make_batch
from gateway.server.deadletter import MAX_TOPIC_BYTES, DeadLetters
from gateway.server.ingest import Ingest
from gateway.server.writeloop import LoopSettings, WriteLoop
from gateway.wire.payload import encode, encode_binary
from gateway.wire.topics import data_topic

SPEC = StreamSpec("site", "dev", "js", ("a",), ("",))
TOPIC = data_topic("medgw/v1", SPEC)


class PahoLikeTransport:
    """Records acks and publishes; refuses topics the way paho does (ValueError)."""

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.published: list[tuple[str, bytes]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if not topic or len(topic.encode()) > MAX_TOPIC_BYTES or "+" in topic or "#" in topic:
            raise ValueError("Invalid topic.")
        self.published.append((topic, payload))

    def commits(self) -> list[tuple[str, Any]]:
        return [(t, orjson.loads(p)) for t, p in self.published if "_ctl/commit/" in t]


class FakeWriter:
    """InfluxDB stand-in: fails with the queued errors first, then stores."""

    def __init__(self, errors: list[BaseException] | None = None,
                 refuse: bytes | None = None) -> None:
        self.errors = list(errors or [])
        self.refuse = refuse  # a body containing this is refused with HTTP 400
        self.bodies: list[bytes] = []

    def write(self, body: bytes, n_lines: int) -> None:
        if self.errors:
            raise self.errors.pop(0)
        if self.refuse is not None and self.refuse in body:
            raise StoreError("HTTP 400 partial write", status=400, retryable=False)
        self.bodies.append(body)

    def close(self) -> None:
        pass

    def lines(self) -> int:
        return sum(body.count(b"\n") for body in self.bodies)


class RecordingBackoff(Backoff):
    """The shared Backoff with tiny delays, recording the Retry-After it was given."""

    def __init__(self) -> None:
        super().__init__(0.001, 0.001)
        self.given: list[float | None] = []

    def next(self, retry_after: float | None = None) -> float:
        self.given.append(retry_after)
        return min(super().next(retry_after), 0.001)


def make_loop(writer: FakeWriter, tmp_path: Path | None = None,
              **settings: Any) -> tuple[WriteLoop, PahoLikeTransport]:
    transport = PahoLikeTransport()
    dead = DeadLetters(transport, "medgw/deadletter/v1",
                       None if tmp_path is None else tmp_path / "dead.jsonl")
    loop = WriteLoop(LoopSettings(flush_s=0.01, **settings), writer, transport, dead,
                     backoff=RecordingBackoff())
    return loop, transport


def payload(first: int, n: int, gateway: str = "gw", epoch: int = 1) -> bytes:
    return encode(make_batch(SPEC, np.arange(first, first + n), np.ones((n, 1)),
                             first_seq=first), gateway, epoch)


def drain(loop: WriteLoop) -> None:
    """Run the writer until everything queued is written and acknowledged."""
    while len(loop.inbox):
        loop.process(loop.collect())


def hostile_messages() -> list[tuple[str, bytes]]:
    """Issue 13 #1: each once stopped the ingest for good."""
    big_seq = orjson.loads(payload(0, 1))
    big_seq["seq"] = 2**63
    binary = encode_binary(make_batch(SPEC, [1], [[1.0]]), "gw").replace(
        b'"seq":0', b'"seq":9223372036854775808', 1)
    long_gateway = orjson.loads(payload(0, 1))
    long_gateway["gateway"] = "g" * 65_600
    return [
        (TOPIC, orjson.dumps(big_seq)),
        (TOPIC, binary),
        (TOPIC, orjson.dumps(long_gateway)),
        ("medgw/v1/" + "x" * 65_520, b"\xff garbage"),
        (TOPIC, b"\x00" * 1000),
    ]


def test_hostile_messages_are_quarantined_and_the_worker_goes_on() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    for mid, (topic, body) in enumerate(hostile_messages(), start=1):
        assert loop.receive(mid, 1, topic, body)
    loop.receive(99, 1, TOPIC, payload(0, 200))
    drain(loop)
    assert loop.stats.malformed == 5 and loop.stats.samples == 200
    assert writer.lines() == 200
    assert transport.acks == [1, 2, 3, 4, 5, 99]
    dead_topics = [t for t, _ in transport.published if t.startswith("medgw/deadletter/")]
    assert len(dead_topics) == 5 and "medgw/deadletter/v1/_too_long" in dead_topics
    assert loop.dead_letters.failures == 0


def test_commits_name_each_data_message_after_the_ack() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, payload(0, 10))
    loop.receive(2, 1, TOPIC, payload(10, 10))
    drain(loop)
    assert transport.commits() == [("medgw/v1_ctl/commit/site/gw",
                                    {"c": [["site/dev/js", 0], ["site/dev/js", 10]]})]


def test_transient_errors_retry_with_the_shared_backoff_and_retry_after() -> None:
    errors = [StoreError("503", status=503, retryable=True, retry_after_s=2.5),
              StoreError("refused", retryable=True)]
    writer = FakeWriter(errors)
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, payload(0, 5))
    batch = loop.collect()
    loop.process(batch)
    assert isinstance(loop._backoff, RecordingBackoff)
    assert loop._backoff.given == [2.5, None]  # Retry-After honoured, then computed
    assert loop.stats.retries == 2 and writer.lines() == 5 and transport.acks == [1]
    assert loop.store_error is None  # cleared by the successful write


def test_store_error_is_visible_while_failing_and_stop_leaves_messages_unacked() -> None:
    writer = FakeWriter([StoreError("down", retryable=True)] * 1000)
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, payload(0, 5))
    batch = loop.collect()
    stopper = threading.Timer(0.05, loop.stop)
    stopper.start()
    loop.process(batch)
    stopper.join()
    assert loop.store_error is not None and "down" in loop.store_error
    assert transport.acks == []  # not written: the broker redelivers
    assert loop.inbox.held_bytes == 0


def test_a_refused_message_is_isolated_and_quarantined() -> None:
    bad = make_batch(StreamSpec("site", "dev", "js", ("b",), ("",)), [7], [[1.0]])
    bad_payload = encode(bad, "gw")
    writer = FakeWriter(refuse=b" b=1.0")
    loop, transport = make_loop(writer, batch_lines=100)
    loop.receive(1, 1, TOPIC, payload(0, 3))
    loop.receive(2, 1, TOPIC, bad_payload)
    loop.receive(3, 1, TOPIC, payload(3, 3))
    drain(loop)
    assert writer.lines() == 6 and loop.stats.samples == 6 and loop.stats.malformed == 1
    assert transport.acks == [1, 2, 3]


def test_413_splits_the_body() -> None:
    writer = FakeWriter([StoreError("too large", status=413, retryable=False)])
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, payload(0, 8))
    drain(loop)
    assert len(writer.bodies) == 2 and writer.lines() == 8
    assert loop.stats.samples == 8 and transport.acks == [1]


def test_messages_of_an_earlier_connection_are_written_not_acked() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, payload(0, 4))
    loop.generation += 1  # the broker connection was re-established meanwhile
    loop.receive(1, 1, TOPIC, payload(4, 4))
    drain(loop)
    assert writer.lines() == 8 and transport.acks == [1] and loop.stats.stale_acks == 1


def test_spoofed_epoch_and_cloned_gateway_lose_nothing() -> None:
    """Issue 13 #3 at the state machine: identity is (gateway, epoch, stream)."""
    writer = FakeWriter()
    loop, _ = make_loop(writer, batch_lines=100_000)
    loop.receive(1, 1, TOPIC, payload(2000, 1000, "gw", epoch=666))  # the stranger
    mid = 2
    for lo in range(0, 3000, 100):
        loop.receive(mid, 1, TOPIC, payload(lo, 100, "gw", epoch=42))
        loop.receive(mid + 1, 1, TOPIC, payload(lo, 100, "gw", epoch=43))  # a clone
        mid += 2
    drain(loop)
    assert loop.stats.duplicates == 0
    assert loop.stats.samples == 1000 + 3000 + 3000


def test_a_dead_writer_is_loud(tmp_path: Path) -> None:
    loaded = parse_config({"site": "site", "gateway": "gw",
                           "influxdb": {"flush_ms": 10}, "ingest": {"record_gaps": False}})
    ingest = Ingest(loaded, writer=FakeWriter([RuntimeError("boom")]))  # type: ignore[arg-type]
    ingest.loop.receive(1, 1, TOPIC, payload(0, 3))
    ingest._run()  # the writer thread's body, here in the test's thread
    assert ingest.failed.is_set() and ingest.failure is not None and "boom" in ingest.failure
    report = ingest.health()
    assert report["status"] == "failed"
    assert any("writer died" in problem for problem in report["problems"])


def test_health_and_metrics_tell_the_truth() -> None:
    from prometheus_client import generate_latest

    from gateway.server.status import registry_for

    loaded = parse_config({"site": "site", "gateway": "gw"})
    ingest = Ingest(loaded, writer=FakeWriter())  # type: ignore[arg-type]
    assert ingest.health()["status"] == "degraded"  # not connected, no writer yet
    ingest._thread = threading.current_thread()  # alive
    ingest.connected.set()
    ingest.subscribed.set()
    assert ingest.health()["status"] == "ok", ingest.health()
    ingest.loop.store_error = "HTTP 503"
    report = ingest.health()
    assert report["status"] == "degraded" and "InfluxDB failing: HTTP 503" in report["problems"]
    ingest.loop.store_error = None
    ingest.connected.clear()
    assert ingest.health()["status"] == "degraded"
    text = generate_latest(registry_for(ingest)).decode()
    assert "medgw_ingest_broker_connected 0.0" in text
    assert "medgw_ingest_samples_written_total 0.0" in text
    assert "medgw_ingest_queue_bytes 0.0" in text


def test_dead_letter_topic_under_the_data_prefix_is_refused() -> None:
    from gateway.errors import ConfigError

    loaded = parse_config({"site": "site", "gateway": "gw",
                           "ingest": {"dead_letter_topic": "medgw/v1/dead"}})
    with pytest.raises(ConfigError, match=r"ingest\.dead_letter_topic"):
        Ingest(loaded, writer=FakeWriter())  # type: ignore[arg-type]


class FakeTransport(PahoLikeTransport):
    """The whole wire.transport.Transport protocol, without a broker."""

    def __init__(self) -> None:
        super().__init__()
        self.listener: Any = None
        self.subscriptions: list[list[tuple[str, int]]] = []
        self.will: tuple[str, bytes] | None = None
        self.started = self.stopped = False

    def bind(self, listener: Any) -> None:
        self.listener = listener

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self.will = (topic, payload)

    def start(self) -> None:
        self.started = True

    def subscribe(self, topics: Any) -> int:
        self.subscriptions.append(list(topics))
        return 1

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        super().publish(topic, payload, qos, retain)
        mid = len(self.published)
        if self.listener is not None:
            self.listener.on_published(mid, None)  # the broker acknowledges at once
        return mid

    def stop(self) -> None:
        self.stopped = True


def test_ingest_over_a_fake_transport() -> None:
    """The Ingest as a TransportListener: subscribe on connect, announce, write, ack, stop."""
    from gateway.wire.transport import Received

    loaded = parse_config({"site": "site", "gateway": "gw", "influxdb": {"flush_ms": 10},
                           "ingest": {"record_gaps": False, "client_id": "w1"}})
    transport = FakeTransport()
    writer = FakeWriter()
    ingest = Ingest(loaded, writer=writer, transport=transport)  # type: ignore[arg-type]
    assert transport.listener is ingest and transport.will is not None
    ingest.start()
    ingest.on_connected(False)
    assert transport.subscriptions == [[("$share/medgw/medgw/v1/#", 1)]]
    ingest.on_subscribed(1, None)
    ingest.wait_subscribed(1)
    assert transport.published[0][0] == "medgw/v1_ctl/ingest/w1/status"
    ingest.on_message(Received(TOPIC, payload(0, 5), mid=7, qos=1))
    ingest.stop()
    assert transport.acks == [7] and writer.lines() == 5 and transport.stopped
    assert orjson.loads(transport.published[-1][1])["state"] == "offline"


def test_a_callback_error_is_fatal_and_loud() -> None:
    loaded = parse_config({"site": "site", "gateway": "gw"})
    transport = FakeTransport()
    ingest = Ingest(loaded, writer=FakeWriter(), transport=transport)  # type: ignore[arg-type]
    ingest.on_callback_error("on_message", RuntimeError("bug"))
    assert ingest.failed.is_set() and ingest.health()["status"] == "failed"
    assert transport.stopped  # the broker hands our messages to other workers


@pytest.mark.parametrize("topic", ["dl/+/x", "dl/#", "$SYS/dl", "dl//x", "dl\x00"])
def test_dead_letter_topic_is_checked_at_config_load(topic: str) -> None:
    """`config check` refuses what the broker would refuse at the first dead letter."""
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"site": "site", "gateway": "gw", "ingest": {"dead_letter_topic": topic}})
    assert info.value.key == "ingest.dead_letter_topic"


def test_medgw_ingest_exits_non_zero_when_the_worker_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed worker ends `medgw ingest` with exit code 1 (systemd restarts it)."""
    import yaml
    from typer.testing import CliRunner

    import gateway.server.ingest as ingest_module
    from gateway.ops.cli import app
    from gateway.server.writeloop import IngestStats

    class FailingIngest:
        def __init__(self, loaded: Any) -> None:
            self.failed = threading.Event()
            self.failure: str | None = None
            self.on_failure: Any = None
            self.stats = IngestStats()

        def start(self) -> None:
            threading.Timer(0.05, self.fail).start()

        def fail(self) -> None:
            self.failure = "writer: RuntimeError: boom"
            self.failed.set()
            if self.on_failure is not None:
                self.on_failure()

        def wait_subscribed(self, timeout: float) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(ingest_module, "Ingest", FailingIngest)
    config = tmp_path / "ingest.yaml"
    config.write_text(yaml.safe_dump({"site": "s", "gateway": "g"}), encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", "-c", str(config)])
    assert result.exit_code == 1, result.output
    assert "ingest worker failed: writer: RuntimeError: boom" in result.output
