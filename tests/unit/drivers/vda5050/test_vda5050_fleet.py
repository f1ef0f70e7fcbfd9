"""The fleet's message handling: streams per vehicle, events, source gaps, quarantine."""

from __future__ import annotations

import math
from typing import Any

import pytest

from drivers.vda5050.fleet import Fleet
from drivers.vda5050.mapping import STATE_FIELDS, EventCode
from gateway.model import Quality
from gateway.ring import StreamRing
from tests.unit.drivers.vda5050.vda_support import (
    STAMP_NS,
    connection,
    encode,
    feed,
    make_fleet,
    state_v2,
    state_v3,
)


def ring(fleet: Fleet, stream: str) -> StreamRing:
    """The ring of one of the fleet's streams."""
    found = [r for r in fleet.ctx.store.rings() if r.stream.stream == stream]
    assert found, f"no stream {stream}"
    return found[0]


def rows(fleet: Fleet, stream: str) -> list[dict[str, Any]]:
    """Every sample of a stream as dicts (field -> value, plus t, q, text)."""
    r = ring(fleet, stream)
    batch = r.read(r.start_seq, r.write_seq - r.start_seq).batch if len(r) else None
    if batch is None:
        return []
    out = []
    for i in range(len(batch)):
        row = dict(zip(r.stream.fields, batch.values[i].tolist(), strict=True))
        row.update(t=int(batch.timestamps_ns[i]), q=int(batch.quality[i]),
                   text=batch.text[i] if batch.text else None)
        out.append(row)
    return out


def metric(fleet: Fleet, name: str, **labels: str) -> float:
    """Read one sample of the fleet's registry."""
    value = fleet.ctx.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_each_vehicle_gets_three_streams_with_the_spec_rules() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(1))
    feed(fleet, state_v3(1))
    names = sorted(r.stream.stream for r in fleet.ctx.store.rings())
    assert names == ["agv-1", "agv-1.events", "agv-1.source_gap", "amr-3", "amr-3.events",
                     "amr-3.source_gap"]
    gap = ring(fleet, "agv-1.source_gap").stream
    assert gap.measurement == "medgw_source_gap" and gap.is_event
    assert ring(fleet, "agv-1").stream.measurement == "vda5050_state"


def test_state_row_values_and_clock_offset() -> None:
    fleet = make_fleet(maps=["L1"])
    feed(fleet, state_v2(1), receive_ns=STAMP_NS + 250_000_000)
    (row,) = rows(fleet, "agv-1")
    assert row["t"] == STAMP_NS and row["q"] == Quality.GOOD
    assert (row["x"], row["y"], row["theta"], row["map"]) == (1.5, -2.0, 0.5, 1.0)
    assert (row["battery_charge"], row["battery_voltage"], row["charging"]) == (80.0, 25.5, 0)
    assert (row["driving"], row["loads"], row["header_id"]) == (1.0, 1.0, 1.0)
    assert row["operating_mode"] == 1.0 and row["distance_since_last_node"] == 0.25
    assert set(row) >= set(STATE_FIELDS)
    offset = metric(fleet, "medgw_clock_offset_seconds", stream="site/fleet/agv-1")
    assert offset == pytest.approx(0.25)


def test_missing_position_is_nan_and_unlocalized_is_uncertain() -> None:
    fleet = make_fleet()
    doc = state_v2(1)
    del doc["agvPosition"]
    feed(fleet, doc)
    feed(fleet, state_v3(1, mobileRobotPosition={"x": 1.0, "y": 1.0, "theta": 0.0,
                                                 "mapId": "L2", "localized": False}))
    assert math.isnan(rows(fleet, "agv-1")[0]["x"])
    assert rows(fleet, "amr-3")[0]["q"] == Quality.UNCERTAIN


def test_header_gap_is_stored_as_a_source_gap() -> None:
    fleet = make_fleet()
    for header_id in (1, 2, 6, 7):
        feed(fleet, state_v2(header_id))
    assert len(rows(fleet, "agv-1")) == 4
    (gap,) = rows(fleet, "agv-1.source_gap")
    assert (gap["from_seq"], gap["to_seq"], gap["missing"]) == (3.0, 5.0, 3.0)
    assert gap["text"] == "state headerId 3..5: 3 lost at the source"
    assert metric(fleet, "medgw_source_gap_total", device="fleet", vehicle="agv-1") == 3.0


def test_restart_is_a_reset_event_not_a_gap() -> None:
    fleet = make_fleet()
    for header_id in (500, 501, 0, 1):
        feed(fleet, state_v2(header_id))
    assert rows(fleet, "agv-1.source_gap") == []
    resets = [e for e in rows(fleet, "agv-1.events") if e["code"] == EventCode.HEADER_RESET]
    assert [(e["value"], e["text"]) for e in resets] == [
        (0.0, "state headerId 501 -> 0: restarted")]
    assert metric(fleet, "medgw_source_resets_total", device="fleet", vehicle="agv-1") == 1.0


def test_online_again_starts_a_new_run() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(10))
    feed(fleet, connection("ONLINE", 2), "connection")
    feed(fleet, state_v2(40))  # reconnected: no claim that 11..39 were lost
    assert rows(fleet, "agv-1.source_gap") == []
    assert fleet.vehicles[("acme", "agv-1")].stats.missing == 0


def test_duplicate_state_is_dropped() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(1))
    feed(fleet, state_v2(1))
    assert len(rows(fleet, "agv-1")) == 1
    assert fleet.vehicles[("acme", "agv-1")].stats.duplicates == 1


def test_tied_timestamps_are_moved_one_ns() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(1))
    feed(fleet, state_v2(2))
    assert [r["t"] for r in rows(fleet, "agv-1")] == [STAMP_NS, STAMP_NS + 1]


def test_events_first_state_then_changes() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(1))
    error = {"errorType": "batteryFault", "errorLevel": "FATAL", "errorDescription": "cell 3"}
    feed(fleet, state_v2(2, errors=[error], safetyState={"eStop": "MANUAL",
                                                          "fieldViolation": True}))
    feed(fleet, state_v2(3, errors=[], operatingMode="MANUAL", orderId="o-1",
                         actionStates=[{"actionId": "a1", "actionType": "pick",
                                        "actionStatus": "RUNNING"}]))
    events = [(int(e["code"]), e["active"], e["value"], e["text"])
              for e in rows(fleet, "agv-1.events")]
    assert events == [
        (EventCode.OPERATING_MODE, 1.0, 1.0, "operating mode AUTOMATIC"),
        (EventCode.ERROR, 1.0, 4.0, "FATAL batteryFault: cell 3"),
        (EventCode.ESTOP, 1.0, 2.0, "e-stop MANUAL"),
        (EventCode.FIELD_VIOLATION, 1.0, 1.0, "protective field violated"),
        (EventCode.ERROR, 0.0, 4.0, "FATAL batteryFault: cell 3 (cleared)"),
        (EventCode.ESTOP, 0.0, 0.0, "e-stop released"),
        (EventCode.FIELD_VIOLATION, 0.0, 0.0, "protective field clear"),
        (EventCode.OPERATING_MODE, 1.0, 3.0, "operating mode MANUAL"),
        (EventCode.ORDER, 1.0, 0.0, "order 'o-1' update 0"),
        (EventCode.ACTION, 1.0, 3.0, "action a1 (pick): RUNNING"),
    ]
    stamps = [e["t"] for e in rows(fleet, "agv-1.events")]
    assert len(set(stamps)) == len(stamps)  # no two events merge in InfluxDB


def test_connection_events_and_retained_repeat() -> None:
    fleet = make_fleet()
    for state in ("ONLINE", "CONNECTIONBROKEN"):
        feed(fleet, connection(state, 1 if state == "ONLINE" else 2), "connection")
    feed(fleet, connection("CONNECTIONBROKEN", 2), "connection")  # retained, seen again
    feed(fleet, connection("HIBERNATING", 1, "3.0.0", "amr-3"), "connection")
    events = [(e["code"], e["active"], e["value"], e["text"])
              for e in rows(fleet, "agv-1.events")]
    assert events == [(5.0, 1.0, 1.0, "connection ONLINE"),
                      (5.0, 0.0, 2.0, "connection CONNECTIONBROKEN")]
    assert rows(fleet, "amr-3.events")[0]["value"] == 3.0


def test_malformed_messages_are_quarantined_per_vehicle_and_the_others_flow() -> None:
    fleet = make_fleet()
    feed(fleet, state_v3(1))
    fleet.handle("uagv/v2/acme/agv-1/state", b"{not json", STAMP_NS)
    feed(fleet, state_v2(1, version="9.0.0"))  # topic says v9 too
    fleet.handle("uagv/v2/acme/agv-1/state", encode(state_v2(2, driving="yes")), STAMP_NS)
    fleet.handle("uagv/v3/acme/agv-1/state", encode(state_v2(3)), STAMP_NS)  # v2 on v3
    feed(fleet, state_v3(2))
    vehicle = fleet.vehicles[("acme", "agv-1")]
    assert vehicle.stats.quarantined == 4 and vehicle.stats.states == 0
    assert len(rows(fleet, "amr-3")) == 2
    for reason in ("bad_json", "unknown_version", "invalid", "version_mismatch"):
        assert metric(fleet, "medgw_source_quarantined_total", device="fleet",
                      vehicle="agv-1", reason=reason) == 1.0
        assert metric(fleet, "medgw_malformed_messages_total", source="fleet",
                      reason=reason) == 1.0


def test_bad_topics_and_names() -> None:
    fleet = make_fleet()
    fleet.handle("uagv/v2/acme/state", b"{}", STAMP_NS)
    feed(fleet, state_v2(1, serialNumber="bad name"))  # a space: not a stream name
    feed(fleet, state_v2(2, serialNumber="bad name"))
    feed(fleet, state_v2(1, serialNumber="status"))  # reserved stream name
    feed(fleet, state_v2(1))
    assert fleet.stats.quarantined == 4 and fleet.refused[("acme", "bad name")] == "bad_name"
    assert list(fleet.vehicles) == [("acme", "agv-1")]


def test_two_vehicles_on_one_stream_name_are_refused() -> None:
    fleet = make_fleet()
    feed(fleet, state_v2(1))
    feed(fleet, state_v2(1, manufacturer="other"))
    assert fleet.refused[("other", "agv-1")] == "name_collision"
    both = make_fleet(stream_name="manufacturer.serial")
    feed(both, state_v2(1))
    feed(both, state_v2(1, manufacturer="other"))
    assert len(both.vehicles) == 2 and ring(both, "other.agv-1")


def test_too_many_vehicles() -> None:
    fleet = make_fleet(max_vehicles=1)
    feed(fleet, state_v2(1))
    feed(fleet, state_v3(1))
    assert len(fleet.vehicles) == 1 and fleet.stats.refused == 1


def test_factsheet_is_an_event_once() -> None:
    fleet = make_fleet()
    doc = {"headerId": 0, "timestamp": "2026-12-01T10:00:00.000Z", "version": "3.0.0",
           "manufacturer": "acme", "serialNumber": "amr-3",
           "typeSpecification": {"seriesName": "tug", "mobileRobotKinematics": "DIFF",
                                 "mobileRobotClass": "CARRIER", "maximumLoadMass": 40.0},
           "physicalParameters": {"maximumSpeed": 1.5, "width": 0.6, "length": 0.9}}
    feed(fleet, doc, "factsheet")
    feed(fleet, doc, "factsheet")
    (event,) = rows(fleet, "amr-3.events")
    assert event["code"] == EventCode.FACTSHEET and event["value"] == 1.5
    assert event["text"] == ("factsheet: series tug, kinematic DIFF, class CARRIER, max load "
                             "40 kg, max speed 1.5 m/s, width 0.6 m, length 0.9 m")


def test_visualization_stream_and_its_own_header_ids() -> None:
    fleet = make_fleet(visualization=True)
    for header_id in (1, 3):
        doc = {"headerId": header_id, "timestamp": "2026-12-01T10:00:00.000Z",
               "version": "2.0.0", "manufacturer": "acme", "serialNumber": "agv-1",
               "agvPosition": {"x": 1.0, "y": 2.0, "theta": 0.0, "mapId": "L1",
                               "positionInitialized": True}}
        feed(fleet, doc, "visualization")
    assert [r["x"] for r in rows(fleet, "agv-1.visualization")] == [1.0, 1.0]
    assert rows(fleet, "agv-1.source_gap")[0]["text"].startswith("visualization headerId 2..2")


def test_map_index_is_bounded_and_changes_are_events() -> None:
    fleet = make_fleet(max_maps=1)
    feed(fleet, state_v2(1))
    pos = {"x": 0.0, "y": 0.0, "theta": 0.0, "mapId": "L9", "positionInitialized": True}
    feed(fleet, state_v2(2, agvPosition=pos))
    assert rows(fleet, "agv-1")[0]["map"] == 1.0 and math.isnan(rows(fleet, "agv-1")[1]["map"])


def test_event_rings_are_small_and_the_state_ring_is_sized_in_time() -> None:
    fleet = make_fleet(event_ring_capacity=64)
    fleet.ctx.ring_seconds = 60.0
    feed(fleet, state_v2(1))
    assert ring(fleet, "agv-1.events").capacity == 64
    assert ring(fleet, "agv-1.source_gap").capacity == 64
    assert ring(fleet, "agv-1").capacity == fleet.ctx.min_ring_capacity  # 10 Hz x 60 s < 1024


def test_vehicle_text_is_made_safe_for_an_event() -> None:
    fleet = make_fleet()
    error = {"errorType": "bad\nline\x00", "errorLevel": "WARNING",
             "errorDescription": "x" * 2000}
    feed(fleet, state_v2(1, errors=[error]))
    text = next(e["text"] for e in rows(fleet, "agv-1.events") if e["code"] == EventCode.ERROR)
    assert text.startswith("WARNING bad line : xxx") and len(text) == 500
    assert text.endswith("...")
