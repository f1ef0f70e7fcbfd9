"""Parsing and validation of VDA 5050 2.0, 2.1 and 3.0 messages."""

from __future__ import annotations

import pytest

from drivers.vda5050.messages import (
    ConnectionView,
    MessageError,
    StateView,
    decode,
    parse_timestamp,
)
from tests.unit.drivers.vda5050.vda_support import (
    STAMP_NS,
    connection,
    encode,
    state_v2,
    state_v3,
)


def test_v2_state_becomes_the_neutral_view() -> None:
    view = decode("state", encode(state_v2(7)), "acme", "agv-1")
    assert isinstance(view, StateView)
    assert (view.header_id, view.timestamp_ns, view.major) == (7, STAMP_NS, 2)
    assert (view.x, view.y, view.theta, view.map_id, view.localized) == (1.5, -2.0, 0.5, "L1",
                                                                        True)
    assert (view.charge, view.voltage, view.charging) == (80.0, 25.5, False)
    assert (view.estop, view.loads, view.operating_mode) == ("NONE", 1, "AUTOMATIC")


def test_v21_is_read_with_the_v2_model() -> None:
    view = decode("state", encode(state_v2(1, version="2.1.0", maps=[])))
    assert isinstance(view, StateView) and view.major == 2


def test_v3_renamed_fields() -> None:
    view = decode("state", encode(state_v3(3)))
    assert isinstance(view, StateView)
    assert (view.x, view.y, view.map_id, view.localized) == (3.0, 4.0, "L2", True)
    assert (view.charge, view.charging, view.operating_mode) == (55.5, True, "STARTUP")


def test_v3_names_are_refused_in_a_v2_message() -> None:
    doc = state_v3(1, version="2.0.0", operatingMode="AUTOMATIC")  # powerSupply, no batteryState
    with pytest.raises(MessageError) as err:
        decode("state", encode(doc))
    assert err.value.reason == "invalid" and "batteryState" in err.value.detail


def test_v2_only_values_are_refused_in_v3() -> None:
    with pytest.raises(MessageError, match="operatingMode"):
        decode("state", encode(state_v3(1, operatingMode="TEACHIN")))
    with pytest.raises(MessageError, match=r"activeEmergencyStop"):
        decode("state", encode(state_v3(1, safetyState={"activeEmergencyStop": "AUTOACK",
                                                        "fieldViolation": False})))


@pytest.mark.parametrize(("change", "reason"), [
    ({"headerId": "7"}, "invalid"),
    ({"driving": 1}, "invalid"),
    ({"batteryState": {"batteryCharge": "80", "charging": False}}, "invalid"),
    ({"version": "1.1.0"}, "unknown_version"),
    ({"version": "4.0.0"}, "unknown_version"),
    ({"version": 2}, "unknown_version"),
    ({"timestamp": "yesterday"}, "bad_timestamp"),
])
def test_wrong_types_and_versions_are_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(MessageError) as err:
        decode("state", encode(state_v2(1, **change)))
    assert err.value.reason == reason


def test_unknown_fields_are_allowed() -> None:
    view = decode("state", encode(state_v2(1, vendorExtension={"a": 1})))
    assert isinstance(view, StateView)


def test_bad_json_and_non_objects() -> None:
    for payload in (b"{", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(MessageError) as err:
            decode("state", payload)
        assert err.value.reason == "bad_json"


def test_header_must_name_the_vehicle_of_the_topic() -> None:
    with pytest.raises(MessageError) as err:
        decode("state", encode(state_v2(1)), "acme", "agv-2")
    assert err.value.reason == "topic_mismatch"


def test_connection_states_per_version() -> None:
    v2 = decode("connection", encode(connection("CONNECTIONBROKEN")))
    v3 = decode("connection", encode(connection("CONNECTION_BROKEN", version="3.0.0")))
    assert isinstance(v2, ConnectionView) and isinstance(v3, ConnectionView)
    assert v2.state == v3.state == "CONNECTIONBROKEN"
    hibernating = decode("connection", encode(connection("HIBERNATING", version="3.0.0")))
    assert isinstance(hibernating, ConnectionView) and hibernating.state == "HIBERNATING"
    with pytest.raises(MessageError):
        decode("connection", encode(connection("HIBERNATING")))  # not in 2.x
    with pytest.raises(MessageError):
        decode("connection", encode(connection("CONNECTIONBROKEN", version="3.0.0")))


def test_timestamps() -> None:
    assert parse_timestamp("2026-12-01T10:00:00.000Z") == STAMP_NS
    assert parse_timestamp("2026-12-01T10:00:00.12Z") == STAMP_NS + 120_000_000
    assert parse_timestamp("2026-12-01T12:00:00.5+02:00") == STAMP_NS + 500_000_000
    assert parse_timestamp("2026-12-01T10:00:00") == STAMP_NS  # no zone: UTC


def test_unknown_subtopic() -> None:
    with pytest.raises(MessageError) as err:
        decode("order", encode(state_v2(1)))
    assert err.value.reason == "unknown_topic"


@pytest.mark.parametrize("major", [None, 2])
def test_fast_and_slow_paths_agree(major: int | None) -> None:
    fast = decode("state", encode(state_v2(5)), "acme", "agv-1", major)
    slow = decode("state", encode(state_v2(5)), "acme", "agv-1")
    assert fast == slow
    v3 = decode("state", encode(state_v3(5)), major=3)
    assert isinstance(v3, StateView) and v3.major == 3


@pytest.mark.parametrize(("doc", "major", "reason"), [
    (state_v3(1), 2, "version_mismatch"),  # fails the v2 model: the slow path says why
    (connection("ONLINE", version="3.0.0"), 2, "version_mismatch"),  # passes the v2 model
    (state_v2(1, version="2.5.0"), 2, "unknown_version"),
    (state_v2(1, driving=1), 2, "invalid"),
])
def test_topic_major_is_checked(doc: dict[str, object], major: int, reason: str) -> None:
    subtopic = "connection" if "connectionState" in doc else "state"
    with pytest.raises(MessageError) as err:
        decode(subtopic, encode(doc), major=major)
    assert err.value.reason == reason


def test_integers_are_accepted_as_numbers_booleans_never_as_integers() -> None:
    doc = state_v2(1)
    doc["agvPosition"] = {**doc["agvPosition"], "x": 2}
    view = decode("state", encode(doc), major=2)
    assert isinstance(view, StateView) and view.x == 2.0
    with pytest.raises(MessageError):
        decode("state", encode(state_v2(1, paused=0)), major=2)
