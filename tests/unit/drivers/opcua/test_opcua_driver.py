"""The OPC UA driver's session loop and device state, without a server.

An unreachable endpoint (a closed loopback port: the real asyncua client, no fake) leaves
the error as text in the device state, which /health serializes; the session loop sleeps
on an event, not on a poll; the certificate pre-check says what it could not check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.opcua import OpcUaDriver, OpcUaOptions
from drivers.opcua import driver as driver_module
from drivers.opcua.session import check_server_certificate, load_der
from gateway.driver import DriverContext
from gateway.errors import DeviceError
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore
from simulators.transport_carrier.certs import client_certificate, server_certificate


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_driver(**extra: Any) -> OpcUaDriver:
    ctx = DriverContext("site", "fleet", RingStore(default_capacity=1024), GatewayMetrics(),
                        logging.getLogger("test.opcua.driver"))
    options = OpcUaOptions.model_validate({
        "endpoint": f"opc.tcp://127.0.0.1:{closed_port()}/x", "security_policy": "None",
        "browse": [{"pattern": "Fleet/*/*"}], "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.1, "request_timeout_s": 1.0, **extra})
    return OpcUaDriver(ctx, options)


async def run_until_error(driver: OpcUaDriver) -> None:
    task = asyncio.create_task(driver.run())
    try:
        for _ in range(400):
            if driver.ctx.state.last_error is not None:
                break
            await asyncio.sleep(0.025)
        assert not task.done()  # still retrying
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_an_unreachable_endpoint_is_an_error_text_health_can_serialize() -> None:
    driver = make_driver()
    asyncio.run(run_until_error(driver))
    state = driver.ctx.state
    assert isinstance(state.last_error, str) and not state.connected
    assert state.last_error.startswith(f"cannot reach OPC UA server {driver.options.endpoint}")
    assert json.loads(json.dumps(asdict(state)))["last_error"] == state.last_error
    assert driver.last_error == state.last_error
    value = driver.ctx.metrics.registry.get_sample_value("medgw_device_connected",
                                                         {"device": "fleet"})
    assert value == 0


class _FakeUaClient:
    state = UaClientState.CONNECTED


class _FakeClient:
    uaclient = _FakeUaClient()


def test_the_session_loop_sleeps_until_its_deadline_and_wakes_on_a_loss(
        monkeypatch: pytest.MonkeyPatch) -> None:
    driver = make_driver(rediscover_interval_s=0)
    driver.client = _FakeClient()  # type: ignore[assignment]
    timeouts: list[float] = []
    real_wait_for = asyncio.wait_for

    async def recording_wait_for(awaitable: Any, timeout: float) -> Any:
        timeouts.append(timeout)
        if len(timeouts) == 1:
            asyncio.get_running_loop().call_soon(driver._mark_lost, "connection lost: test")
        return await real_wait_for(awaitable, timeout)

    monkeypatch.setattr(driver_module.asyncio, "wait_for", recording_wait_for)

    async def serve() -> None:
        with pytest.raises(DeviceError, match="connection lost: test"):
            await driver._serve()

    asyncio.run(serve())
    # one wait, as long as the silence limit (3 keep-alives + request timeout), not a poll
    assert len(timeouts) == 1
    assert timeouts[0] > 3 * 1.0


def test_a_deleted_node_wakes_the_loop_for_an_earlier_rediscovery() -> None:
    driver = make_driver(rediscover_interval_s=600)
    driver._schedule_rediscovery(600)
    assert driver._wake.is_set()  # the first schedule is a new deadline
    driver._wake.clear()
    driver._schedule_rediscovery(600)  # later than planned: nothing changes
    assert not driver._wake.is_set()
    driver._rediscover_soon()
    assert driver._wake.is_set()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    server, client = server_certificate(directory), client_certificate(directory)
    other = server_certificate(directory, name="other-server")
    return {"certificate": client.cert, "private_key": client.key,
            "server_certificate": server.cert, "other": other.cert}


def secure(pki: dict[str, Path]) -> OpcUaOptions:
    return OpcUaOptions.model_validate({
        "endpoint": f"opc.tcp://127.0.0.1:{closed_port()}/x", "request_timeout_s": 1.0,
        "browse": [{"pattern": "Fleet/*/*"}],
        **{k: v for k, v in pki.items() if k != "other"}})


def endpoints_returning(result: Any) -> Any:
    async def fake(self: Client) -> Any:
        if isinstance(result, BaseException):
            raise result
        return result
    return fake


def test_the_pin_check_reports_a_server_it_could_not_ask(pki: dict[str, Path]) -> None:
    note = asyncio.run(check_server_certificate(secure(pki)))  # nothing listens there
    assert note is not None and "not compared before the handshake: GetEndpoints failed" in note
    assert "cannot reach OPC UA server" in note


def test_the_pin_check_reports_endpoints_without_a_certificate(
        pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "connect_and_get_server_endpoints",
                        endpoints_returning([ua.EndpointDescription()]))
    note = asyncio.run(check_server_certificate(secure(pki)))
    assert note is not None and "present no certificate" in note


def test_the_pin_check_passes_the_pinned_and_refuses_another_certificate(
        pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = ua.EndpointDescription(ServerCertificate=load_der(pki["server_certificate"]))
    monkeypatch.setattr(Client, "connect_and_get_server_endpoints",
                        endpoints_returning([pinned]))
    assert asyncio.run(check_server_certificate(secure(pki))) is None
    other = ua.EndpointDescription(ServerCertificate=load_der(pki["other"]))
    monkeypatch.setattr(Client, "connect_and_get_server_endpoints",
                        endpoints_returning([other]))
    with pytest.raises(DeviceError, match="not the trusted server_certificate"):
        asyncio.run(check_server_certificate(secure(pki)))


def test_a_probe_error_of_any_kind_is_reported_not_swallowed(
        pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "connect_and_get_server_endpoints",
                        endpoints_returning(ua.UaStatusCodeError(ua.StatusCodes.BadTimeout)))
    note = asyncio.run(check_server_certificate(secure(pki)))
    assert note is not None and "BadTimeout" in note


def test_a_carrier_whose_stream_is_refused_is_skipped_alone_and_counted() -> None:
    from drivers.opcua.discovery import Variable

    driver = make_driver()
    table = driver.table
    variables = [Variable(ua.NodeId(f"{c}.{f}", 2), c, f, "", f"Fleet/{c}/{f}")
                 for c, f in (("carrier-01", "battery"), ("carrier-02", "bad\\field"),
                              ("carrier-02", "battery"), ("carrier-03", "battery"))]
    bound = table.bind(variables)
    assert sorted({b.stream.name for b in bound}) == ["carrier-01", "carrier-03"]
    assert driver.stats.refused == ("carrier-02",)
    table.bind(variables[1:3])  # seen again at the next rediscovery: counted once
    value = driver.ctx.metrics.registry.get_sample_value(
        "medgw_malformed_messages_total", {"source": "fleet", "reason": "stream_refused"})
    assert value == 1


def test_a_failed_handshake_names_what_the_pin_check_could_not_check(
        pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.opcua.session import open_client

    async def no_answer(self: Client) -> None:
        raise asyncio.TimeoutError

    monkeypatch.setattr(Client, "connect_and_get_server_endpoints",
                        endpoints_returning(ua.UaStatusCodeError(ua.StatusCodes.BadTimeout)))
    monkeypatch.setattr(Client, "connect", no_answer)
    options = secure(pki)
    with pytest.raises(DeviceError) as info:
        asyncio.run(open_client(options))
    message = str(info.value)
    assert message.startswith(f"OPC UA server {options.endpoint}: no answer within 1 s")
    assert "not compared before the handshake: GetEndpoints failed" in message


def test_an_unreachable_secure_server_is_said_once(pki: dict[str, Path]) -> None:
    from drivers.opcua.session import open_client

    options = secure(pki)
    with pytest.raises(DeviceError) as info:
        asyncio.run(open_client(options))
    assert str(info.value).startswith(f"cannot reach OPC UA server {options.endpoint}")
    assert "not compared" not in str(info.value)
