"""Bundles: several v1 payloads of one device in one message; parts decode alone."""

from __future__ import annotations

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.model import StreamSpec, make_batch
from gateway.wire.bundle import (
    BUNDLE_MAGIC,
    as_historical,
    bundle_key,
    decode_bundle,
    encode_bundle,
    is_bundle,
    split_bundle,
    split_bundle_key,
)
from gateway.wire.payload import ENCODERS, Decoded, decode, encode, payload_schema
from gateway.wire.topics import bundle_topic, data_topic

A = StreamSpec("site-a", "carrier-7", "state", ("x", "y"), ("m", "m"), rate_hz=10.0,
               measurement="carrier")
B = StreamSpec("site-a", "carrier-7", "battery", ("soc",), ("%",), rate_hz=1.0,
               measurement="carrier")


def parts(encoding: str) -> list[bytes]:
    first = make_batch(A, [1, 2, 3], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], first_seq=40)
    second = make_batch(B, [5], [[88.5]], first_seq=7)
    return [ENCODERS[encoding](first, "gw", 9), ENCODERS[encoding](second, "gw", 9)]


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_round_trip_keeps_each_part(encoding: str) -> None:
    payload = encode_bundle(parts(encoding))
    assert is_bundle(payload) and not is_bundle(parts(encoding)[0])
    got = decode_bundle(payload)
    assert all(isinstance(p, Decoded) for p in got)
    first, second = (p for p in got if isinstance(p, Decoded))
    assert (first.gateway, first.epoch, first.batch.stream) == ("gw", 9, A)
    assert first.batch.first_seq == 40 and second.batch.first_seq == 7
    np.testing.assert_array_equal(first.batch.values, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_array_equal(second.batch.values, [[88.5]])


def test_json_bundle_is_an_array_of_valid_v1_payloads() -> None:
    docs = orjson.loads(encode_bundle(parts("json")))
    validator = jsonschema.Draft202012Validator(payload_schema())
    assert isinstance(docs, list) and len(docs) == 2
    for doc in docs:
        validator.validate(doc)


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_a_bad_part_is_that_part_alone(encoding: str) -> None:
    good, other = parts(encoding)
    # json: n does not match the arrays; binary: the arrays cut short
    bad = orjson.dumps({**orjson.loads(other), "n": 5}) if encoding == "json" else other[:-3]
    got = decode_bundle(encode_bundle([good, bad]))
    assert isinstance(got[0], Decoded) and isinstance(got[1], PayloadError)


@pytest.mark.parametrize("payload", [
    b"[]", b"[1", b"{}"[:1] + b"[", BUNDLE_MAGIC, BUNDLE_MAGIC + b"\x05\x00\x00\x00ab",
    BUNDLE_MAGIC + b"\x01\x00",
])
def test_broken_bundles_raise_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_bundle(payload)


def test_a_non_object_element_is_a_bad_part() -> None:
    got = decode_bundle(b'[1, "x"]')
    assert all(isinstance(p, PayloadError) for p in got)


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_as_historical_marks_every_part(encoding: str) -> None:
    marked = as_historical(encode_bundle(parts(encoding)))
    got = decode_bundle(marked)
    assert [p.batch.historical for p in got if isinstance(p, Decoded)] == [True, True]
    if encoding == "binary":
        assert len(split_bundle(marked)) == 2


def test_as_historical_of_a_single_payload_is_unchanged_behaviour() -> None:
    payload = encode(make_batch(A, [1], [[1.0, 2.0]]), "gw")
    assert decode(as_historical(payload)).batch.historical is True


key_part = st.tuples(st.from_regex(r"[A-Za-z0-9_.-]{1,8}/[A-Za-z0-9_.-]{1,8}/[a-z.]{1,8}",
                                   fullmatch=True), st.integers(1, 10**6))


@settings(max_examples=60, deadline=None)
@given(st.lists(key_part, min_size=1, max_size=20))
def test_bundle_key_splits_back(items: list[tuple[str, int]]) -> None:
    assert split_bundle_key(bundle_key(items)) == items


def test_a_stream_key_is_its_own_record_key() -> None:
    assert split_bundle_key("site-a/carrier-7/state") == [("site-a/carrier-7/state", 0)]


def test_bundle_topic_is_one_level_above_the_streams() -> None:
    topic = bundle_topic("medgw/v1", "site-a", "carrier-7")
    assert topic == "medgw/v1/site-a/carrier-7"
    assert data_topic("medgw/v1", A).startswith(topic + "/")
