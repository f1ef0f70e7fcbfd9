"""Session loss: server restart, server not there yet; backoff, resubscription, gap metric."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from simulators.transport_carrier import CarrierSim, SimConfig
from tests.integration.opcua.opcua_support import (
    DEVICE,
    Gateway,
    expected_rows,
    free_port,
    options_for,
    received_rows,
    running,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def has_all_since(gw: Gateway, sim: CarrierSim, tick: int) -> bool:
    """True when every carrier's ring holds everything written from ``tick`` on."""
    return all(expected_rows(sim, c, tick).items() <= received_rows(gw.batch(c)).items()
               for c in sim.carrier_names)


async def test_server_restart_resubscribes_and_reports_the_gap(sim: CarrierSim) -> None:
    downtime_s = 1.5
    gw = Gateway(options_for(sim))
    async with running(gw):
        await sim.step(3)
        await wait_for(lambda: has_all_since(gw, sim, 0), 10, "data before the restart")
        assert gw.metric("medgw_device_connected", device=DEVICE) == 1
        await sim.restart(downtime_s)
        await wait_for(lambda: gw.driver.stats.sessions == 2, 20, "the second session")
        restart_tick = sim.stats.ticks
        await sim.step(5)
        await wait_for(lambda: has_all_since(gw, sim, restart_tick), 10,
                       "data after the restart")
        assert gw.metric("medgw_device_connected", device=DEVICE) == 1
    assert gw.metric("medgw_device_reconnects_total", device=DEVICE) == 1
    # data was missing at least while the server was down (measured from the last contact)
    assert gw.metric("medgw_device_gap_seconds_total", device=DEVICE) >= downtime_s
    assert gw.driver.last_error is None
    # the streams survived the session: same rings, contiguous sequence numbers
    for carrier in sim.carrier_names:
        batch = gw.batch(carrier)
        assert batch is not None and batch.first_seq == 0
        assert set(received_rows(batch)) >= set(expected_rows(sim, carrier))


async def test_restart_with_a_running_clock() -> None:
    """Auto clock at 20 Hz: the driver catches up with live data after the restart."""
    port = free_port()
    live = CarrierSim(SimConfig(port=port, carriers=2, rate_hz=20.0, security=("None",)))
    await live.start()
    try:
        gw = Gateway(options_for(live))
        async with running(gw):
            await wait_for(lambda: gw.count("carrier-01") >= 10, 10, "live data")
            await live.restart(0.5)
            await wait_for(lambda: gw.driver.stats.sessions == 2, 20, "the second session")
            after = live.stats.ticks
            await wait_for(lambda: live.stats.ticks >= after + 10, 10, "10 more ticks")
            await wait_for(lambda: has_all_since(gw, live, after + 1), 10, "live data again")
        assert gw.metric("medgw_device_reconnects_total", device=DEVICE) == 1
    finally:
        await live.stop()


async def test_driver_waits_for_a_server_that_is_not_up_yet() -> None:
    port = free_port()
    options = {"endpoint": f"opc.tcp://127.0.0.1:{port}/medgw/carriers",
               "security_policy": "None", "browse": [{"pattern": "Fleet/*/*"}],
               "publishing_interval_ms": 50, "reconnect_initial_s": 0.1,
               "reconnect_max_s": 0.5, "request_timeout_s": 2.0}
    gw = Gateway(options)
    task = asyncio.create_task(gw.driver.run())
    try:
        await wait_for(lambda: gw.driver.last_error is not None, 10, "a failed attempt")
        assert str(gw.driver.last_error).startswith(
            f"cannot reach OPC UA server opc.tcp://127.0.0.1:{port}/medgw/carriers")
        assert not task.done()  # the driver keeps trying
        assert gw.metric("medgw_device_connected", device=DEVICE) == 0
        late = CarrierSim(SimConfig(port=port, carriers=2, manual=True, security=("None",)))
        await late.start()
        try:
            await wait_for(gw.driver.ready.is_set, 15, "the session once the server is up")
            await late.step(2)
            await wait_for(lambda: has_all_since(gw, late, 0), 10, "data")
            assert gw.driver.last_error is None
            assert gw.metric("medgw_device_reconnects_total", device=DEVICE) == 0  # no gap
        finally:
            await late.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_cancelling_the_driver_closes_the_session(sim: CarrierSim) -> None:
    gw = Gateway(options_for(sim))
    async with running(gw):
        assert sim.server is not None
        subscriptions = sim.server.iserver.subscription_service.subscriptions
        await wait_for(lambda: len(subscriptions) == 1, 5, "the driver's subscription")
    await wait_for(lambda: len(subscriptions) == 0, 5, "the subscription to be deleted")
    assert gw.metric("medgw_device_connected", device=DEVICE) == 0
