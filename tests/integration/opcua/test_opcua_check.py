"""`medgw check` preflight of an OPC UA device: a real session, clear refusal reasons."""

from __future__ import annotations

import pytest

from gateway.errors import DeviceError
from simulators.transport_carrier import CarrierSim
from tests.integration.opcua.opcua_support import Gateway, Pki, options_for
from tests.integration.opcua.test_opcua_security import secure_options

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_check_reports_a_working_session(sim: CarrierSim) -> None:
    detail = await Gateway(options_for(sim)).driver.check()
    assert detail == "session ok (security None), server state Running"


async def test_check_over_signandencrypt(secure_sim: CarrierSim, pki: Pki) -> None:
    detail = await Gateway(secure_options(secure_sim, pki)).driver.check()
    assert detail.startswith("session ok (Basic256Sha256 SignAndEncrypt)")


async def test_check_names_the_refusal(secure_sim: CarrierSim, pki: Pki) -> None:
    with pytest.raises(DeviceError, match="wrong username or password"):
        await Gateway(secure_options(secure_sim, pki, password="nope")).driver.check()
