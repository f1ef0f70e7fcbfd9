"""The ingest acknowledges every message after its batch's write, in arrival order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import paho.mqtt.client as mqtt

from gateway.config import parse_config
from gateway.model import StreamSpec, make_batch
from gateway.server.ingest import Ingest
from gateway.wire.payload import encode
from gateway.wire.topics import data_topic

SPEC = StreamSpec("site", "dev", "js", ("a",), ("",))


class RecordingWriter:
    """Stands in for InfluxDB: records each write and the acks sent before it."""

    def __init__(self, acks: list[int]) -> None:
        self.acks = acks
        self.writes: list[tuple[int, int]] = []  # (lines, acks already sent)

    def write(self, body: bytes, n_lines: int) -> None:
        self.writes.append((n_lines, len(self.acks)))

    def close(self) -> None:
        pass


def message(mid: int, topic: str, payload: bytes) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = payload
    msg.qos = 1
    return msg


def test_duplicates_status_and_garbage_are_acked_in_order_after_the_write() -> None:
    loaded = parse_config({"site": "site", "gateway": "gw",
                           "influxdb": {"flush_ms": 50, "batch_lines": 100_000}})
    acks: list[int] = []
    writer = RecordingWriter(acks)
    ingest = Ingest(loaded, writer=writer)
    ingest.client = SimpleNamespace(  # type: ignore[assignment]
        ack=lambda mid, qos: acks.append(mid), publish=lambda *a, **k: None)
    topic = data_topic("medgw/v1", SPEC)
    first = encode(make_batch(SPEC, np.arange(3), np.ones((3, 1)), first_seq=0), "gw")
    second = encode(make_batch(SPEC, np.arange(3, 5), np.ones((2, 1)), first_seq=3), "gw")
    for mid, msg_topic, payload in ((1, topic, first),
                                    (2, topic, first),  # a redelivery: no second write
                                    (3, "medgw/v1/site/gw/status", b'{"site": "site", '
                                     b'"gateway": "gw", "state": "online"}'),
                                    (4, topic, b"garbage"),  # quarantined
                                    (5, topic, second)):
        ingest._on_message(None, None, message(mid, msg_topic, payload))  # type: ignore[arg-type]
    batch = ingest._collect()
    ingest._process(batch)
    assert writer.writes == [(5, 0)]  # one write of 3 + 2 lines, before any PUBACK
    assert acks == [1, 2, 3, 4, 5]
    assert ingest.stats.duplicates == 3 and ingest.stats.malformed == 1
