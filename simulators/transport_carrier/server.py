"""OPC UA server simulating a fleet of smart-transport carriers, with fault injection for tests.

Address space (namespace ``urn:medgw:sim:transport-carrier``)::

    Objects/Fleet/carrier-01/RouteProgress        Double  (EngineeringUnits "1")
                            /RoutePosition        Double  m
                            /Speed                Double  m/s
                            /Battery              Double  %
                            /PayloadTemperature   Double  °C
                            /DoorOpen             Boolean
                            /MissionState         Int32   0 idle .. 4 fault
                            /SpecimenCount        Int32
                            /ActiveAlarm          Int32
                            /AlarmText            String
                            /Route                String property

Node ids are strings: ``ns=<idx>;s=carrier-01.Battery``, so explicit node ids survive a
restart. Only values that changed are written, each with a SourceTimestamp from the
simulation clock; every write is recorded in ``history`` so tests can derive exact
expectations.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asyncua import Node, Server, ua

from simulators.transport_carrier.addressing import (
    NAMESPACE_URI,
    VARIANT_TYPES,
    add_variable,
    data_value,
    ns_to_datetime,
    sid,
    unece_unit_id,
)
from simulators.transport_carrier.certs import SERVER_URI
from simulators.transport_carrier.config import SECURITY_CHOICES, SimConfig, SimStats, WriteRecord
from simulators.transport_carrier.faults import CarrierFaults
from simulators.transport_carrier.fleet import (
    VARIABLES,
    Carrier,
    VariableDef,
    carrier_name,
    make_fleet,
)
from simulators.transport_carrier.security import POLICIES, FixedUsers, PinnedCertificates

__all__ = ["NAMESPACE_URI", "SECURITY_CHOICES", "CarrierSim", "SimConfig", "SimStats",
           "WriteRecord", "carrier_names", "ns_to_datetime", "run_carrier_sim", "unece_unit_id"]

log = logging.getLogger(__name__)


@dataclass
class _CarrierNodes:
    obj: Node
    variables: dict[str, Node] = field(default_factory=dict)


class CarrierSim(CarrierFaults):
    """The simulator: an asyncua server plus the fleet model and a fault-injection API."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.fleet: list[Carrier] = make_fleet(self.config.carriers, self.config.warmup_s)
        self.history: collections.deque[WriteRecord] = collections.deque(
            maxlen=self.config.history_size)
        self.stats = SimStats()
        self.clock_skew_ns = 0
        self.server: Server | None = None
        self.ns = 0
        self._nodes: dict[str, _CarrierNodes] = {}
        self._removed: set[str] = set()
        self._last: dict[tuple[str, str], tuple[Any, int]] = {}
        self._bad: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._start_ns = self.config.start_ns or (time.time_ns() // 1000 * 1000)
        self.paused = False

    # ----------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        """Return the endpoint URL clients connect to (loopback only)."""
        return f"opc.tcp://127.0.0.1:{self.config.port}/{self.config.path}"

    @property
    def carrier_names(self) -> list[str]:
        """Return the browse names of all carriers (present or removed)."""
        return [c.name for c in self.fleet]

    async def __aenter__(self) -> CarrierSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space, publish the current state and start serving."""
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("medgw transport-carrier simulator")
        await server.set_application_uri(SERVER_URI)
        server.set_security_policy([POLICIES[s] for s in self.config.security])
        if self.config.server_cert is not None:
            await server.load_certificate(str(self.config.server_cert.cert))
            await server.load_private_key(str(self.config.server_cert.key))
        if self.config.users is not None:
            server.iserver.user_manager = FixedUsers(self.config.users)
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.config.trusted_clients:
            server.set_certificate_validator(PinnedCertificates(self.config.trusted_clients))
        self.ns = await server.register_namespace(NAMESPACE_URI)
        self.server = server
        self._nodes.clear()
        self._last.clear()
        fleet_folder = await server.nodes.objects.add_folder(
            sid("Fleet", self.ns), ua.QualifiedName("Fleet", self.ns))
        self._fleet_folder = fleet_folder
        for carrier in self.fleet:
            if carrier.name not in self._removed:
                await self._add_carrier_nodes(carrier)
        await server.start()
        await self._publish(self.stats.ticks)
        if not self.config.manual:
            self._task = asyncio.create_task(self._clock(), name="carrier-sim-clock")
        log.info("carrier simulator serving %d carriers on %s", len(self.fleet), self.endpoint)

    async def stop(self) -> None:
        """Stop the clock and the server (the fleet state is kept for a restart)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()
            subscriptions = server.iserver.subscription_service
            await subscriptions.delete_subscriptions(list(subscriptions.subscriptions))

    async def restart(self, downtime_s: float = 1.0) -> None:
        """Fault: stop the server, wait ``downtime_s`` (the fleet keeps moving), start again."""
        ticks = 0 if self.config.manual else int(downtime_s * self.config.rate_hz)
        await self.stop()
        await asyncio.sleep(downtime_s)
        for _ in range(ticks):
            self._advance()
        self.stats.restarts += 1
        await self.start()

    # ----------------------------------------------------------------- address space
    async def _add_carrier_nodes(self, carrier: Carrier) -> None:
        assert self.server is not None
        ns = self.ns
        obj = await self._fleet_folder.add_object(
            sid(carrier.name, ns), ua.QualifiedName(carrier.name, ns))
        nodes = _CarrierNodes(obj)
        await obj.add_property(sid(f"{carrier.name}.Route", ns),
                               ua.QualifiedName("Route", ns), carrier.route)
        initial = carrier.values()
        for var in VARIABLES:
            nodes.variables[var.name] = await add_variable(obj, ns, carrier.name, var,
                                                                 initial[var.name])
        self._nodes[carrier.name] = nodes

    def node_id(self, carrier: str, variable: str) -> ua.NodeId:
        """Return the node id of a carrier variable."""
        return sid(f"{carrier}.{variable}", self.ns)

    # ----------------------------------------------------------------- clock
    async def _clock(self) -> None:
        period = 1.0 / self.config.rate_hz
        next_at = time.monotonic()
        while True:
            next_at += period
            if not self.paused:
                await self.step()
            delay = next_at - time.monotonic()
            if delay < -1.0:  # far behind (overloaded machine): do not try to catch up
                next_at = time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    def _advance(self) -> None:
        dt = 1.0 / self.config.rate_hz
        for carrier in self.fleet:
            carrier.step(dt)
        self.stats.ticks += 1

    async def step(self, n: int = 1) -> None:
        """Advance the fleet ``n`` ticks, publishing the changed values after each."""
        for _ in range(n):
            self._advance()
            await self._publish(self.stats.ticks)

    def source_ns(self, tick: int) -> int:
        """Return the (skewed) source timestamp of a tick, µs-aligned."""
        if self.config.manual:
            base = self._start_ns + tick * int(1e9 / self.config.rate_hz)
        else:
            base = time.time_ns()
        return (base + self.clock_skew_ns) // 1000 * 1000

    async def _publish(self, tick: int) -> None:
        if self.server is None:
            return
        async with self._lock:
            source_ns = self.source_ns(tick)
            source = ns_to_datetime(source_ns)
            server_time = datetime.now(timezone.utc)
            for carrier in self.fleet:
                nodes = self._nodes.get(carrier.name)
                if nodes is None:
                    continue
                values = carrier.values()
                for var in VARIABLES:
                    await self._write(tick, source_ns, source, server_time, carrier.name,
                                      var, nodes.variables[var.name], values[var.name])

    async def _write(self, tick: int, source_ns: int, source: datetime, server_time: datetime,
                     carrier: str, var: VariableDef, node: Node, value: Any) -> None:
        key = (carrier, var.name)
        status = self._bad.get(key, ua.StatusCodes.Good)
        if status != ua.StatusCodes.Good:
            value = None  # a Bad value is null on the wire
        if self._last.get(key) == (value, status):
            return
        assert self.server is not None
        if status == ua.StatusCodes.Good:
            variant = ua.Variant(value, VARIANT_TYPES[var.kind])
        else:
            variant = ua.Variant(None, ua.VariantType.Null)
        dv = data_value(variant, status, source, server_time)
        await self.server.write_attribute_value(node.nodeid, dv)
        self._last[key] = (value, status)
        self.stats.writes += 1
        if var.kind != "string":
            self.stats.numeric_writes += 1
        self.history.append(WriteRecord(tick, source_ns, carrier, var.name, value, status))

def carrier_names(count: int) -> list[str]:
    """Return the browse names of a fleet of ``count`` carriers."""
    return [carrier_name(i) for i in range(count)]


async def run_carrier_sim(port: int = 4840, carriers: int = 20, rate_hz: float = 10.0,
                          duration_s: float | None = None, **kwargs: Any) -> SimStats:
    """Run the simulator until cancelled (or for ``duration_s``); return its counters."""
    sim = CarrierSim(SimConfig(port=port, carriers=carriers, rate_hz=rate_hz, **kwargs))
    async with sim:
        if duration_s is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration_s)
    return sim.stats
