"""Payload decode under hostile input: PayloadError or a batch the ingest can store.

Arbitrary bytes, arbitrary bytes behind the binary magic, byte-mutated valid payloads
(JSON and binary: bytes flipped, inserted, deleted, truncated) and structurally mutated
ones (any key set to any JSON value, big integers included) go through
``gateway.wire.payload.decode``. Never another exception; and whatever decodes encodes
to line protocol and passes the ingest's state machine (fake transport and writer) with
one PUBACK per message, so no payload can stop a worker (issue 13 #1). Budgets are fixed
and derandomized (CI-sized); the counts per probe are printed at the end (``-s``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.model import SampleBatch, StreamKind, StreamSpec, make_batch
from gateway.server.deadletter import DeadLetters
from gateway.server.lineproto import encode_batch
from gateway.server.writeloop import LoopSettings, WriteLoop
from gateway.wire.payload import BINARY_MAGIC, decode, encode, encode_binary
from gateway.wire.topics import data_topic

pytestmark = pytest.mark.hostile

BUDGET = settings(max_examples=300, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
TRIED: Counter[str] = Counter()
DECODED: Counter[str] = Counter()
FAILURES: Counter[str] = Counter()  # anything but PayloadError (must stay 0)

SPECS = [
    StreamSpec("site-a", "psm1", "measured_js", ("j1.position", "j1.velocity"),
               ("rad", "rad/s"), rate_hz=100.0, measurement="joint_state", channel_tag="joint"),
    StreamSpec("site-a", "psm1", "operating_state", ("state",), ("",), kind=StreamKind.EVENT,
               measurement="robot_event", labels=(("ENABLED", 1.0), ("FAULT", 3.0))),
]


@pytest.fixture(scope="module", autouse=True)
def _probe_table() -> Iterator[None]:
    yield
    for probe in sorted(TRIED):
        print(f"\nPROBE payload decode {probe}: {TRIED[probe]} cases, {DECODED[probe]} decoded, "
              f"{FAILURES[probe]} failures")


def check(probe: str, payload: bytes) -> None:
    """decode gives PayloadError or a batch that line protocol and the ingest accept."""
    TRIED[probe] += 1
    try:
        gateway, epoch, batch = decode(payload)
    except PayloadError:
        return
    except Exception:
        FAILURES[probe] += 1
        raise
    DECODED[probe] += 1
    assert 0 < len(gateway) <= 256  # commit topics stay far below MQTT's limit
    assert 0 <= epoch < 2**63 and 0 <= batch.first_seq <= batch.last_seq < 2**63
    body, n_lines = encode_batch(batch)
    assert body.count(b"\n") == n_lines
    through_the_ingest(batch, payload)


class _Transport:
    def __init__(self) -> None:
        self.acks: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        assert len(topic.encode()) <= 65535


class _Writer:
    def write(self, body: bytes, n_lines: int) -> None:
        body.decode("utf-8")

    def close(self) -> None:
        pass


def through_the_ingest(batch: SampleBatch, payload: bytes) -> None:
    """One message through receive -> prepare -> write -> ack."""
    transport = _Transport()
    loop = WriteLoop(LoopSettings(flush_s=0.0), _Writer(), transport,
                     DeadLetters(transport, "dl"))
    assert loop.receive(1, 1, data_topic("medgw/v1", batch.stream), payload)
    loop.process(loop.collect())
    assert transport.acks == [1] and loop.inbox.held_bytes == 0


@st.composite
def batches(draw: st.DrawFn) -> SampleBatch:
    """Valid batches of the sample specs, odd values included."""
    spec = draw(st.sampled_from(SPECS))
    n = draw(st.integers(1, 5))
    values = draw(st.lists(st.floats(width=64), min_size=n * spec.width,
                           max_size=n * spec.width))
    stamps = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    text = tuple(draw(st.text(max_size=8)) for _ in range(n)) if spec.is_event else None
    return make_batch(spec, stamps, np.array(values).reshape(n, spec.width),
                      draw(st.integers(0, 255)), draw(st.integers(0, 2**63 - n)), text=text)


def _dumps(doc: Any) -> bytes:
    """JSON with integers of any size (orjson stops at 64 bits; a sender need not)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        if not out:
            break
        i = where % len(out)
        if kind == 0:
            out[i] ^= value or 1
        elif kind == 1:
            out.insert(i, value)
        elif kind == 2:
            del out[i]
        else:
            del out[i:]
    return bytes(out)


_edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)),
                  min_size=1, max_size=8)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(["v", "gateway", "epoch", "site", "device", "stream", "kind",
                         "measurement", "channel_tag", "rate_hz", "fields", "units", "labels",
                         "seq", "n", "historical", "t", "rx", "q", "values", "text", "extra"])


@BUDGET
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    check("arbitrary bytes", data)


@BUDGET
@given(st.binary(max_size=512))
def test_arbitrary_bytes_behind_the_binary_magic(data: bytes) -> None:
    check("binary magic + bytes", BINARY_MAGIC + data)


@BUDGET
@given(batches(), st.booleans(), _edits)
def test_byte_mutations_of_valid_payloads(batch: SampleBatch, binary: bool,
                                          edits: list[tuple[int, int, int]]) -> None:
    payload = (encode_binary if binary else encode)(batch, "edge-01", 7)
    check("byte-mutated " + ("binary" if binary else "JSON"), _mutate(payload, edits))


@BUDGET
@given(batches(), st.lists(st.tuples(_keys, _json), min_size=1, max_size=3), st.booleans())
def test_structural_mutations(batch: SampleBatch, changes: list[tuple[str, Any]],
                              binary: bool) -> None:
    if binary:
        payload = encode_binary(batch, "edge-01", 7)
        end = payload.index(b"\n", len(BINARY_MAGIC))
        doc = orjson.loads(payload[len(BINARY_MAGIC):end])
        doc.update(changes)
        check("key-mutated binary header", BINARY_MAGIC + _dumps(doc) + payload[end:])
    else:
        doc = orjson.loads(encode(batch, "edge-01", 7))
        doc.update(changes)
        check("key-mutated JSON", _dumps(doc))


@BUDGET
@given(batches(), st.integers(2**63 - 8, 2**64 - 1), st.integers(-(2**64), 2**64))
def test_counters_at_the_int64_edge(batch: SampleBatch, seq: int, epoch: int) -> None:
    doc = orjson.loads(encode(batch, "edge-01"))
    doc.update(seq=seq, epoch=epoch)
    check("seq/epoch at 2**63", _dumps(doc))


def test_valid_payloads_still_decode() -> None:
    """The fuzzing must not pass by refusing everything."""
    for spec in SPECS:
        batch = make_batch(spec, [1, 2], np.ones((2, spec.width)), first_seq=2**63 - 2,
                           text=("a", "b") if spec.is_event else None)
        for payload in (encode(batch, "gw", 2**63 - 1), encode_binary(batch, "gw", 1)):
            assert decode(payload).batch.last_seq == 2**63 - 1
