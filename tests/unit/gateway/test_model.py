"""The one rule for names and fields (gateway.model.validate_stream) and its error type."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import MedgwError, StreamSpecError
from gateway.model import MAX_NAME_CHARS, RESERVED_FIELDS, StreamSpec, map_field_name


def spec(**kwargs: object) -> StreamSpec:
    """A valid stream with some parts replaced."""
    base: dict[str, object] = {"site": "st-olav", "device": "psm1", "stream": "measured_js",
                               "fields": ("a",), "units": ("",)}
    base.update(kwargs)
    return StreamSpec(**base)  # type: ignore[arg-type]


def test_error_is_typed_and_names_the_part() -> None:
    with pytest.raises(StreamSpecError) as info:
        spec(fields=("ok", "Seq"), units=("", ""))
    err = info.value
    assert isinstance(err, MedgwError) and isinstance(err, ValueError)
    assert err.part == "field" and err.name == "Seq"
    assert "st-olav/psm1/measured_js" in str(err) and "reserved" in str(err)


@pytest.mark.parametrize("name", sorted(RESERVED_FIELDS | {"QUALITY", "Time", "sEq", "Text"}))
def test_reserved_field_names_in_any_case(name: str) -> None:
    with pytest.raises(StreamSpecError):
        spec(fields=(name,))


@pytest.mark.parametrize(("part", "value"), [
    ("site", "st olav"), ("device", "psm,1"), ("stream", "a=b"), ("stream", "status"),
    ("stream", "m/e"), ("measurement", "a b"), ("measurement", "medgw_gap"),
    ("stream", "x" * (MAX_NAME_CHARS + 1)), ("site", ""),
])
def test_topic_levels_and_measurement(part: str, value: str) -> None:
    with pytest.raises(StreamSpecError) as info:
        spec(**{part: value})
    assert info.value.part == part


def test_accepted_names() -> None:
    ok = spec(stream="rt.PSM1.measured_js", measurement="joint_state", channel_tag="joint",
              fields=("outer yaw,1=x.position", "wrist.Quality_"), units=("rad", "rad"))
    assert ok.key == "st-olav/psm1/rt.PSM1.measured_js"
    spec(fields=("température", "status", "Statuses"), units=("", "", ""))


def test_map_field_name_is_deterministic_and_accepted() -> None:
    assert map_field_name("Quality") == "Quality_"
    assert map_field_name("a\\b\nc") == "a_b_c"
    assert map_field_name("") == "_"
    assert map_field_name("joint.seq") == "joint.seq_"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(max_size=MAX_NAME_CHARS + 20))
def test_mapped_names_always_pass_the_rule(name: str) -> None:
    mapped = map_field_name(name)
    assert mapped == map_field_name(name)
    spec(fields=(mapped,))
