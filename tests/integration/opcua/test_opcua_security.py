"""Basic256Sha256 Sign / SignAndEncrypt with runtime certificates, users, and clear refusals."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

import pytest
from asyncua import ua

from gateway.errors import DeviceError
from simulators.transport_carrier import CarrierSim
from tests.integration.opcua.opcua_support import (
    DEVICE,
    Gateway,
    Pki,
    expected_rows,
    received_rows,
    running,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def secure_options(sim: CarrierSim, pki: Pki, password: str = "s3cret-pw",
                   **extra: Any) -> dict[str, Any]:
    """Options of the gateway's secure session with the simulator (SignAndEncrypt).

    The password is a secret reference to a file, as a gateway config must write it.
    """
    secret = pki.client.cert.parent / f"password-{hashlib.sha256(password.encode()).hexdigest()}"
    secret.write_text(password, encoding="utf-8")
    options: dict[str, Any] = {
        "endpoint": sim.endpoint, "certificate": pki.client.cert,
        "private_key": pki.client.key, "server_certificate": pki.server.cert,
        "username": "gateway", "password": {"file": str(secret)},
        "browse": [{"pattern": "Fleet/*/*"}], "publishing_interval_ms": 50,
        "queue_size": 100, "request_timeout_s": 3.0,
    }
    options.update(extra)
    return options


async def refused(options: dict[str, Any]) -> str:
    """Connect once; return the DeviceError message (the test fails if it connects)."""
    gw = Gateway(options)
    with pytest.raises(DeviceError) as info:
        await gw.driver.connect()
    assert gw.driver.client is None
    return str(info.value)


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_secure_session_delivers_data(secure_sim: CarrierSim, pki: Pki,
                                            mode: str) -> None:
    gw = Gateway(secure_options(secure_sim, pki, security_mode=mode))
    async with running(gw):
        client = gw.driver.client
        assert client is not None
        assert client.security_policy.URI == "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
        assert client.security_policy.Mode == getattr(ua.MessageSecurityMode, mode)
        await secure_sim.step(3)
        await wait_for(lambda: all(received_rows(gw.batch(c)) == expected_rows(secure_sim, c)
                                   for c in secure_sim.carrier_names), 10, "data over the channel")
    assert gw.metric("medgw_device_connected", device=DEVICE) == 0  # closed at the end


async def test_wrong_password_is_refused_clearly(secure_sim: CarrierSim, pki: Pki) -> None:
    message = await refused(secure_options(secure_sim, pki, password="not-the-password"))
    assert message == (f"OPC UA server {secure_sim.endpoint} refused user 'gateway'"
                       " (BadUserAccessDenied): wrong username or password")


async def test_unknown_user_is_refused_clearly(secure_sim: CarrierSim, pki: Pki) -> None:
    message = await refused(secure_options(secure_sim, pki, username="intruder"))
    assert "refused user 'intruder' (BadUserAccessDenied)" in message


async def test_untrusted_client_certificate_is_refused_clearly(secure_sim: CarrierSim,
                                                               pki: Pki) -> None:
    message = await refused(secure_options(secure_sim, pki, certificate=pki.rogue.cert,
                                           private_key=pki.rogue.key))
    assert message == (f"OPC UA server {secure_sim.endpoint} rejected the client certificate"
                       f" {pki.rogue.cert} (BadCertificateUntrusted): add it to the server's"
                       " trusted certificates")


async def test_unexpected_server_certificate_is_refused_clearly(secure_sim: CarrierSim,
                                                                pki: Pki) -> None:
    message = await refused(secure_options(secure_sim, pki, server_certificate=pki.rogue.cert))
    assert message.startswith(f"OPC UA server {secure_sim.endpoint} presents certificate ")
    assert f"not the trusted server_certificate {pki.rogue.cert}" in message


async def test_policy_none_is_refused_by_a_secure_only_server(secure_sim: CarrierSim,
                                                              pki: Pki) -> None:
    options = secure_options(secure_sim, pki, security_policy="None")
    message = await refused(options)
    assert message == (f"OPC UA server {secure_sim.endpoint} offers no endpoint with"
                       " security_policy None")


async def test_the_run_loop_survives_a_refusal_and_keeps_the_reason(secure_sim: CarrierSim,
                                                                    pki: Pki) -> None:
    gw = Gateway(secure_options(secure_sim, pki, password="wrong", reconnect_initial_s=0.1,
                                reconnect_max_s=0.3))
    task = asyncio.create_task(gw.driver.run())
    try:
        await wait_for(lambda: gw.driver.last_error is not None, 10, "the refusal")
        assert "wrong username or password" in str(gw.driver.last_error)
        await asyncio.sleep(0.5)  # a few more attempts: still alive, still refused
        assert not task.done() and gw.metric("medgw_device_connected", device=DEVICE) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
