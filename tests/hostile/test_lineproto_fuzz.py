"""Line protocol under hostile names and values: valid lines or a clean, typed refusal.

Arbitrary text for every name (site, device, stream, measurement, channel tag, channels,
field keys: control characters, backslashes, quotes, reserved words in any case, emoji),
arbitrary floats (NaN, inf, subnormal), timestamps over all of int64, sequence numbers up
to 2**63-1 and arbitrary event text. Either StreamSpec refuses the stream with
StreamSpecError (the one rule, gateway.model.validate_stream) or encode_batch gives valid
UTF-8 lines that a reference parser (tests/unit/gateway/server/test_lineproto.py) reads
back into exactly the batch's points; gap_line likewise. Never another exception.
Budgets are fixed and derandomized; counts per probe are printed at the end (``-s``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import StreamSpecError
from gateway.model import StreamKind, StreamSpec, make_batch
from gateway.server.lineproto import encode_batch, gap_line, lines_per_sample
from tests.unit.gateway.server.test_lineproto import _expected_points, parse_body

pytestmark = pytest.mark.hostile

BUDGET = settings(max_examples=400, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TRIED: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()
FAILURES: Counter[str] = Counter()

_hostile_text = st.text(max_size=20) | st.sampled_from(
    ["quality", "Quality", "SEQ", "time", "Text", "status", "medgw_gap", "a b", "a,b", "a=b",
     'a"b', "a\\b", "a\nb", "a\rb", "\x00", "\x7f", "\u0085", "\ud800", "#x", "", " ",
     "🤖", "x" * 300])
_safe = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
# topic levels and measurement: mostly well-formed, so a stream gets through often enough
# for its fields, values and channels to be fuzzed too; fields and channels: anything
_names = st.integers(0, 9).flatmap(lambda i: _safe if i < 8 else _hostile_text)
_keys = st.one_of(_safe, st.text(max_size=20), _hostile_text)


@pytest.fixture(scope="module", autouse=True)
def _probe_table() -> Iterator[None]:
    yield
    for probe in sorted(TRIED):
        print(f"\nPROBE line protocol {probe}: {TRIED[probe]} cases, {REFUSED[probe]} refused "
              f"by StreamSpecError, {FAILURES[probe]} failures")


@st.composite
def specs(draw: st.DrawFn) -> StreamSpec | None:
    """A stream from hostile names, or None when the one rule refuses it."""
    channel_tag = draw(st.none() | _names)
    if channel_tag is None:
        fields = draw(st.lists(_keys, min_size=1, max_size=4))
    else:
        channels = draw(st.lists(_keys, min_size=1, max_size=3))
        leaves = draw(st.lists(_keys, min_size=1, max_size=3))
        fields = [f"{c}.{leaf}" for c in channels for leaf in leaves]
    try:
        return StreamSpec(draw(_names), draw(_names), draw(_names), tuple(fields),
                          tuple("u" for _ in fields),
                          kind=draw(st.sampled_from(list(StreamKind))),
                          measurement=draw(_names), channel_tag=channel_tag)
    except StreamSpecError as err:
        assert err.part and isinstance(err, ValueError)
        return None


@settings(BUDGET, max_examples=1000)  # most hostile streams are refused: more to get through
@given(specs(), st.data())
def test_hostile_names_and_values(spec: StreamSpec | None, data: st.DataObject) -> None:
    probe = "names and values"
    TRIED[probe] += 1
    if spec is None:
        REFUSED[probe] += 1
        return
    n = data.draw(st.integers(0, 4))
    values = data.draw(st.lists(st.floats(width=64), min_size=n * spec.width,
                                max_size=n * spec.width))
    stamps = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    text = data.draw(st.none() | st.lists(st.text(max_size=10), min_size=n, max_size=n))
    batch = make_batch(spec, np.array(stamps, dtype=np.int64),
                       np.array(values, dtype=np.float64).reshape(n, spec.width),
                       data.draw(st.integers(0, 255)),
                       data.draw(st.integers(0, 2**63 - 1 - n)),
                       text=None if text is None else tuple(text))
    try:
        body, n_lines = encode_batch(batch)
        points = parse_body(body)
    except Exception:
        FAILURES[probe] += 1
        raise
    assert n_lines == len(points) == n * lines_per_sample(spec)
    assert points == _expected_points(batch)


@BUDGET
@given(specs(), st.integers(0, 2**63 - 1), st.integers(0, 2**20), st.integers(0, 2**63 - 1),
       st.text(max_size=40))
def test_gap_lines(spec: StreamSpec | None, lo: int, span: int, ts: int, gateway: str) -> None:
    probe = "gap lines"
    TRIED[probe] += 1
    if spec is None:
        REFUSED[probe] += 1
        return
    hi = min(lo + span, 2**63 - 1)
    try:
        ((measurement, tags, fields, stamp),) = parse_body(gap_line(spec, lo, hi, ts, gateway))
    except Exception:
        FAILURES[probe] += 1
        raise
    assert measurement == "medgw_gap" and stamp == ts
    assert tags == {"site": spec.site, "device": spec.device, "stream": spec.stream}
    assert (fields["from_seq"], fields["to_seq"], fields["missing"]) == (lo, hi, hi - lo + 1)


def test_the_rule_is_not_vacuous() -> None:
    """Some hostile-looking but carriable names pass; the fuzz is not refusing everything."""
    spec = StreamSpec("s", "d", "x", ("a b", 'q"uote', "🤖", "a,b=c"), ("", "", "", ""),
                      measurement="m")
    body, n = encode_batch(make_batch(spec, [1], [[1.0, 2.0, 3.0, 4.0]]))
    assert n == 1 and parse_body(body)[0][2]["🤖"] == 3.0
