"""Simulator -> OPC UA driver -> ring: exact values, quality, events, garbage, timestamps."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from asyncua import ua
from asyncua.client.ua_client import UaClient

from drivers.opcua import subscription as opcua_subscription
from drivers.opcua.mapping import EventCode
from gateway.model import Quality, StreamKind
from simulators.transport_carrier import NAMESPACE_URI, CarrierSim
from tests.integration.opcua.opcua_support import (
    DEVICE,
    NUMERIC,
    Gateway,
    column,
    expected_rows,
    good_cells,
    options_for,
    received_rows,
    running,
    wait_for,
    written_values,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def events_of(gw: Gateway, carrier: str) -> list[tuple[int, int, float, str, int]]:
    """Return (code, active, value, text, timestamp) of a carrier's event stream."""
    batch = gw.batch(f"{carrier}.events")
    if batch is None:
        return []
    assert batch.text is not None
    return [(int(batch.values[i, 0]), int(batch.values[i, 1]), float(batch.values[i, 2]),
             batch.text[i], int(batch.timestamps_ns[i])) for i in range(len(batch))]


def in_sync(gw: Gateway, sim: CarrierSim, carriers: list[str] | None = None) -> bool:
    """True when every carrier's ring holds exactly what the simulator wrote."""
    return all(received_rows(gw.batch(c)) == expected_rows(sim, c)
               for c in carriers or sim.carrier_names)


async def test_every_written_value_arrives_exactly_once(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
        await sim.step(25)  # a burst: 25 ticks queued server-side between two publishes
        await wait_for(lambda: in_sync(gw, sim), 10, "25 ticks of every carrier")
    for carrier in sim.carrier_names:
        batch = gw.batch(carrier)
        ticks = {r.source_ns for r in sim.history if r.carrier == carrier}
        assert set(received_rows(batch)) == ticks and len(ticks) == 26
        assert good_cells(batch) == written_values(sim, carrier)  # no value twice
        assert batch is not None and not (batch.quality != Quality.GOOD).any()
        spec = batch.stream
        assert spec.measurement == "carrier" and spec.kind is StreamKind.SAMPLED
        assert dict(zip(spec.fields, spec.units, strict=True)) == {
            "route_progress": "1", "route_position": "m", "speed": "m/s", "battery": "%",
            "payload_temperature": "°C", "door_open": "", "mission_state": "",
            "specimen_count": "", "active_alarm": ""}
        assert gw.metric("medgw_samples_received_total", stream=spec.key) == len(batch)
    assert gw.driver.stats.skipped == tuple(
        f"Fleet/{c}/{name}" for c in sim.carrier_names for name in ("Route", "AlarmText"))
    assert all(events_of(gw, c) == [] for c in sim.carrier_names)  # a quiet fleet


async def test_bad_status_is_stored_as_bad_and_never_as_a_current_value(
        sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
        await sim.sensor_bad("carrier-02", "PayloadTemperature")
        await sim.step(5)
        await sim.sensor_ok("carrier-02", "PayloadTemperature")
        await sim.step(2)
        await wait_for(lambda: in_sync(gw, sim) and len(events_of(gw, "carrier-02")) == 2, 10,
                       "the Bad and the recovered temperature")
    bad_write = next(r for r in sim.history if r.status != 0)
    assert bad_write.status == ua.StatusCodes.BadSensorFailure
    ok_write = next(r for r in sim.history if r.carrier == "carrier-02"
                    and r.variable == "PayloadTemperature" and r.status == 0
                    and r.tick > bad_write.tick)
    batch = gw.batch("carrier-02")
    assert batch is not None
    bad_rows = np.flatnonzero(batch.quality == Quality.BAD)
    assert bad_rows.size == 1
    # the tick's Good values came first at this time; the Bad row moved 1 ns so InfluxDB
    # does not merge the two points (quality would be overwritten)
    assert batch.timestamps_ns[bad_rows[0]] == bad_write.source_ns + 1
    assert np.isnan(batch.values[bad_rows[0]]).all()  # no number stored for a Bad value
    temperature = column(batch, "payload_temperature")
    while_bad = ((batch.timestamps_ns > bad_write.source_ns + 1)
                 & (batch.timestamps_ns < ok_write.source_ns))
    assert while_bad.sum() == 5 and np.isnan(temperature[while_bad]).all()  # 5 ticks, no value
    recovered = temperature[batch.timestamps_ns == ok_write.source_ns]
    assert recovered[~np.isnan(recovered)].tolist() == [ok_write.value]
    assert [(code, active, text) for code, active, _, text, _ in events_of(gw, "carrier-02")] == [
        (EventCode.SIGNAL_BAD, 1, "payload_temperature: BadSensorFailure"),
        (EventCode.SIGNAL_BAD, 0, "payload_temperature: good again")]


async def test_carrier_events_take_the_sample_timestamp(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
        await sim.temperature_excursion("carrier-01", 11.5)
        await sim.open_door_in_transit("carrier-02")
        await sim.drive_fault("carrier-03")
        await wait_for(lambda: all(len(events_of(gw, c)) >= 2 for c in sim.carrier_names)
                       and in_sync(gw, sim), 10, "the three faults")
        await sim.clear_temperature("carrier-01")
        await wait_for(lambda: len(events_of(gw, "carrier-01")) == 4, 10, "the clearing")

    def written(carrier: str, variable: str, value: object) -> int:
        """Source time of the last write of ``value``."""
        return [r.source_ns for r in sim.history if r.carrier == carrier
                and r.variable == variable and r.value == value][-1]

    alarm = {c: [r.value for r in sim.history if r.carrier == c and r.variable == "ActiveAlarm"]
             for c in sim.carrier_names}
    t_hot = written("carrier-01", "PayloadTemperature", 11.5)
    assert events_of(gw, "carrier-01") == [
        (EventCode.TEMPERATURE_EXCURSION, 1, 11.5, "payload temperature 11.50 °C outside 2-8 °C",
         t_hot),
        (EventCode.ALARM, 1, alarm["carrier-01"][-2], f"alarm {alarm['carrier-01'][-2]} active",
         t_hot + 1),  # two events at one time: the second 1 ns later (no InfluxDB merge)
        (EventCode.TEMPERATURE_EXCURSION, 0, sim.carrier("carrier-01").temperature_c(),
         f"payload temperature {sim.carrier('carrier-01').temperature_c():.2f} °C back in range",
         written("carrier-01", "ActiveAlarm", 0)),
        (EventCode.ALARM, 0, alarm["carrier-01"][-2], f"alarm {alarm['carrier-01'][-2]} cleared",
         written("carrier-01", "ActiveAlarm", 0) + 1),
    ]
    t_door = written("carrier-02", "DoorOpen", True)
    assert [e[:2] + e[3:] for e in events_of(gw, "carrier-02")] == [
        (EventCode.DOOR_OPEN_IN_TRANSIT, 1, "payload door opened in transit", t_door),
        (EventCode.ALARM, 1, f"alarm {alarm['carrier-02'][-1]} active", t_door + 1)]
    t_fault = written("carrier-03", "MissionState", 4)
    assert [e[:2] + e[4:] for e in events_of(gw, "carrier-03")] == [
        (EventCode.MISSION_FAULT, 1, t_fault), (EventCode.ALARM, 1, t_fault + 1)]
    assert alarm["carrier-03"][-1] == 401
    for carrier in sim.carrier_names:
        spec = gw.store.ring(f"test-site/{DEVICE}/{carrier}.events").stream
        assert spec.kind is StreamKind.EVENT and spec.measurement == "carrier_event"
        assert gw.metric("medgw_events_total", stream=spec.key) == len(events_of(gw, carrier))


async def test_garbage_is_quarantined_and_the_driver_goes_on(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
        await sim.inject_raw("carrier-01", "Speed", "fast")
        await sim.inject_raw("carrier-01", "SpecimenCount", [1, 2, 3])
        await sim.inject_raw("carrier-02", "Battery", math.nan)
        await sim.inject_raw("carrier-03", "PayloadTemperature", math.inf)
        await sim.step(3)
        await wait_for(lambda: in_sync(gw, sim), 10, "data after the garbage")
        assert gw.driver.ready.is_set() and gw.driver.stats.sessions == 1
    assert gw.metric("medgw_malformed_messages_total", source=DEVICE, reason="wrong_type") == 2
    assert gw.metric("medgw_malformed_messages_total", source=DEVICE, reason="not_finite") == 2
    for carrier in sim.carrier_names:
        batch = gw.batch(carrier)
        assert batch is not None and np.isfinite(batch.values[~np.isnan(batch.values)]).all()


async def test_timestamp_source_versus_server_under_clock_skew(sim: CarrierSim) -> None:
    by_source = Gateway(options_for(sim, timestamp_source="source"))
    by_server = Gateway(options_for(sim, timestamp_source="server"))
    async with running(by_source), running(by_server):
        await wait_for(lambda: in_sync(by_source, sim), 10, "the initial values")
        sim.set_clock_skew(-7200.0)  # the carrier's clock is two hours behind
        skew_tick = sim.stats.ticks + 1
        before = time.time_ns()
        await sim.step(3)
        after = time.time_ns()
        await wait_for(lambda: in_sync(by_source, sim)
                       and by_server.count("carrier-01") >= by_source.count("carrier-01"),
                       10, "the skewed ticks")
    skewed = [r.source_ns for r in sim.history if r.tick >= skew_tick]
    assert skewed and max(skewed) < before - 7000 * 10**9
    src = by_source.batch("carrier-01")
    assert src is not None and set(skewed) <= set(src.timestamps_ns.tolist())
    srv = by_server.batch("carrier-01")
    assert srv is not None
    late = srv.timestamps_ns[-3:]
    assert ((late >= before // 1000 * 1000) & (late <= after)).all()  # the server's clock
    offset = by_source.metric("medgw_clock_offset_seconds", stream=src.stream.key)
    assert offset > 7000.0  # receive time minus source time exposes the skew


async def test_explicit_node_ids_with_namespace_uri(sim: CarrierSim) -> None:
    nodes = [
        {"node_id": f"nsu={NAMESPACE_URI};s=carrier-02.PayloadTemperature",
         "stream": "cold-chain", "field": "carrier_02"},
        {"node_id": f"ns={sim.ns};s=carrier-03.PayloadTemperature", "stream": "cold-chain",
         "field": "carrier_03", "unit": "degC"},
    ]
    gw = Gateway(options_for(sim, browse=[], nodes=nodes))
    async with running(gw):
        await sim.step(4)
        await wait_for(lambda: gw.count("cold-chain") >= 5, 10, "the cold-chain stream")
    batch = gw.batch("cold-chain")
    assert batch is not None
    assert batch.stream.fields == ("carrier_02", "carrier_03")
    assert batch.stream.units == ("°C", "degC")  # EngineeringUnits read, or the configured unit
    for field, carrier in (("carrier_02", "carrier-02"), ("carrier_03", "carrier-03")):
        got = {int(t): v for t, v in zip(batch.timestamps_ns, column(batch, field), strict=True)
               if not math.isnan(v)}
        assert got == {t: row["payload_temperature"]
                       for t, row in expected_rows(sim, carrier).items()
                       if "payload_temperature" in row}
    assert [r.stream.key for r in gw.store.rings()] == [f"test-site/{DEVICE}/cold-chain"]


async def test_absolute_deadband_is_applied_by_the_server(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim, deadband=0.5))
    async with running(gw):
        await wait_for(lambda: gw.count("carrier-01") >= 1, 10, "the initial values")
        start_tick = sim.stats.ticks + 1
        await sim.step(20)
        await sim.temperature_excursion("carrier-01", 30.0)  # a jump well over the deadband
        await wait_for(lambda: 30.0 in column(gw.batch("carrier-01"), "payload_temperature"),
                       10, "the temperature jump")
    small = [r for r in sim.history if r.carrier == "carrier-01" and r.tick >= start_tick
             and r.variable in ("Battery", "PayloadTemperature") and r.value != 30.0]
    assert len(small) >= 20  # the simulator did write these ...
    batch = gw.batch("carrier-01")
    assert batch is not None
    late = batch.timestamps_ns >= min(r.source_ns for r in small)
    assert np.isnan(column(batch, "battery")[late]).all()  # ... the deadband held them back
    assert column(batch, "payload_temperature")[late].tolist()[-1] == 30.0


async def test_carrier_removed_and_re_added(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
        await sim.remove_carrier("carrier-03")
        await wait_for(lambda: len(events_of(gw, "carrier-03")) == 9, 10, "9 SIGNAL_BAD events")
        await sim.step(1)
        await sim.restore_carrier("carrier-03")
        restored_tick = sim.stats.ticks
        await wait_for(lambda: len(events_of(gw, "carrier-03")) == 18, 10,
                       "the re-added nodes monitored again (9 'good again' events)")
        since = sim.stats.ticks + 1
        await sim.step(3)
        await wait_for(lambda: in_sync(gw, sim, ["carrier-01", "carrier-02"])
                       and expected_rows(sim, "carrier-03", since).items()
                       <= received_rows(gw.batch("carrier-03")).items(), 10, "carrier-03 data")
    batch = gw.batch("carrier-03")
    assert batch is not None
    bad = batch.quality == Quality.BAD
    assert bad.sum() == 1 and np.isnan(batch.values[bad]).all()
    gone = [r for r in sim.history
            if r.status == ua.StatusCodes.BadNodeIdUnknown and r.variable in NUMERIC]
    assert len(gone) == 9 and batch.timestamps_ns[bad][0] == gone[0].source_ns
    events = events_of(gw, "carrier-03")
    assert {(code, active) for code, active, *_ in events[:9]} == {(EventCode.SIGNAL_BAD, 1)}
    assert sorted(text for *_, text, _ in events[:9]) == sorted(
        f"{name}: BadNodeIdUnknown" for name in batch.stream.fields)
    assert {(code, active) for code, active, *_ in events[9:]} == {(EventCode.SIGNAL_BAD, 0)}
    # the values current when the items were re-created: everything written at restore
    restored_ns, restored = next(iter(expected_rows(sim, "carrier-03", restored_tick).items()))
    assert received_rows(batch)[restored_ns] == restored and len(restored) == 9
    assert gw.driver.stats.sessions == 1  # the session survived; only the items were redone


@pytest.mark.parametrize(("limit", "requests"), [(20, [18, 9]), (4, [9, 9, 9])])
async def test_a_carrier_is_never_split_over_two_item_requests(
        sim: CarrierSim, monkeypatch: pytest.MonkeyPatch, limit: int,
        requests: list[int]) -> None:
    """Requests of whole carriers: with 20 items per request, [18, 9] and not [20, 7].

    A request of 20 would split carrier-03 (2 + 7 items); its initial values would come in
    two publish responses and be stored as two rows of one source time.
    """
    sizes: list[int] = []
    create = UaClient.create_monitored_items

    async def create_then_wait(self: UaClient, params: ua.CreateMonitoredItemsParameters
                               ) -> list[ua.MonitoredItemCreateResult]:
        sizes.append(len(params.ItemsToCreate))
        results = await create(self, params)
        # several publishing intervals (50 ms) before the next request: whatever one
        # request subscribed is published before the next one, as under load
        await asyncio.sleep(0.3)
        return results

    monkeypatch.setattr(UaClient, "create_monitored_items", create_then_wait)
    monkeypatch.setattr(opcua_subscription, "ITEM_BATCH", limit)
    gw = Gateway(options_for(sim))
    async with running(gw):
        await wait_for(lambda: in_sync(gw, sim), 10, "the initial values")
    for carrier in sim.carrier_names:
        batch = gw.batch(carrier)
        assert batch is not None
        assert not np.isnan(batch.values[0]).any()  # the first row holds all 9 variables
        assert len(batch) == 1  # and is the only one (initial values, no tick yet)
    assert sizes == requests
