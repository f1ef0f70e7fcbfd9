"""discover vda5050's bookkeeping without MQTT: rates, skipped headerIds, refusals, blocks."""

from __future__ import annotations

from typing import Any

from drivers.vda5050 import FleetSurvey, Vda5050Options, device_options
from tests.unit.drivers.vda5050.vda_support import connection, encode, state_v2, state_v3, topic

SECOND = 1_000_000_000


def survey() -> FleetSurvey:
    """An empty survey of a 4 s window."""
    return FleetSurvey("fleet broker 127.0.0.1:1883", ["+/+/+/+/state"], 4.0)


def feed(found: FleetSurvey, doc: dict[str, Any], subtopic: str = "state",
         receive_ns: int = 0, limit: int = 1000) -> None:
    """Hand one message to the survey as the network thread would."""
    found.observe(topic(doc, subtopic), encode(doc), receive_ns, limit)


def test_rate_skipped_header_ids_connection_and_versions() -> None:
    found = survey()
    for i, header in enumerate((1, 2, 3, 6, 7)):  # 4 and 5 never arrived
        feed(found, state_v2(header), receive_ns=i * SECOND // 2)
    feed(found, connection("ONLINE"), "connection")
    seen = found.vehicles[("uagv", "v2", "acme", "agv-1")]
    assert (seen.states, seen.missing, seen.connection) == (5, 2, "ONLINE")
    assert seen.state_rate_hz() == 2.0
    assert dict(seen.topics) == {"state": 5, "connection": 1}
    assert dict(seen.versions) == {"2.0.0": 6}
    assert not seen.refused


def test_refusals_are_counted_with_the_driver_s_reasons() -> None:
    found = survey()
    doc = state_v2(1)
    found.observe(topic(doc), b'{"headerId": 1, "timestamp": ', 0, 1000)
    found.observe(topic(doc), encode({**doc, "version": "9.9.9"}), 0, 1000)
    found.observe(topic(doc).replace("/v2/", "/v3/"), encode(doc), 0, 1000)  # 2.0 on v3
    found.observe("uagv/v2/state", b"{}", 0, 1000)
    by_level = {key[1]: v for key, v in found.vehicles.items()}
    assert dict(by_level["v2"].refused) == {"bad_json": 1, "unknown_version": 1}
    assert dict(by_level["v3"].refused) == {"version_mismatch": 1}
    assert by_level["v2"].states == 0 and "state: " in by_level["v2"].last_refusal
    assert dict(found.other_topics) == {"uagv/v2/state": 1}


def test_vehicles_beyond_the_limit_are_counted_not_listed() -> None:
    found = survey()
    for serial in ("a", "b", "c"):
        feed(found, state_v2(1, serialNumber=serial), limit=2)
    assert len(found.vehicles) == 2 and found.overflow == 1


def test_device_options_from_what_was_seen() -> None:
    found = survey()
    feed(found, state_v2(1), receive_ns=0)
    feed(found, state_v2(2), receive_ns=SECOND // 4)
    v3 = state_v3(1)
    feed(found, v3)
    feed(found, state_v2(1, manufacturer="other", serialNumber=v3["serialNumber"]))
    block = device_options(found, Vda5050Options.model_validate(
        {"broker": {"port": 1884}, "interface_name": "+"}), "uagv")
    assert block == {"broker": {"host": "127.0.0.1", "port": 1884}, "interface_name": "uagv",
                     "major_versions": ["v2", "v3"], "manufacturer": "+",
                     "stream_name": "manufacturer.serial", "maps": ["L1", "L2"], "rate_hz": 4.0}
    Vda5050Options.model_validate(block)
