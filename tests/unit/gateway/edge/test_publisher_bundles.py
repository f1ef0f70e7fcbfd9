"""Bundles in the publisher: one record and one message per device and scan, counted per stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.edge.publisher import MqttPublisher
from gateway.model import StreamSpec
from gateway.ring import RingStore, StreamRing
from gateway.wire.bundle import bundle_key, decode_bundle, is_bundle
from gateway.wire.payload import Decoded, decode
from gateway.wire.transport import Refusal
from tests.unit.gateway.edge.test_publisher import COMMIT, INGEST, Clock, FakeTransport, make

ARM = StreamSpec("site", "dev", "arm", ("x", "y"), ("m", "m"), rate_hz=100.0)
OTHER = StreamSpec("site", "other", "temp", ("t",), ("C",), rate_hz=1.0)


def build(tmp_path: Path, **overrides: Any) -> tuple[MqttPublisher, FakeTransport,
                                                     dict[str, StreamRing]]:
    store = RingStore(4096)
    publisher, transport, joints = make(tmp_path, Clock(), store,
                                        publisher={"bundle": True, **overrides})
    rings = {"joints": joints, "arm": store.add_stream(ARM), "temp": store.add_stream(OTHER)}
    return publisher, transport, rings


def fill(ring: StreamRing, n: int) -> None:
    start = ring.write_seq
    width = len(ring.stream.fields)
    ring.append(np.arange(start, start + n, dtype=np.int64) * 1000,
                np.full((n, width), 1.5), np.zeros(n, np.uint8))


def data(transport: FakeTransport) -> list[tuple[int, str, bytes]]:
    return [(mid, topic, payload) for mid, topic, payload, _ in transport.sent
            if topic.startswith("medgw/v1/") and not topic.endswith("/status")]


def parts_of(payload: bytes) -> list[Decoded]:
    """The decoded parts of a bundle, or the one payload of a plain message."""
    if not is_bundle(payload):
        return [decode(payload)]
    return [p for p in decode_bundle(payload) if isinstance(p, Decoded)]


def test_one_message_per_device_and_scan(tmp_path: Path) -> None:
    publisher, transport, rings = build(tmp_path)
    transport.connect()
    fill(rings["joints"], 3)
    fill(rings["arm"], 25)  # three batches of at most 10
    fill(rings["temp"], 1)
    assert publisher.flush(force=False) == 29  # nothing waits for max_latency_ms
    (_, bundle_topic, bundle), (_, plain_topic, plain) = data(transport)
    assert bundle_topic == "medgw/v1/site/dev" and plain_topic == "medgw/v1/site/other/temp"
    parts = [p for p in decode_bundle(bundle) if isinstance(p, Decoded)]
    assert [(p.batch.stream.stream, p.batch.first_seq, len(p.batch)) for p in parts] == [
        ("joints", 0, 3), ("arm", 0, 10), ("arm", 10, 10), ("arm", 20, 5)]
    assert orjson.loads(plain)["stream"] == "temp"
    assert publisher.spool.records == 2
    publisher.stop(drain_timeout=0)


def test_acks_and_confirmations_count_per_stream(tmp_path: Path) -> None:
    publisher, transport, rings = build(tmp_path)
    transport.connect()
    transport.message(INGEST, {"state": "online"})
    fill(rings["joints"], 4)
    fill(rings["arm"], 6)
    publisher.flush(force=False)
    ((mid, _, _),) = data(transport)
    transport.on().on_published(mid, None)
    publisher.flush(force=False)
    assert publisher.counters["site/dev/joints"].acked == 4
    assert publisher.counters["site/dev/arm"].acked == 6
    assert publisher.spool.unconfirmed_samples() == 10
    key = bundle_key([("site/dev/joints", 4), ("site/dev/arm", 6)])
    transport.message(COMMIT, {"c": [[key, 0]]})  # what the ingest sends for the bundle
    publisher.flush(force=False)
    assert publisher.spool.unconfirmed_samples() == 0
    publisher.stop(drain_timeout=0)


def test_a_replayed_bundle_is_historical_in_every_part(tmp_path: Path) -> None:
    publisher, transport, rings = build(tmp_path)
    fill(rings["joints"], 2)
    fill(rings["arm"], 2)
    publisher.flush(force=False)  # not connected: spooled for replay
    assert data(transport) == []
    transport.connect()
    publisher.flush(force=False)
    ((_, _, payload),) = data(transport)
    flags = [p.batch.historical for p in decode_bundle(payload) if isinstance(p, Decoded)]
    assert flags == [True, True]
    publisher.stop(drain_timeout=0)


def test_a_bundle_closes_at_its_size_cap(tmp_path: Path) -> None:
    publisher, transport, rings = build(tmp_path, max_bundle_bytes=1024)
    transport.connect()
    fill(rings["arm"], 100)  # ten parts of about 400 bytes
    publisher.flush(force=False)
    sizes = [len(payload) for _, _, payload in data(transport)]
    assert len(sizes) >= 3 and all(size < 1024 + 600 for size in sizes)
    seqs = [p.batch.first_seq for _, _, payload in data(transport) for p in parts_of(payload)]
    assert seqs == list(range(0, 100, 10))
    publisher.stop(drain_timeout=0)


def test_a_refused_bundle_counts_its_drops_per_stream(tmp_path: Path) -> None:
    publisher, transport, rings = build(tmp_path)
    transport.connect()
    fill(rings["joints"], 3)
    fill(rings["arm"], 5)
    publisher.flush(force=False)
    ((mid, _, _),) = data(transport)
    transport.on().on_published(mid, Refusal("not authorized", transient=False))
    publisher.flush(force=False)
    registry = publisher.metrics.registry
    dropped = {stream: registry.get_sample_value(
        "medgw_samples_dropped_total", {"stream": stream, "reason": "refused"})
        for stream in ("site/dev/joints", "site/dev/arm")}
    assert dropped == {"site/dev/joints": 3.0, "site/dev/arm": 5.0}
    publisher.stop(drain_timeout=0)
