"""Bundles at the ingest (several streams of one device in one message) and the idle write.

A bundle is decoded part by part: each good part is written, tracked and counted on its
own, a bad part is quarantined alone, the record is confirmed under its composite key. With
``flush_s`` 0 the writer writes as soon as the inbox is empty. Fake writer and transport;
assertions on events and counters, never on wall time.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import StreamSpec, make_batch
from gateway.server.decoding import Pending, decode_message
from gateway.server.writeloop import LoopSettings, WriteLoop
from gateway.wire.bundle import bundle_key, encode_bundle
from gateway.wire.payload import ENCODERS, encode
from gateway.wire.topics import bundle_topic, data_topic
from tests.helpers import wait_until
from tests.unit.gateway.server.test_writeloop import FakeWriter, PahoLikeTransport, make_loop

STREAMS = [StreamSpec("site", "cart", name, ("x", "y"), ("", ""), measurement="cart")
           for name in ("pose", "battery", "load")]
TOPIC = bundle_topic("medgw/v1", "site", "cart")
COMMIT = "medgw/v1_ctl/commit/site/gw"


def part(spec: StreamSpec, first: int, n: int, encoding: str = "json", gateway: str = "gw",
         epoch: int = 1) -> bytes:
    """One v1 payload of ``n`` samples from seq ``first`` (distinct timestamps)."""
    seqs = np.arange(first, first + n)
    values = np.column_stack([seqs * 1.0, seqs * 2.0])
    return ENCODERS[encoding](make_batch(spec, seqs * 1000, values, first_seq=first),
                              gateway, epoch)


def lines_of(writer: FakeWriter, stream: str) -> int:
    return sum(body.count(f",stream={stream} ".encode()) for body in writer.bodies)


def commits(transport: Any) -> list[list[Any]]:
    return [c for topic, doc in transport.commits() if topic == COMMIT for c in doc["c"]]


def drain(loop: WriteLoop) -> None:
    """Write and acknowledge what is queued, then send the confirmations held back."""
    while len(loop.inbox):
        loop.process(loop.collect())
    loop.send_commits(force=True)


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_a_bundle_becomes_lines_per_stream_one_write_and_its_composite_commit(
        encoding: str) -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    sizes = (3, 1, 2)
    parts = [part(spec, 10, n, encoding) for spec, n in zip(STREAMS, sizes, strict=True)]
    assert loop.receive(5, 1, TOPIC, encode_bundle(parts))
    drain(loop)
    assert len(writer.bodies) == 1 and writer.lines() == 6
    assert [lines_of(writer, s.stream) for s in STREAMS] == list(sizes)
    assert loop.stats.by_stream == {"site/cart/pose": 3, "site/cart/battery": 1,
                                    "site/cart/load": 2}
    assert loop.stats.messages == 1 and loop.stats.samples == 6 and loop.stats.malformed == 0
    assert transport.acks == [5]
    key = bundle_key([(s.key, n) for s, n in zip(STREAMS, sizes, strict=True)])
    assert key == "site/cart/pose|3,site/cart/battery|1,site/cart/load|2"
    assert commits(transport) == [[key, 10]]


def test_duplicates_are_tracked_per_part() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    pose, battery = STREAMS[:2]
    loop.receive(1, 1, TOPIC, encode_bundle([part(pose, 0, 4), part(battery, 0, 2)]))
    drain(loop)
    # a redelivery of the first part with a new second part
    loop.receive(2, 1, TOPIC, encode_bundle([part(pose, 0, 4), part(battery, 2, 3)]))
    drain(loop)
    assert loop.stats.duplicates == 4
    assert loop.stats.by_stream == {"site/cart/pose": 4, "site/cart/battery": 5}
    # the same bundle once more: nothing new, no write, still acknowledged and confirmed
    writes = len(writer.bodies)
    loop.receive(3, 1, TOPIC, encode_bundle([part(pose, 0, 4), part(battery, 2, 3)]))
    drain(loop)
    assert len(writer.bodies) == writes and loop.stats.duplicates == 4 + 7
    assert transport.acks == [1, 2, 3]
    second = bundle_key([(pose.key, 4), (battery.key, 3)])
    assert commits(transport) == [[bundle_key([(pose.key, 4), (battery.key, 2)]), 0],
                                  [second, 0], [second, 0]]


def test_a_bad_part_is_quarantined_alone() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    broken = orjson.loads(part(STREAMS[1], 0, 2))
    broken["seq"] = -5
    bundle = encode_bundle([part(STREAMS[0], 7, 3), orjson.dumps(broken),
                            part(STREAMS[2], 7, 2)])
    loop.receive(1, 1, TOPIC, bundle)
    drain(loop)
    assert loop.stats.malformed == 1
    assert [lines_of(writer, s.stream) for s in STREAMS] == [3, 0, 2]
    assert loop.stats.by_stream == {"site/cart/pose": 3, "site/cart/load": 2}
    dead = [orjson.loads(p) for t, p in transport.published if t.startswith("medgw/deadletter/")]
    assert len(dead) == 1 and dead[0]["topic"] == TOPIC
    assert dead[0]["reason"].startswith("bundle part 1 of 3: ")
    assert transport.acks == [1]
    assert commits(transport) == [[bundle_key([(STREAMS[0].key, 3), (STREAMS[2].key, 2)]), 7]]


def test_many_bad_parts_make_one_dead_letter() -> None:
    """A bundle of many broken parts is one dead letter (each part counted), not one copy of
    the bundle's head per part."""
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    parts = [part(STREAMS[0], 0, 1)] + [b'{"v": 1}'] * 500
    loop.receive(1, 1, TOPIC, encode_bundle(parts))
    drain(loop)
    assert loop.stats.malformed == 500 and writer.lines() == 1
    dead = [orjson.loads(p) for t, p in transport.published if t.startswith("medgw/deadletter/")]
    assert len(dead) == 1 and dead[0]["reason"].startswith("bundle part 1 of 501: ")
    assert commits(transport) == [[bundle_key([(STREAMS[0].key, 1)]), 0]]


def test_a_bad_binary_part_is_quarantined_alone() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    good = part(STREAMS[0], 0, 2, "binary")
    bundle = encode_bundle([good, good[:-3]])  # the second part's arrays are cut short
    loop.receive(1, 1, TOPIC, bundle)
    drain(loop)
    assert loop.stats.malformed == 1 and writer.lines() == 2
    assert commits(transport) == [[bundle_key([(STREAMS[0].key, 2)]), 0]]


@pytest.mark.parametrize(("topic", "parts", "reason"), [
    (bundle_topic("medgw/v1", "site", "other"), [part(STREAMS[0], 0, 1)],
     "does not match the bundle's device"),
    (data_topic("medgw/v1", STREAMS[0]), [part(STREAMS[0], 0, 1)],
     "does not match the bundle's device"),
    (TOPIC, [part(STREAMS[0], 0, 1), part(StreamSpec("site", "van", "pose", ("x", "y"),
                                                     ("", "")), 0, 1)], "must share"),
    (TOPIC, [part(STREAMS[0], 0, 1), part(STREAMS[1], 0, 1, gateway="other")], "must share"),
    (TOPIC, [part(STREAMS[0], 0, 1), part(STREAMS[1], 0, 1, epoch=2)], "must share"),
    (TOPIC, [b'{"v": 1}', b"[]"], "none of its 2 parts decoded"),
])
def test_a_misrouted_or_mixed_bundle_is_quarantined_whole(topic: str, parts: list[bytes],
                                                          reason: str) -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    loop.receive(1, 1, topic, encode_bundle(parts))
    drain(loop)
    assert loop.stats.malformed == 1 and writer.bodies == [] and commits(transport) == []
    dead = [orjson.loads(p) for t, p in transport.published if t.startswith("medgw/deadletter/")]
    assert len(dead) == 1 and reason in dead[0]["reason"], dead
    assert transport.acks == [1]


def test_a_single_payload_on_a_bundle_topic_is_quarantined() -> None:
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    loop.receive(1, 1, TOPIC, part(STREAMS[0], 0, 1))
    loop.receive(2, 1, TOPIC, b"[not json")
    drain(loop)
    assert loop.stats.malformed == 2 and writer.bodies == [] and transport.acks == [1, 2]


def test_the_inbox_counts_every_part() -> None:
    loop, _ = make_loop(FakeWriter())
    parts = [part(spec, 0, 100) for spec in STREAMS]
    one = Pending(0, 1, TOPIC, encode_bundle(parts[:1]))
    three = Pending(0, 1, TOPIC, encode_bundle(parts))
    decode_message(one, loop.settings.prefix)
    decode_message(three, loop.settings.prefix)
    assert len(one.batches) == 1 and len(three.batches) == 3
    arrays = sum(b.values.nbytes + b.timestamps_ns.nbytes for b in three.batches)
    loop.receive(1, 1, TOPIC, encode_bundle(parts))
    assert loop.inbox.held_bytes >= arrays + len(three.lines)


def idle_loop(flush_s: float, batch_lines: int = 5000) -> tuple[WriteLoop, FakeWriter]:
    writer = FakeWriter()
    loop, _ = make_loop(writer, batch_lines=batch_lines)
    loop.settings = LoopSettings(flush_s=flush_s, batch_lines=batch_lines)
    return loop, writer


def single(first: int) -> bytes:
    spec = StreamSpec("site", "dev", "js", ("a",), ("",))
    return encode(make_batch(spec, [first], [[1.0]], first_seq=first), "gw")


SINGLE_TOPIC = data_topic("medgw/v1", StreamSpec("site", "dev", "js", ("a",), ("",)))


def test_with_flush_zero_what_is_queued_is_written_at_once() -> None:
    loop, writer = idle_loop(0.0)
    for seq in range(3):
        loop.receive(seq + 1, 1, SINGLE_TOPIC, single(seq))
    batch = loop.collect()  # the three queued: gathered without waiting for a fourth
    assert [item.mid for item in batch] == [1, 2, 3]
    loop.process(batch)
    assert len(writer.bodies) == 1 and writer.lines() == 3


def test_with_flush_zero_an_idle_writer_writes_each_message_alone() -> None:
    """Each message is written before the next one is sent: the writer never held one back
    to wait for more (with the old 500 ms rule both would share one write)."""
    loop, writer = idle_loop(0.0)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        for seq in range(3):
            loop.receive(seq + 1, 1, SINGLE_TOPIC, single(seq))
            wait_until(lambda: loop.stats.samples == seq + 1, 10,  # noqa: B023 (waited here)
                       message=f"write {seq + 1}")
    finally:
        loop.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert [body.count(b"\n") for body in writer.bodies] == [1, 1, 1]
    assert loop.stats.writes == 3 and loop.stats.samples == 3


def test_with_flush_above_zero_the_writer_waits_to_fill_the_budget() -> None:
    """Today's rule kept for flush_ms > 0: a message sent while the writer waits joins the
    batch of the one before it (the budget of 2 lines ends the wait, not the clock)."""
    loop, _ = idle_loop(600.0, batch_lines=2)
    loop.receive(1, 1, SINGLE_TOPIC, single(0))
    got: list[list[Pending]] = []
    collector = threading.Thread(target=lambda: got.append(loop.collect()), daemon=True)
    collector.start()
    wait_until(lambda: len(loop.inbox) == 0, 10, message="the first message taken")
    loop.receive(2, 1, SINGLE_TOPIC, single(1))
    collector.join(30)
    assert not collector.is_alive() and [item.mid for item in got[0]] == [1, 2]


def test_flush_ms_defaults_to_write_when_idle() -> None:
    from gateway.config import parse_config
    from gateway.server.ingest import Ingest

    loaded = parse_config({"site": "site", "gateway": "gw"})
    assert loaded.config.influxdb.flush_ms == 0
    ingest = Ingest(loaded, writer=FakeWriter())
    assert ingest.loop.settings.flush_s == 0


def test_a_device_named_status_is_data_not_a_gateway_status() -> None:
    """Its bundle topic ends in /status one level above a gateway's status topic."""
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    spec = StreamSpec("site", "status", "pose", ("x", "y"), ("", ""))
    loop.receive(1, 1, bundle_topic("medgw/v1", "site", "status"),
                 encode_bundle([part(spec, 0, 2)]))
    loop.receive(2, 1, "medgw/v1/site/gw/status",
                 b'{"site": "site", "gateway": "gw", "state": "online"}')
    drain(loop)
    assert loop.stats.malformed == 0 and writer.lines() == 2
    assert loop.stats.status_messages == 1 and loop.stats.gateways == {"site/gw": "online"}
    assert transport.acks == [1, 2]


def test_commits_after_a_quiet_spell_go_at_once_later_ones_together() -> None:
    """One write per message (flush_s 0) does not cost one commit message per message: the
    first confirmation goes out with its write, the next ones are held (here for an hour)
    and sent together, at the latest when the writer stops."""
    loop, writer = idle_loop(0.0)
    loop.settings.commit_every_s = 3600.0
    transport = loop.transport
    assert isinstance(transport, PahoLikeTransport)
    loop.receive(1, 1, SINGLE_TOPIC, single(0))
    loop.process(loop.collect())
    assert len(transport.commits()) == 1  # at once
    for seq in (1, 2):
        loop.receive(seq + 1, 1, SINGLE_TOPIC, single(seq))
        loop.process(loop.collect())
    assert len(writer.bodies) == 3 and transport.acks == [1, 2, 3]
    assert len(transport.commits()) == 1  # written and acknowledged, confirmation held
    loop.stop()
    loop.run()  # drains (nothing left) and returns: stopped
    assert [doc["c"] for _, doc in transport.commits()] == [
        [["site/dev/js", 0]], [["site/dev/js", 1], ["site/dev/js", 2]]]


def test_the_writer_sends_held_commits_without_further_messages() -> None:
    loop, _ = idle_loop(0.0)
    loop.settings.commit_every_s = 0.05
    transport = loop.transport
    assert isinstance(transport, PahoLikeTransport)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        for seq in range(3):
            loop.receive(seq + 1, 1, SINGLE_TOPIC, single(seq))
        wait_until(lambda: sum(len(doc["c"]) for _, doc in transport.commits()) == 3, 10,
                   message="every record confirmed")
        assert loop.stop_event.is_set() is False  # sent by the running writer, not by stop
    finally:
        loop.stop()
        thread.join(10)
    assert [c for _, doc in transport.commits() for c in doc["c"]] == [
        ["site/dev/js", seq] for seq in range(3)]


@settings(max_examples=200, deadline=None)
@given(encoding=st.sampled_from(["json", "binary"]), data=st.data())
def test_a_mangled_bundle_never_stops_the_worker(encoding: str, data: st.DataObject) -> None:
    """Flipped, cut or inserted bytes anywhere: the message is written, partly written or
    quarantined, always acknowledged, and the worker goes on."""
    bundle = bytearray(encode_bundle([part(spec, 0, 2, encoding) for spec in STREAMS]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(bundle) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            bundle[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del bundle[at:at + data.draw(st.integers(1, 40))]
        else:
            bundle[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        if not bundle:
            bundle = bytearray(b"[")
    writer = FakeWriter()
    loop, transport = make_loop(writer)
    assert loop.receive(1, 1, TOPIC, bytes(bundle))
    loop.receive(2, 1, TOPIC, encode_bundle([part(STREAMS[0], 100, 1, encoding)]))
    drain(loop)
    assert transport.acks == [1, 2]
    assert loop.stats.malformed >= 1 or writer.lines() > 1
    assert lines_of(writer, "pose") >= 1  # the next message is written whatever came before
