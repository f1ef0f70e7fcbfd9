"""Wire payload: round trip, JSON Schema validity of real payloads, malformed input rejected."""

from __future__ import annotations

import math

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.model import SampleBatch, StreamKind, StreamSpec, make_batch
from gateway.wire.payload import BINARY_MAGIC, decode, encode, encode_binary, payload_schema
from gateway.wire.topics import data_topic

JOINTS = StreamSpec("site-a", "psm1", "measured_js", ("j1.position", "j1.velocity"),
                    ("rad", "rad/s"), rate_hz=100.0, measurement="joint_state",
                    channel_tag="joint")
STATE = StreamSpec("site-a", "psm1", "operating_state", ("state",), ("",),
                   kind=StreamKind.EVENT, measurement="robot_event",
                   labels=(("ENABLED", 1.0), ("FAULT", 3.0)))


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(payload_schema())


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2**62), finite, finite, st.integers(0, 4)),
                     min_size=1, max_size=40),
       first_seq=st.integers(0, 2**40), historical=st.booleans())
def test_round_trip_and_schema(rows: list[tuple[int, float, float, int]], first_seq: int,
                               historical: bool) -> None:
    batch = make_batch(JOINTS, [r[0] for r in rows], [[r[1], r[2]] for r in rows],
                       [r[3] for r in rows], first_seq)
    batch.historical = historical
    payload = encode(batch, "edge-01")
    validator().validate(orjson.loads(payload))
    gateway, epoch, back = decode(payload)
    assert gateway == "edge-01" and epoch == 0
    assert back.stream == JOINTS
    assert back.first_seq == first_seq and back.historical is historical
    np.testing.assert_array_equal(back.timestamps_ns, batch.timestamps_ns)
    np.testing.assert_array_equal(back.values, batch.values)
    np.testing.assert_array_equal(back.quality, batch.quality)


def test_nan_becomes_null_and_back() -> None:
    batch = make_batch(JOINTS, [1, 2], [[math.nan, 1.0], [math.inf, 2.0]])
    doc = orjson.loads(encode(batch, "gw"))
    assert doc["values"] == [[None, 1.0], [None, 2.0]]
    validator().validate(doc)
    back = decode(encode(batch, "gw")).batch
    assert math.isnan(back.values[0, 0]) and back.values[1, 1] == 2.0


def test_event_text_and_labels() -> None:
    batch = make_batch(STATE, [5], [[3.0]], text=("FAULT",))
    doc = orjson.loads(encode(batch, "gw"))
    validator().validate(doc)
    assert doc["labels"] == {"ENABLED": 1.0, "FAULT": 3.0}
    back = decode(encode(batch, "gw")).batch
    assert back.text == ("FAULT",) and back.stream.labels == STATE.labels


def test_topic() -> None:
    assert data_topic("medgw/v1", JOINTS) == "medgw/v1/site-a/psm1/measured_js"


def good_doc() -> dict:
    return orjson.loads(encode(make_batch(JOINTS, [1, 2], [[1.0, 2.0], [3.0, 4.0]]), "gw"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(v=2), "unsupported payload version"),
        (lambda d: d.update(n=3), "must hold n=3"),
        (lambda d: d.update(values=[[1.0], [2.0]]), "values must be 2 rows of 2"),
        (lambda d: d.update(q=[0, 300]), "quality codes"),
        (lambda d: d.update(site="a/b"), "must match"),
        (lambda d: d.update(gateway="g" * 65_600), "longer than 256"),
        (lambda d: d.update(seq=2**63), "runs past 2"),
        (lambda d: d.update(seq=2**63 - 1), "runs past 2"),  # n=2: the second overflows
        (lambda d: d.update(epoch=-1), "'epoch' must be"),
        (lambda d: d.update(epoch=2**63), "'epoch' must be"),
        (lambda d: d.update(epoch="7"), "'epoch' must be"),
        (lambda d: d.update(epoch=True), "'epoch' must be"),
        (lambda d: d.update(stream="status"), "reserved"),
        (lambda d: d.update(fields=["j1.Quality", "j1.velocity"]), "reserved "),
        (lambda d: d.update(kind="alarm"), "not sampled/event"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(t=["x", 1]), "bad array contents"),
        (lambda d: d.pop("historical"), "'historical' missing"),
        (lambda d: d.update(fields=["j1.position", "j1.position"]), "bad stream description"),
    ],
)
def test_malformed_payloads_rejected_and_schema_agrees(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = good_doc()
    mutate(doc)
    with pytest.raises(PayloadError, match=message):
        decode(orjson.dumps(doc))
    if message not in ("bad stream description", "must hold n=3", "values must be 2 rows of 2",
                       "reserved ") and "runs past" not in message:
        # the JSON Schema cannot express cross-field lengths; everything else it rejects too
        assert not validator().is_valid(doc)


def test_not_json_and_not_object() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        decode(b"\xff{")
    with pytest.raises(PayloadError, match="not a JSON object"):
        decode(b"[1, 2]")


def test_batch_shape_checked() -> None:
    with pytest.raises(ValueError, match="values must be float64"):
        SampleBatch(JOINTS, np.zeros(2, np.int64), np.zeros((2, 3)), np.zeros(2, np.uint8), 0)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2**62), st.floats(width=64), finite,
                               st.integers(0, 4), st.integers(1, 2**62)),
                     min_size=1, max_size=40),
       first_seq=st.integers(0, 2**40), historical=st.booleans())
def test_binary_round_trip_keeps_every_bit(rows: list[tuple[int, float, float, int, int]],
                                           first_seq: int, historical: bool) -> None:
    batch = make_batch(JOINTS, [r[0] for r in rows], [[r[1], r[2]] for r in rows],
                       [r[3] for r in rows], first_seq)
    batch.historical = historical
    batch.receive_ns = np.array([r[4] for r in rows], dtype=np.int64)
    gateway, epoch, back = decode(encode_binary(batch, "edge-01", epoch=2**63 - 1))
    assert gateway == "edge-01" and epoch == 2**63 - 1 and back.stream == JOINTS
    assert back.first_seq == first_seq and back.historical is historical
    np.testing.assert_array_equal(back.timestamps_ns, batch.timestamps_ns)
    assert back.values.tobytes() == batch.values.tobytes()  # NaN and inf included
    np.testing.assert_array_equal(back.quality, batch.quality)
    assert back.receive_ns is not None
    np.testing.assert_array_equal(back.receive_ns, batch.receive_ns)


def test_binary_and_json_decode_to_the_same_batch() -> None:
    batch = make_batch(STATE, [5, 6], [[3.0], [1.0]], text=("FAULT", "ENABLED"))
    from_json = decode(encode(batch, "gw")).batch
    from_binary = decode(encode_binary(batch, "gw")).batch
    assert from_binary.stream == from_json.stream and from_binary.text == from_json.text
    np.testing.assert_array_equal(from_binary.values, from_json.values)
    assert from_binary.receive_ns is None


def test_binary_header_follows_the_schema_once_arrays_are_added() -> None:
    batch = make_batch(JOINTS, [1, 2], [[1.0, 2.0], [3.0, 4.0]])
    payload = encode_binary(batch, "gw")
    header = orjson.loads(payload[len(BINARY_MAGIC):payload.index(b"\n", len(BINARY_MAGIC))])
    assert header.pop("rx") is False
    header.update(t=[1, 2], q=[0, 0], values=[[1.0, 2.0], [3.0, 4.0]])
    validator().validate(header)


def test_spool_historical_flip_keeps_binary_payload_valid() -> None:
    from gateway.wire.bundle import as_historical

    batch = make_batch(JOINTS, [1, 2], [[1.0, 2.0], [3.0, 4.0]])
    back = decode(as_historical(encode_binary(batch, "gw"))).batch
    assert back.historical is True
    np.testing.assert_array_equal(back.values, batch.values)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (BINARY_MAGIC + b'{"v": 1}', "header not terminated"),
        (BINARY_MAGIC + b"nope\n", "header is not JSON"),
        (BINARY_MAGIC + b'{"v": 2}\n', "unsupported payload version"),
        (BINARY_MAGIC + b'[1]\n', "not a JSON object"),
    ],
)
def test_malformed_binary_headers(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode(payload)


def test_binary_array_length_checked() -> None:
    payload = encode_binary(make_batch(JOINTS, [1, 2], [[1.0, 2.0], [3.0, 4.0]]), "gw")
    with pytest.raises(PayloadError, match="bytes of arrays, expected"):
        decode(payload[:-3])
    with pytest.raises(PayloadError, match="bytes of arrays, expected"):
        decode(payload + b"\0")


def test_epoch_round_trip_and_default() -> None:
    batch = make_batch(JOINTS, [1], [[1.0, 2.0]], first_seq=2**63 - 1)
    assert decode(encode(batch, "gw", epoch=12345)).epoch == 12345
    doc = orjson.loads(encode(batch, "gw"))
    del doc["epoch"]
    assert decode(orjson.dumps(doc)).epoch == 0  # a gateway older than epochs
    validator().validate(doc)


def test_binary_seq_overflow_is_a_payload_error() -> None:
    payload = encode_binary(make_batch(JOINTS, [1, 2], [[1.0, 2.0], [3.0, 4.0]]), "gw")
    with pytest.raises(PayloadError, match="runs past"):
        decode(payload.replace(b'"seq":0', b'"seq":18446744073709551615', 1))


@pytest.mark.parametrize("change", [
    {"rate_hz": True}, {"labels": {"ENABLED": True, "FAULT": 3.0}}, {"fields": [1]},
    {"units": ["", 2]}, {"labels": [1]},
])
def test_a_description_seen_before_is_still_checked_when_it_differs(change: dict) -> None:
    good = orjson.loads(encode(make_batch(STATE, [1], [[1.0]]), "gw"))
    assert decode(orjson.dumps(good)).batch.stream == STATE  # cached now
    with pytest.raises(PayloadError):
        decode(orjson.dumps({**good, **change}))
