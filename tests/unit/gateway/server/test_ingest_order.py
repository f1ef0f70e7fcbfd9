"""The ingest acknowledges every message after its batch's write, in arrival order."""

from __future__ import annotations

import numpy as np

from gateway.model import StreamSpec, make_batch
from gateway.server.deadletter import DeadLetters
from gateway.server.writeloop import LoopSettings, WriteLoop
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


class AckingTransport:
    """Records PUBACKs; publishes go nowhere."""

    def __init__(self, acks: list[int]) -> None:
        self.acks = acks

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        pass


def test_duplicates_status_and_garbage_are_acked_in_order_after_the_write() -> None:
    acks: list[int] = []
    writer = RecordingWriter(acks)
    transport = AckingTransport(acks)
    loop = WriteLoop(LoopSettings(batch_lines=100_000, flush_s=0.05), writer, transport,
                     DeadLetters(transport, "dl"))
    topic = data_topic("medgw/v1", SPEC)
    first = encode(make_batch(SPEC, np.arange(3), np.ones((3, 1)), first_seq=0), "gw")
    second = encode(make_batch(SPEC, np.arange(3, 5), np.ones((2, 1)), first_seq=3), "gw")
    for mid, msg_topic, payload in ((1, topic, first),
                                    (2, topic, first),  # a redelivery: no second write
                                    (3, "medgw/v1/site/gw/status", b'{"site": "site", '
                                     b'"gateway": "gw", "state": "online"}'),
                                    (4, topic, b"garbage"),  # quarantined
                                    (5, topic, second)):
        assert loop.receive(mid, 1, msg_topic, payload)
    batch = loop.collect()
    loop.process(batch)
    assert writer.writes == [(5, 0)]  # one write of 3 + 2 lines, before any PUBACK
    assert acks == [1, 2, 3, 4, 5]
    assert loop.stats.duplicates == 3 and loop.stats.malformed == 1
    assert loop.inbox.held_bytes == 0  # every byte released once acknowledged
