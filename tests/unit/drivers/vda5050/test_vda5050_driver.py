"""Driver options, secrets and failures without a broker (a closed loopback port)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from pydantic import ValidationError

from drivers.vda5050 import Vda5050Driver, Vda5050Options
from gateway.driver import DriverContext
from gateway.errors import ConfigError, DeviceError
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def driver(**options: object) -> Vda5050Driver:
    """A driver on a fresh context."""
    ctx = DriverContext("site", "fleet", RingStore(), GatewayMetrics(),
                        logging.getLogger("test.vda5050"))
    return Vda5050Driver(ctx, Vda5050Options.model_validate(options))


def test_topic_filters_wildcard_and_explicit() -> None:
    assert Vda5050Options().topic_filters()[:3] == [
        "uagv/v2/+/+/state", "uagv/v2/+/+/connection", "uagv/v2/+/+/factsheet"]
    opts = Vda5050Options.model_validate({
        "major_versions": ["v3"], "visualization": True, "interface_name": "hospital",
        "vehicles": [{"manufacturer": "acme", "serial_number": "t-1"}]})
    assert opts.topic_filters() == [f"hospital/v3/acme/t-1/{s}" for s in (
        "state", "connection", "factsheet", "visualization")]


@pytest.mark.parametrize("options", [
    {"interface_name": "a/b"}, {"manufacturer": "ac+me"}, {"major_versions": ["#"]},
    {"broker": {"password": "inline"}}, {"unknown": 1},
    {"reconnect_initial_s": 5, "reconnect_max_s": 1},
])
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Vda5050Options.model_validate(options)


def test_missing_secret_is_a_config_error_naming_the_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_FLEET_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"options\.broker\.password") as err:
        driver(broker={"username": "u", "password": {"env": "NO_SUCH_FLEET_SECRET"}})
    assert "NO_SUCH_FLEET_SECRET" in str(err.value) and "device fleet" in str(err.value)


def test_check_on_a_closed_port_is_a_device_error() -> None:
    drv = driver(broker={"port": closed_port(), "connect_timeout_s": 2})
    with pytest.raises(DeviceError, match="cannot connect"):
        asyncio.run(drv.check())


def test_run_keeps_retrying_and_says_why() -> None:
    drv = driver(broker={"port": closed_port(), "connect_timeout_s": 2},
                 reconnect_initial_s=0.05, reconnect_max_s=0.1)

    async def briefly() -> None:
        task = asyncio.create_task(drv.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if drv.last_error:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(briefly())
    assert drv.last_error is not None and "cannot connect" in drv.last_error
    assert drv.ctx.state.last_error == drv.last_error and not drv.ctx.state.connected
    assert drv.sessions == 0
