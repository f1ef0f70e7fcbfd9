"""Unit tests of the OPC UA driver's pure rules: quality, names, values, rows, events, backoff."""

from __future__ import annotations

import itertools
import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua
from asyncua.ua.uatypes import datetime_to_win_epoch
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua.mapping import (
    CarrierEvent,
    EventCode,
    EventDetector,
    EventRule,
    Row,
    RowAssembler,
    UniqueTimes,
    chunk_by_stream,
    datetime_to_ns,
    filetime_to_ns,
    is_numeric_type,
    path_matches,
    quality_of,
    segment_matches,
    snake_case,
    split_pattern,
    to_float,
    topic_safe,
)
from gateway.backoff import Backoff
from gateway.model import Quality

FIELDS = ("route_progress", "speed", "payload_temperature", "door_open", "mission_state",
          "active_alarm")
COL = {name: i for i, name in enumerate(FIELDS)}


# ---------------------------------------------------------------- status -> quality
@pytest.mark.parametrize(("status", "expected"), [
    (ua.StatusCodes.Good, Quality.GOOD),
    (ua.StatusCodes.GoodClamped, Quality.GOOD),
    (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
    (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
    (ua.StatusCodes.BadSensorFailure, Quality.BAD),
    (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
    (ua.StatusCodes.BadCommunicationError, Quality.BAD),
])
def test_named_status_codes_map_to_quality(status: int, expected: Quality) -> None:
    assert quality_of(status) is expected


def test_reserved_severity_is_bad() -> None:
    assert quality_of(0xC000_0000) is Quality.BAD
    assert quality_of(0xC123_4567) is Quality.BAD


@given(st.integers(min_value=0, max_value=0xFFFF_FFFF))
def test_quality_agrees_with_asyncua_status_classes(status: int) -> None:
    code = ua.StatusCode(ua.UInt32(status))
    quality = quality_of(status)
    assert (quality is Quality.GOOD) == code.is_good()
    assert (quality is Quality.UNCERTAIN) == code.is_uncertain()
    assert (quality is Quality.BAD) == code.is_bad()


# ---------------------------------------------------------------- browse patterns
def test_pattern_matches_every_carrier_temperature() -> None:
    pattern = "Fleet/*/PayloadTemperature"
    assert path_matches(pattern, ("Fleet", "carrier-01", "PayloadTemperature"))
    assert path_matches(pattern, ("Fleet", "carrier-20", "PayloadTemperature"))
    assert not path_matches(pattern, ("Fleet", "carrier-01", "Battery"))
    assert not path_matches(pattern, ("Fleet", "carrier-01"))
    assert not path_matches(pattern, ("Fleet", "a", "b", "PayloadTemperature"))
    assert not path_matches(pattern, ("Depot", "carrier-01", "PayloadTemperature"))


def test_pattern_wildcards_and_classes() -> None:
    assert path_matches("Fleet/carrier-0?/*", ("Fleet", "carrier-07", "Speed"))
    assert not path_matches("Fleet/carrier-0?/*", ("Fleet", "carrier-17", "Speed"))
    assert path_matches("Fleet/carrier-[12]*/Battery", ("Fleet", "carrier-15", "Battery"))
    assert not path_matches("Fleet/carrier-[12]*/Battery", ("Fleet", "carrier-31", "Battery"))


def test_segments_are_case_sensitive() -> None:
    assert segment_matches("Battery", "Battery")
    assert not segment_matches("battery", "Battery")


@pytest.mark.parametrize("pattern", ["", "/", "Fleet//Battery"])
def test_empty_segments_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="empty segment"):
        split_pattern(pattern)


def test_outer_slashes_are_ignored() -> None:
    assert split_pattern("/Fleet/*/Battery/") == ("Fleet", "*", "Battery")


@pytest.mark.parametrize(("browse_name", "field"), [
    ("PayloadTemperature", "payload_temperature"),
    ("RouteProgress", "route_progress"),
    ("Battery", "battery"),
    ("SOCPercent", "soc_percent"),
    ("speed m/s", "speed_m_s"),
    ("ActiveAlarm", "active_alarm"),
    ("Payload Temperature", "payload_temperature"),
    ("Payload_Temperature", "payload_temperature"),
])
def test_snake_case_field_names(browse_name: str, field: str) -> None:
    assert snake_case(browse_name) == field


def test_topic_safe_stream_names() -> None:
    assert topic_safe("carrier-01") == "carrier-01"
    assert topic_safe("Tube Station #3") == "Tube_Station_3"
    assert topic_safe("///") == "unnamed"


def test_numeric_data_types() -> None:
    assert is_numeric_type(0, ua.ObjectIds.Double)
    assert is_numeric_type(0, ua.ObjectIds.Boolean)
    assert is_numeric_type(0, ua.ObjectIds.Int32)
    assert not is_numeric_type(0, ua.ObjectIds.String)
    assert not is_numeric_type(0, ua.ObjectIds.DateTime)
    assert not is_numeric_type(2, ua.ObjectIds.Double)  # same number in another namespace


# ---------------------------------------------------------------- values and time
@pytest.mark.parametrize(("raw", "expected"), [
    (True, 1.0), (False, 0.0), (7, 7.0), (-2.5, -2.5), (2**40, float(2**40)),
])
def test_numbers_convert(raw: object, expected: float) -> None:
    assert to_float(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), [
    (float("nan"), "not_finite"), (float("inf"), "not_finite"), ("12.5", "wrong_type"),
    (None, "wrong_type"), ([1.0, 2.0], "wrong_type"), (b"\x00", "wrong_type"),
])
def test_garbage_gives_a_quarantine_reason(raw: object, reason: str) -> None:
    assert to_float(raw) == reason


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1)))
def test_datetime_to_ns_matches_asyncua_filetime(moment: datetime) -> None:
    aware = moment.replace(tzinfo=timezone.utc)
    expected = filetime_to_ns(datetime_to_win_epoch(aware))
    assert datetime_to_ns(aware) == expected
    assert datetime_to_ns(moment) == expected


def test_datetime_to_ns_is_exact_at_microseconds() -> None:
    ns = 1_700_000_000_123_456_000
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)
    assert datetime_to_ns(moment) == ns


# ---------------------------------------------------------------- rows
def test_changes_with_one_timestamp_share_a_row() -> None:
    asm = RowAssembler(len(FIELDS))
    asm.add(100, Quality.GOOD, COL["speed"], 1.2)
    asm.add(100, Quality.GOOD, COL["payload_temperature"], 5.5)
    asm.add(200, Quality.GOOD, COL["speed"], 1.3)
    rows = asm.sorted_rows()
    assert [r.timestamp_ns for r in rows] == [100, 200]
    assert rows[0].values[COL["speed"]] == 1.2
    assert rows[0].values[COL["payload_temperature"]] == 5.5
    assert math.isnan(rows[0].values[COL["door_open"]])  # not reported: NaN, not a stale copy
    assert sum(not math.isnan(v) for v in rows[1].values) == 1


def test_a_column_reported_twice_starts_a_new_row() -> None:
    asm = RowAssembler(len(FIELDS))
    asm.add(100, Quality.GOOD, COL["speed"], 1.0)
    asm.add(100, Quality.GOOD, COL["speed"], 2.0)
    rows = asm.sorted_rows()
    assert [r.values[COL["speed"]] for r in rows] == [1.0, 2.0]


def test_bad_changes_get_their_own_row_without_a_value() -> None:
    asm = RowAssembler(len(FIELDS))
    asm.add(100, Quality.GOOD, COL["speed"], 1.0)
    asm.add(100, Quality.BAD, COL["payload_temperature"], 5.0,
            ua.StatusCodes.BadSensorFailure, "BadSensorFailure")
    asm.add(100, Quality.UNCERTAIN, COL["route_progress"], 0.5)
    rows = asm.sorted_rows()
    assert [r.quality for r in rows] == [Quality.GOOD, Quality.BAD, Quality.UNCERTAIN]
    bad = rows[1]
    assert all(math.isnan(v) for v in bad.values)  # a Bad value is never stored as a number
    assert bad.bad_fields == [(COL["payload_temperature"], ua.StatusCodes.BadSensorFailure,
                               "BadSensorFailure")]


def test_rows_come_out_in_timestamp_order() -> None:
    asm = RowAssembler(1)
    for ts in (300, 100, 200, 100):
        asm.add(ts, Quality.GOOD, 0, float(ts))
    assert [r.timestamp_ns for r in asm.sorted_rows()] == [100, 100, 200, 300]


def test_rows_of_one_quality_share_a_timestamp_across_publishes() -> None:
    times = UniqueTimes()
    # one device instant in two publish responses: one point in InfluxDB, no invented time
    assert times.place(100, int(Quality.GOOD)) == 100
    assert times.place(100, int(Quality.GOOD)) == 100
    # another quality at that time must not merge with it (quality would be overwritten)
    assert times.place(100, int(Quality.BAD)) == 101
    assert times.place(100, int(Quality.UNCERTAIN)) == 102
    assert times.place(100, int(Quality.BAD)) == 101
    assert times.place(101, int(Quality.GOOD)) == 103


def test_unique_times_forget_the_oldest_beyond_capacity() -> None:
    times = UniqueTimes(capacity=2)
    for ts in (100, 200, 300):
        times.place(ts, int(Quality.GOOD))
    assert times.place(100, int(Quality.BAD)) == 100  # 100 was forgotten
    assert times.place(300, int(Quality.BAD)) == 301


# ---------------------------------------------------------------- item chunks
def _stream(item: tuple[str, int]) -> str:
    return item[0]


def _items(*sizes: int) -> list[tuple[str, int]]:
    """``sizes[i]`` items of stream ``s<i>``, streams one after the other."""
    return [(f"s{i}", k) for i, n in enumerate(sizes) for k in range(n)]


def test_chunks_never_split_a_stream() -> None:
    # 111 carriers x 9 items = 999: the 112th no longer fits the first request of 1000
    chunks = chunk_by_stream(_items(*[9] * 200), _stream, 1000)
    assert [len(c) for c in chunks] == [999, 801]
    assert {s for s, _ in chunks[0]} == {f"s{i}" for i in range(111)}
    assert chunks[1][0] == ("s111", 0)


def test_chunks_pack_whole_streams_up_to_the_limit() -> None:
    assert [len(c) for c in chunk_by_stream(_items(3, 3, 4, 2, 5), _stream, 10)] == [10, 7]
    assert [len(c) for c in chunk_by_stream(_items(3, 3, 4), _stream, 9)] == [6, 4]
    assert chunk_by_stream([], _stream, 10) == []


def test_a_stream_larger_than_the_limit_goes_alone() -> None:
    chunks = chunk_by_stream(_items(2, 12, 3, 1), _stream, 5)
    assert [[s for s, _ in c] for c in chunks] == [["s0"] * 2, ["s1"] * 12, ["s2"] * 3 + ["s3"]]


def test_items_of_a_stream_are_gathered_in_order() -> None:
    items = [("a", 0), ("b", 0), ("a", 1), ("c", 0), ("b", 1)]
    assert chunk_by_stream(items, _stream, 3) == [[("a", 0), ("a", 1)],
                                                  [("b", 0), ("b", 1), ("c", 0)]]
    with pytest.raises(ValueError, match="limit"):
        chunk_by_stream(items, _stream, 0)


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers()), max_size=60),
       st.integers(min_value=1, max_value=12))
def test_chunks_hold_every_item_once_and_respect_the_limit(
        items: list[tuple[str, int]], limit: int) -> None:
    chunks = chunk_by_stream(items, _stream, limit)
    flat = [item for chunk in chunks for item in chunk]
    assert sorted(flat) == sorted(items)
    for stream in {s for s, _ in items}:
        holding = [i for i, chunk in enumerate(chunks) if any(s == stream for s, _ in chunk)]
        assert len(holding) == 1  # never split
        assert [x for x in flat if x[0] == stream] == [x for x in items if x[0] == stream]
    for chunk in chunks:
        assert chunk and (len(chunk) <= limit or len({s for s, _ in chunk}) == 1)
    for first, second in itertools.pairwise(chunks):  # packed: the next stream did not fit
        assert len(first) + sum(1 for s, _ in second if s == second[0][0]) > limit


# ---------------------------------------------------------------- events
def _row(quality: Quality = Quality.GOOD, **values: float) -> Row:
    row = Row(0, quality, [math.nan] * len(FIELDS))
    for name, value in values.items():
        row.values[COL[name]] = value
    return row


def _codes(events: list[CarrierEvent]) -> list[tuple[EventCode, bool]]:
    return [(e.code, e.active) for e in events]


def test_temperature_excursion_is_raised_once_and_cleared_once() -> None:
    detector = EventDetector(EventRule(), FIELDS)
    assert detector.update(_row(payload_temperature=5.0)) == []
    raised = detector.update(_row(payload_temperature=9.1))
    assert _codes(raised) == [(EventCode.TEMPERATURE_EXCURSION, True)]
    assert raised[0].value == 9.1 and "outside 2-8" in raised[0].text
    assert detector.update(_row(payload_temperature=10.0)) == []
    assert _codes(detector.update(_row(payload_temperature=1.5))) == []  # still outside
    assert _codes(detector.update(_row(payload_temperature=2.0))) == [
        (EventCode.TEMPERATURE_EXCURSION, False)]


def test_door_event_needs_the_carrier_in_transit() -> None:
    detector = EventDetector(EventRule(), FIELDS)
    assert detector.update(_row(mission_state=1, door_open=1)) == []  # loading: door may open
    assert detector.update(_row(mission_state=2, door_open=0)) == []
    assert _codes(detector.update(_row(door_open=1))) == [
        (EventCode.DOOR_OPEN_IN_TRANSIT, True)]
    assert _codes(detector.update(_row(door_open=0))) == [
        (EventCode.DOOR_OPEN_IN_TRANSIT, False)]


def test_mission_fault_and_alarm_codes() -> None:
    detector = EventDetector(EventRule(), FIELDS)
    detector.update(_row(mission_state=2, active_alarm=0))
    assert _codes(detector.update(_row(mission_state=4, active_alarm=401))) == [
        (EventCode.MISSION_FAULT, True), (EventCode.ALARM, True)]
    changed = detector.update(_row(active_alarm=301))
    assert _codes(changed) == [(EventCode.ALARM, True)] and changed[0].value == 301
    cleared = detector.update(_row(mission_state=2, active_alarm=0))
    assert _codes(cleared) == [(EventCode.MISSION_FAULT, False), (EventCode.ALARM, False)]
    assert cleared[1].value == 301


def test_bad_signal_event_and_recovery() -> None:
    detector = EventDetector(EventRule(), FIELDS)
    detector.update(_row(payload_temperature=5.0))
    bad = _row(Quality.BAD)
    bad.bad_fields.append((COL["payload_temperature"], ua.StatusCodes.BadSensorFailure,
                           "BadSensorFailure"))
    events = detector.update(bad)
    assert _codes(events) == [(EventCode.SIGNAL_BAD, True)]
    assert events[0].text == "payload_temperature: BadSensorFailure"
    assert "payload_temperature" not in detector.known  # the old reading is forgotten
    assert detector.update(bad) == []  # still bad: no repeat
    assert _codes(detector.update(_row(payload_temperature=5.1))) == [
        (EventCode.SIGNAL_BAD, False)]


def test_custom_thresholds() -> None:
    rule = EventRule(temperature_min=15.0, temperature_max=25.0)
    detector = EventDetector(rule, FIELDS)
    assert _codes(detector.update(_row(payload_temperature=5.0))) == [
        (EventCode.TEMPERATURE_EXCURSION, True)]


# ---------------------------------------------------------------- backoff
def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5


def test_backoff_jitter_spreads_delays() -> None:
    delays = {round(Backoff(1.0, 1.0, random.Random(seed)).next(), 6) for seed in range(20)}
    assert len(delays) > 10


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
