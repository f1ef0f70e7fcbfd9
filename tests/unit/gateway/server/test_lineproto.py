"""Line protocol encoding: exact lines for hand-built batches, round trip via a reference parser."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import StreamSpecError
from gateway.model import RESERVED_FIELDS, SampleBatch, StreamSpec, make_batch
from gateway.server.lineproto import (
    encode_batch,
    encode_batches,
    encode_lines,
    escape_key,
    escape_measurement,
    escape_string,
    lines_per_sample,
    split_body,
)

# ----------------------------------------------------------------------------------------
# A small reference parser written from the line-protocol spec (InfluxDB 1.x semantics).


def _scan(text: str, pos: int, stops: str) -> tuple[str, int]:
    """Read up to an unescaped char in ``stops``; ``\\x`` yields x for x in ``, =``."""
    out = []
    while pos < len(text) and text[pos] not in stops:
        if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in ", =":
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out), pos


def _scan_string(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted string field starting after the opening quote; decode ``\\\\`` and ``\\"``."""
    out = []
    while text[pos] != '"':
        if text[pos] == "\\" and text[pos + 1] in '\\"':
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out), pos + 1


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Parse one line into (measurement, tags, fields, timestamp)."""
    measurement, pos = _scan(line, 0, ", ")
    tags: dict[str, str] = {}
    while line[pos] == ",":
        key, pos = _scan(line, pos + 1, "=")
        value, pos = _scan(line, pos + 1, ", ")
        tags[key] = value
    assert line[pos] == " "
    fields: dict[str, Any] = {}
    while not fields or line[pos] == ",":
        key, pos = _scan(line, pos + 1, "=")
        pos += 1
        if line[pos] == '"':
            fields[key], pos = _scan_string(line, pos + 1)
        else:
            raw, pos = _scan(line, pos, ", ")
            fields[key] = int(raw[:-1]) if raw.endswith("i") else float(raw)
    assert line[pos] == " "
    return measurement, tags, fields, int(line[pos + 1:])


def parse_body(body: bytes) -> list[tuple[str, dict[str, str], dict[str, Any], int]]:
    """Parse a whole body; every line must end in a newline."""
    text = body.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [parse_line(line) for line in text.split("\n")[:-1]]


# ----------------------------------------------------------------------------------------
# Exact lines for hand-built batches.


def _spec(**kwargs: Any) -> StreamSpec:
    base: dict[str, Any] = {"site": "demo-hospital", "device": "robot-1", "stream": "arm",
                            "fields": ("a", "b"), "units": ("m", "m")}
    base.update(kwargs)
    return StreamSpec(**base)


def test_plain_lines_exact() -> None:
    """Sorted tags, float fields, quality/seq integers, ns timestamps."""
    batch = make_batch(_spec(), [1000, 2000], [[1.5, -2.0], [0.25, 1e-05]],
                       quality=[0, 3], first_seq=41)
    body, n = encode_batch(batch)
    assert n == 2
    assert body == (
        b"telemetry,device=robot-1,site=demo-hospital,stream=arm a=1.5,b=-2.0,"
        b"quality=0i,seq=41i 1000\n"
        # shortest round-trip float text as orjson writes it (InfluxDB parses it like 1e-05)
        b"telemetry,device=robot-1,site=demo-hospital,stream=arm a=0.25,b=0.00001,"
        b"quality=3i,seq=42i 2000\n"
    )


def test_escaping_exact() -> None:
    """Commas/spaces/equals are escaped per the spec; braces and percent pass untouched."""
    spec = _spec(fields=("c {x},1=.f 1", "c {x},1=.g,=h%"), measurement="my.m",
                 channel_tag="j-k_l")
    batch = make_batch(spec, [5], [[1.0, 2.0]], first_seq=0)
    body, _ = encode_batch(batch)
    assert body == (
        b"my.m,device=robot-1,j-k_l=c\\ {x}\\,1\\=,site=demo-hospital,stream=arm "
        b"f\\ 1=1.0,g\\,\\=h%=2.0,quality=0i,seq=0i 5\n"
    )
    # StreamSpec keeps measurements topic-safe; the escaping itself still follows the spec
    assert escape_measurement("my m,x=") == "my\\ m\\,x="
    assert escape_key("j=k l") == "j\\=k\\ l"


def test_non_finite_fields_are_left_out() -> None:
    """NaN/inf fields are omitted; a line with no float left still has quality and seq."""
    batch = make_batch(_spec(), [1, 2, 3], [[math.nan, 2.0], [math.inf, -math.inf],
                                             [1.0, 2.0]], quality=2, first_seq=7)
    assert encode_lines(batch) == [
        "telemetry,device=robot-1,site=demo-hospital,stream=arm b=2.0,quality=2i,seq=7i 1\n",
        "telemetry,device=robot-1,site=demo-hospital,stream=arm quality=2i,seq=8i 2\n",
        "telemetry,device=robot-1,site=demo-hospital,stream=arm a=1.0,b=2.0,quality=2i,seq=9i 3\n",
    ]


def test_text_field_escaped() -> None:
    """Quotes and backslashes are escaped; newlines become \\n so a line stays one line."""
    spec = _spec(fields=("code",), units=("",))
    batch = make_batch(spec, [10, 20], [[3.0], [4.0]], first_seq=1,
                       text=('door "A" open\\', "line1\nline2\r"))
    body, n = encode_batch(batch)
    assert n == 2 and body.count(b"\n") == 2
    assert body.split(b"\n")[0].endswith(b',text="door \\"A\\" open\\\\" 10')
    assert body.split(b"\n")[1].endswith(b',text="line1\\nline2\\r" 20')


def test_channel_tag_one_line_per_channel() -> None:
    """With channel_tag each channel gets its own line, tag and short field names."""
    spec = _spec(fields=("outer_yaw.position", "outer_yaw.velocity", "wrist.position"),
                 units=("rad", "rad/s", "rad"), measurement="joint_state", channel_tag="joint")
    batch = make_batch(spec, [100, 200], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], first_seq=10)
    assert lines_per_sample(spec) == 2
    prefix = "joint_state,device=robot-1,joint={},site=demo-hospital,stream=arm "
    assert encode_lines(batch) == [
        prefix.format("outer_yaw") + "position=1.0,velocity=2.0,quality=0i,seq=10i 100\n",
        prefix.format("outer_yaw") + "position=4.0,velocity=5.0,quality=0i,seq=11i 200\n",
        prefix.format("wrist") + "position=3.0,quality=0i,seq=10i 100\n",
        prefix.format("wrist") + "position=6.0,quality=0i,seq=11i 200\n",
    ]


def test_historical_is_not_a_tag() -> None:
    """A replayed (historical) batch encodes to the very same lines: idempotent overwrite."""
    batch = make_batch(_spec(), [1, 2], [[1.0, 2.0], [3.0, 4.0]], first_seq=3)
    replay = batch.slice(0, 2)
    replay.historical = True
    assert encode_batch(replay) == encode_batch(batch)


@pytest.mark.parametrize(("kwargs", "part"), [
    ({"measurement": "m\\1"}, "measurement"), ({"measurement": "a\nb"}, "measurement"),
    ({"measurement": "a b"}, "measurement"), ({"measurement": "medgw_gap"}, "measurement"),
    ({"fields": ("a\rb", "c")}, "field"), ({"fields": ("a\\b", "c")}, "field"),
    ({"fields": ("a\x00", "c")}, "field"),
    ({"fields": ("x.a", "x.b"), "channel_tag": "a\\b"}, "channel_tag"),
    ({"fields": ("x.a", "x.b"), "channel_tag": "site"}, "channel_tag"),
    ({"fields": ("x.a", "x.b"), "channel_tag": "Time"}, "channel_tag"),
    ({"fields": ("x.a", "x\\y.b"), "channel_tag": "joint"}, "field"),
    ({"fields": ("seq", "b")}, "field"), ({"fields": ("quality", "b")}, "field"),
    ({"fields": ("Quality", "b")}, "field"), ({"fields": ("TIME", "b")}, "field"),
    ({"fields": ("text", "b")}, "field"),
    ({"fields": ("x.Seq", "x.b"), "channel_tag": "joint"}, "field"),
    ({"measurement": ""}, "measurement"), ({"stream": "status"}, "stream"),
    ({"device": "a" * 257}, "device"),
])
def test_unencodable_names_are_refused_at_construction(kwargs: dict[str, Any],
                                                       part: str) -> None:
    """Whatever line protocol or the ingest would refuse, StreamSpec refuses first."""
    with pytest.raises(StreamSpecError) as info:
        _spec(**kwargs)
    assert info.value.part == part
    assert isinstance(info.value, ValueError)  # older callers catch ValueError


def test_empty_channel_is_refused() -> None:
    """An empty channel would be an empty tag value (left out by InfluxDB): refused."""
    with pytest.raises(StreamSpecError, match=r"channel\.field"):
        _spec(fields=(".a", ".b"), channel_tag="joint")


def test_empty_batch_and_split_body() -> None:
    """Empty batches encode to nothing; split_body cuts at line boundaries."""
    empty = make_batch(_spec(), np.zeros(0, dtype=np.int64), np.zeros((0, 2)))
    assert encode_batch(empty) == (b"", 0)
    batch = make_batch(_spec(), np.arange(5), np.ones((5, 2)), first_seq=0)
    body, n = encode_batches([batch, empty, batch.slice(1, 3)])
    assert n == 7
    chunks = split_body(body, 3)
    assert [c[1] for c in chunks] == [3, 3, 1]
    assert b"".join(c[0] for c in chunks) == body
    assert split_body(b"", 2) == []


# ----------------------------------------------------------------------------------------
# Round trip against the reference parser.

_names = st.text(
    alphabet=st.characters(blacklist_characters="\\", blacklist_categories=["Cs", "Cc"]),
    min_size=1, max_size=12,
)
_topic_names = st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True)
_field_names = _names.filter(lambda s: s.casefold() not in RESERVED_FIELDS)
_tag_keys = _topic_names.filter(lambda s: s.casefold() not in {"site", "device", "stream",
                                                               "time"})
_floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def batches(draw: st.DrawFn) -> SampleBatch:
    """Random streams (with or without channel tag) and batches with odd values and text."""
    channel_tag = draw(st.one_of(st.none(), _tag_keys))
    if channel_tag is None:
        fields = draw(st.lists(_field_names, min_size=1, max_size=4, unique=True))
    else:
        channels = draw(st.lists(_names.filter(lambda s: "." not in s), min_size=1,
                                 max_size=3, unique=True))
        leaves = draw(st.lists(_field_names.filter(lambda s: "." not in s), min_size=1,
                               max_size=3, unique=True))
        fields = [f"{c}.{leaf}" for c in channels for leaf in leaves]
    spec = StreamSpec(draw(_topic_names), draw(_topic_names), draw(_topic_names), tuple(fields),
                      tuple("u" for _ in fields),
                      measurement=draw(_topic_names.filter(lambda s: s != "medgw_gap")),
                      channel_tag=channel_tag)
    n = draw(st.integers(0, 6))
    values = draw(st.lists(st.lists(_floats, min_size=len(fields), max_size=len(fields)),
                           min_size=n, max_size=n))
    timestamps = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    quality = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    text = draw(st.one_of(st.none(), st.lists(st.text(max_size=20), min_size=n, max_size=n)))
    return make_batch(spec, np.array(timestamps, dtype=np.int64),
                      np.array(values, dtype=np.float64).reshape(n, len(fields)),
                      np.array(quality, dtype=np.uint8), first_seq=draw(st.integers(0, 2**53)),
                      text=None if text is None else tuple(text))


def _expected_points(batch: SampleBatch) -> list[tuple[str, dict[str, str], dict[str, Any], int]]:
    """Compute the points the batch must become, straight from the batch contents."""
    spec = batch.stream
    groups: dict[str | None, list[tuple[int, str]]] = {}
    for j, name in enumerate(spec.fields):
        channel, leaf = name.split(".", 1) if spec.channel_tag else (None, name)
        groups.setdefault(channel, []).append((j, leaf))
    points = []
    for channel, columns in groups.items():
        tags = {"site": spec.site, "device": spec.device, "stream": spec.stream}
        if spec.channel_tag is not None and channel is not None:
            tags[spec.channel_tag] = channel
        for i in range(len(batch)):
            fields: dict[str, Any] = {leaf: float(batch.values[i, j]) for j, leaf in columns
                                      if math.isfinite(batch.values[i, j])}
            fields["quality"] = int(batch.quality[i])
            fields["seq"] = batch.first_seq + i
            if batch.text is not None:
                fields["text"] = batch.text[i].replace("\n", "\\n").replace("\r", "\\r")
            points.append((spec.measurement, tags, fields, int(batch.timestamps_ns[i])))
    return points


@settings(max_examples=300, deadline=None)
@given(batches())
def test_round_trip(batch: SampleBatch) -> None:
    """Parsing the encoded body gives back exactly the batch's points."""
    body, n = encode_batch(batch)
    points = parse_body(body)
    assert len(points) == n == len(batch) * lines_per_sample(batch.stream)
    assert points == _expected_points(batch)


@given(st.text(max_size=30))
def test_escape_string_has_no_raw_newline(text: str) -> None:
    """Escaped text never holds a raw newline or an unescaped quote."""
    escaped = escape_string(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert _scan_string(escaped + '"', 0)[0] == text.replace("\n", "\\n").replace("\r", "\\r")


@pytest.mark.parametrize("n", [1, 4, 5, 16, 17, 64, 65, 300])
def test_round_trip_on_both_sides_of_the_bulk_formatting_thresholds(n: int) -> None:
    """Up to SMALL_BATCH samples are formatted row by row, short batches in one call per
    line group, long ones per column: the points are the same on every path, non-finite
    values left out."""
    rng = np.random.default_rng(n)
    for channel_tag, fields in ((None, ("a", "b", "c")), ("side", ("l.x", "l.y", "r.x"))):
        spec = StreamSpec("site", "dev", "st", fields, ("",) * 3, channel_tag=channel_tag)
        values = rng.standard_normal((n, 3)) * 10.0 ** rng.integers(-20, 20, (n, 3))
        values[rng.random((n, 3)) < 0.1] = np.nan
        values[0, 1] = np.inf
        batch = make_batch(spec, np.arange(n) * 7, values, rng.integers(0, 3, n),
                           first_seq=2**40 + n)
        body, count = encode_batch(batch)
        assert count == n * lines_per_sample(spec)
        assert parse_body(body) == _expected_points(batch)
