"""Stream and field names from browse names: deterministic, collision-free, never reserved."""

from __future__ import annotations

import random

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.opcua.discovery import Hit, name_hits
from drivers.opcua.naming import (
    RESERVED_FIELDS,
    field_name,
    short_hash,
    stream_name,
)
from drivers.opcua.options import BrowseSpec
from gateway.model import StreamSpec

SPEC = BrowseSpec(pattern="Fleet/*/*")
# the issue's fleet: 12 objects that became 6 streams (and lost 6 carriers, silently)
FLEET = ["carrier 1", "carrier,1", "carrier=1", 'carrier"1', "carrier\\1", "carrier_1",
         "🚑", "🚒", "", "status", "carrier-07", "carrier-07.events"]


def hits(objects: list[str], variables: tuple[str, ...] = ("Battery",),
         folder: str = "Fleet") -> list[Hit]:
    out = []
    for i, obj in enumerate(objects):
        for j, var in enumerate(variables):
            out.append(Hit(ua.NodeId(f"{folder}.{i}.{j}", 2), (folder, obj, var), SPEC))
    return out


def test_every_object_of_the_issue_fleet_gets_its_own_stream() -> None:
    candidates, notes = name_hits(hits(FLEET))
    streams = {c.path.split("/")[1]: c.stream for c in candidates}
    assert len(streams) == len(FLEET) and len(set(streams.values())) == len(FLEET)
    assert streams["carrier_1"] == "carrier_1"  # a valid name is kept as it is
    assert streams["carrier-07"] == "carrier-07"
    assert streams["carrier 1"] == f"carrier_1-{short_hash('carrier 1')}"
    assert streams["🚑"] == f"unnamed-{short_hash('🚑')}"
    assert streams["status"] != "status"
    for name in streams.values():  # every one is a stream the ingest accepts
        StreamSpec("site", "dev", name, ("battery",), ("",))
        StreamSpec("site", "dev", f"{name}.events", ("code",), ("",))
    renamed = {n.path for n in notes}
    assert renamed == {f"Fleet/{o}" for o in FLEET if o not in ("carrier_1", "carrier-07")}


def test_names_do_not_depend_on_order_or_on_other_objects() -> None:
    first, _ = name_hits(hits(FLEET))
    shuffled = FLEET[:]
    random.Random(7).shuffle(shuffled)
    second, _ = name_hits(hits(shuffled))
    assert {c.path: c.stream for c in first} == {c.path: c.stream for c in second}
    alone, _ = name_hits(hits(["carrier 1"]))
    assert alone[0].stream == f"carrier_1-{short_hash('carrier 1')}"


def test_the_same_browse_name_in_two_folders_gives_two_streams() -> None:
    both = hits(["carrier-01"], folder="FleetA") + hits(["carrier-01"], folder="FleetB")
    candidates, notes = name_hits(both)
    streams = sorted(c.stream for c in candidates)
    assert streams == ["carrier-01", f"carrier-01-{short_hash('FleetB/carrier-01')}"]
    assert [n.path for n in notes] == ["FleetB/carrier-01"]


def test_reserved_and_colliding_field_names_are_mapped() -> None:
    variables = ("Quality", "Seq", "Time", "Text", "PayloadTemperature",
                 "payload_temperature", "Payload Temperature", "🔥", "Battery")
    candidates, notes = name_hits(hits(["carrier-01"], variables))
    fields = {c.path.rsplit("/", 1)[1]: c.field for c in candidates}
    assert len(set(fields.values())) == len(variables)
    assert fields["Quality"] == "quality_" and fields["Seq"] == "seq_"
    assert fields["Time"] == "time_" and fields["Battery"] == "battery"
    # the first by browse path keeps the name, the others get the hash of their path
    assert fields["Payload Temperature"] == "payload_temperature"
    assert fields["PayloadTemperature"] == (
        f"payload_temperature_{short_hash('Fleet/carrier-01/PayloadTemperature')}")
    assert not {f.casefold() for f in fields.values()} & RESERVED_FIELDS
    StreamSpec("site", "dev", "carrier-01", tuple(fields.values()), ("",) * len(fields))
    assert {n.path for n in notes} >= {"Fleet/carrier-01/Quality", "Fleet/carrier-01/🔥",
                                       "Fleet/carrier-01/PayloadTemperature"}


def test_field_filters_apply_to_the_mapped_names() -> None:
    spec = BrowseSpec(pattern="Fleet/*/*", fields=("quality_", "battery"))
    found = [Hit(ua.NodeId(i, 2), ("Fleet", "c", v), spec)
             for i, v in enumerate(("Quality", "Battery", "Speed"))]
    candidates, _ = name_hits(found)
    assert sorted(c.field for c in candidates) == ["battery", "quality_"]


def test_a_node_matched_by_two_patterns_is_one_variable() -> None:
    twice = hits(["carrier-01"]) + hits(["carrier-01"])
    candidates, notes = name_hits(twice)
    assert len(candidates) == 1 and notes == []


@pytest.mark.parametrize(("browse_name", "expected"), [
    ("carrier-07", "carrier-07"), ("Carrier_7", "Carrier_7"), ("c.1", "c.1"),
])
def test_valid_stream_names_are_kept(browse_name: str, expected: str) -> None:
    assert stream_name(browse_name) == (expected, None)


@settings(max_examples=300, derandomize=True)
@given(st.text(max_size=300))
def test_any_browse_name_gives_names_the_ingest_accepts(browse_name: str) -> None:
    stream, why = stream_name(browse_name)
    field, _ = field_name(browse_name)
    StreamSpec("site", "dev", stream, (field,), ("",))
    StreamSpec("site", "dev", f"{stream}.events", ("code",), ("",))
    assert stream_name(browse_name) == (stream, why)  # a pure function of the name


@settings(max_examples=100, derandomize=True)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=25))
def test_any_set_of_objects_gives_distinct_streams(objects: list[str]) -> None:
    distinct = list(dict.fromkeys(objects))
    candidates, _ = name_hits(hits(distinct))
    assert len({c.stream for c in candidates}) == len(distinct)


def test_two_nodes_with_one_browse_path_are_two_fields() -> None:
    twins = [Hit(ua.NodeId("Battery", ns), ("Fleet", "carrier-01", "Battery"), SPEC)
             for ns in (2, 3)]
    candidates, notes = name_hits(twins)
    assert sorted(c.field for c in candidates) == [
        "battery", f"battery_{short_hash('Fleet/carrier-01/Battery#ns=3;s=Battery')}"]
    assert len(notes) == 1
