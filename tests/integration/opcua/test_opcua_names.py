"""Browse names that are no stream or field names, against a real asyncua server.

The issue's fleet: objects `carrier 1`, `carrier,1`, `carrier=1`, `carrier"1`,
`carrier\\1`, `carrier_1`, emoji, `status` ... used to become 6 streams out of 12 objects,
silently. Each object must become its own stream with its data, the names the same after
the server is rebuilt with its objects in another order, and each mapping logged once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from asyncua import Server, ua

from drivers.opcua.naming import short_hash
from tests.integration.opcua.opcua_support import Gateway, free_port, running, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OBJECTS = ["carrier 1", "carrier,1", "carrier=1", 'carrier"1', "carrier\\1", "carrier_1",
           "🚑", "🚒", "status", "carrier-07", "carrier-07.events", "Tube Station #3"]
VARIABLES = {"Battery": 80.0, "Quality": 1.0, "Seq": 2.0, "PayloadTemperature": 5.0}


@contextlib.asynccontextmanager
async def fleet_server(port: int, objects: list[str]) -> AsyncIterator[Server]:
    """A plain asyncua server on loopback with Objects/Fleet/<object>/<variable>."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/names")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:medgw:test:names")
    fleet = await server.nodes.objects.add_object(ua.NodeId("Fleet", ns), ua.QualifiedName(
        "Fleet", ns))
    for index, name in enumerate(objects):
        obj = await fleet.add_object(ua.NodeId(f"obj-{name}", ns), ua.QualifiedName(name, ns))
        for variable, value in VARIABLES.items():
            await obj.add_variable(ua.NodeId(f"{name}.{variable}", ns),
                                   ua.QualifiedName(variable, ns), value + index)
    async with server:
        yield server


def streams_of(gw: Gateway) -> dict[str, str]:
    """Map each object's browse name to the stream the driver made of it."""
    return {b.variable.path.split("/")[1]: b.stream.name for b in gw.driver.bindings.values()}


async def test_every_object_is_its_own_stream_with_stable_names(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    options = {"endpoint": f"opc.tcp://127.0.0.1:{port}/names", "security_policy": "None",
               "browse": [{"pattern": "Fleet/*/*"}], "publishing_interval_ms": 50,
               "rediscover_interval_s": 0, "events": {"enabled": False}}
    caplog.set_level(logging.WARNING, logger="test.opcua")
    async with fleet_server(port, OBJECTS):
        gw = Gateway(options)
        async with running(gw):
            await wait_for(lambda: all(gw.count(s) >= 1 for s in set(streams_of(gw).values()))
                           and len(streams_of(gw)) == len(OBJECTS), 15, "every carrier's row")
            first = streams_of(gw)
            for obj, stream in first.items():
                batch = gw.batch(stream)
                assert batch is not None
                assert batch.stream.fields == ("battery", "quality_", "seq_",
                                               "payload_temperature")
                assert batch.values[0][0] == VARIABLES["Battery"] + OBJECTS.index(obj)
    assert len(set(first.values())) == len(OBJECTS)
    assert first["carrier_1"] == "carrier_1" and first["carrier-07"] == "carrier-07"
    assert first["carrier 1"] == f"carrier_1-{short_hash('carrier 1')}"
    assert first["status"] != "status"
    renames = [r for r in caplog.records if "browse name 'Fleet/" in r.getMessage()]
    assert len(renames) == len({r.getMessage() for r in renames})  # each logged once
    assert any("'Fleet/carrier 1' named carrier_1-" in r.getMessage() for r in renames)

    async with fleet_server(port, list(reversed(OBJECTS))):  # rebuilt, other order
        again = Gateway(options)
        async with running(again):
            await wait_for(lambda: len(streams_of(again)) == len(OBJECTS), 15, "the bindings")
            assert streams_of(again) == first
