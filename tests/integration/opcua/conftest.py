"""Fixtures for OPC UA integration tests: the real carrier simulator and certificates.

Everything runs on 127.0.0.1 with free ports; the simulator is the real asyncua server.
Tests are async (anyio plugin, asyncio backend) so simulator and driver share one loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators.transport_carrier import CarrierSim
from simulators.transport_carrier.certs import client_certificate, server_certificate
from tests.integration.opcua.opcua_support import Pki, running_sim


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio (asyncua is asyncio-only)."""
    return "asyncio"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Generate certificates at runtime into a temp dir."""
    directory = tmp_path_factory.mktemp("opcua-pki")
    return Pki(server_certificate(directory), client_certificate(directory),
               client_certificate(directory, name="rogue-client"))


@pytest.fixture
async def sim() -> AsyncIterator[CarrierSim]:
    """Three carriers, manual clock (tests call step()), no security."""
    async with running_sim() as simulator:
        yield simulator


@pytest.fixture
async def secure_sim(pki: Pki) -> AsyncIterator[CarrierSim]:
    """Basic256Sha256 Sign + SignAndEncrypt only, pinned gateway certificate, one user."""
    async with running_sim(security=("Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"),
                           server_cert=pki.server, trusted_clients=(pki.client.cert,),
                           users={"gateway": "s3cret-pw"}) as simulator:
        yield simulator
