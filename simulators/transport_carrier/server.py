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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509

from simulators.transport_carrier.certs import SERVER_URI, CertPair
from simulators.transport_carrier.fleet import (
    VARIABLES,
    Carrier,
    MissionState,
    VariableDef,
    carrier_name,
    make_fleet,
)

NAMESPACE_URI = "urn:medgw:sim:transport-carrier"
EU_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SECURITY_CHOICES = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")
_VARIANT = {
    "double": ua.VariantType.Double,
    "bool": ua.VariantType.Boolean,
    "int32": ua.VariantType.Int32,
    "string": ua.VariantType.String,
}
_POLICY = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """How the simulator runs: port, fleet size, update rate, security."""

    port: int = 4840
    carriers: int = 20
    rate_hz: float = 10.0
    manual: bool = False  # True: no clock task, tests call step()
    path: str = "medgw/carriers"
    security: tuple[str, ...] = SECURITY_CHOICES
    server_cert: CertPair | None = None  # required for the Basic256Sha256 endpoints
    trusted_clients: tuple[Path, ...] = ()  # pinned client certificates; empty = any
    users: Mapping[str, str] | None = None  # username -> password; None = anonymous
    history_size: int = 200_000
    warmup_s: float = 30.0  # fleet state is advanced by this much before serving
    start_ns: int | None = None  # manual mode: source time of tick 0 (default: now)

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 100.0:
            raise ValueError(f"rate_hz must be within 1..100 Hz, got {self.rate_hz}")
        if not 1 <= self.carriers <= 10_000:
            raise ValueError(f"carriers must be within 1..10000, got {self.carriers}")
        unknown = [s for s in self.security if s not in SECURITY_CHOICES]
        if unknown or not self.security:
            raise ValueError(f"security must be a non-empty subset of {SECURITY_CHOICES}")
        if any(s != "None" for s in self.security) and self.server_cert is None:
            raise ValueError("server_cert is required for Basic256Sha256 endpoints")


@dataclass(frozen=True)
class WriteRecord:
    """One value the simulator wrote: what a subscriber should see."""

    tick: int
    source_ns: int
    carrier: str
    variable: str
    value: Any
    status: int  # OPC UA status code value (0 = Good)
    injected: bool = False  # written by inject_raw (garbage a subscriber should refuse)


@dataclass
class SimStats:
    """Counters of what the simulator did."""

    ticks: int = 0
    writes: int = 0
    numeric_writes: int = 0  # writes of non-string variables (what a numeric subscriber sees)
    restarts: int = 0


@dataclass
class _CarrierNodes:
    obj: Node
    variables: dict[str, Node] = field(default_factory=dict)


class _UserManager(UserManager):
    """Username/password check against a fixed table (anonymous refused)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        """Return a user for a correct username/password, else None (access denied)."""
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class _PinnedCertificates:
    """Server-side client certificate check: the DER must be one of the trusted files."""

    def __init__(self, trusted: tuple[Path, ...]) -> None:
        self._trusted = {_der(p) for p in trusted}

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        if cert.public_bytes(Encoding.DER) not in self._trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


def _der(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def _sid(identifier: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def _data_value(variant: ua.Variant, status: int, source: datetime,
                server_time: datetime) -> ua.DataValue:
    stamps: Any = (source, server_time)  # asyncua types these as its DateTime subclass
    return ua.DataValue(variant, ua.StatusCode(ua.UInt32(status)), SourceTimestamp=stamps[0],
                        ServerTimestamp=stamps[1])


def ns_to_datetime(ns: int) -> datetime:
    """Convert integer ns since the Unix epoch to an aware UTC datetime (µs resolution)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def unece_unit_id(code: str) -> int:
    """Return the OPC UA UnitId of a UNECE common code (Part 8, 5.6.3)."""
    unit_id = 0
    for char in code:
        unit_id = (unit_id << 8) | ord(char)
    return unit_id


class CarrierSim:
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
        server.set_security_policy([_POLICY[s] for s in self.config.security])
        if self.config.server_cert is not None:
            await server.load_certificate(str(self.config.server_cert.cert))
            await server.load_private_key(str(self.config.server_cert.key))
        if self.config.users is not None:
            server.iserver.user_manager = _UserManager(self.config.users)
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.config.trusted_clients:
            server.set_certificate_validator(_PinnedCertificates(self.config.trusted_clients))
        self.ns = await server.register_namespace(NAMESPACE_URI)
        self.server = server
        self._nodes.clear()
        self._last.clear()
        fleet_folder = await server.nodes.objects.add_folder(
            _sid("Fleet", self.ns), ua.QualifiedName("Fleet", self.ns))
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
            _sid(carrier.name, ns), ua.QualifiedName(carrier.name, ns))
        nodes = _CarrierNodes(obj)
        await obj.add_property(_sid(f"{carrier.name}.Route", ns),
                               ua.QualifiedName("Route", ns), carrier.route)
        initial = carrier.values()
        for var in VARIABLES:
            nodes.variables[var.name] = await self._add_variable(obj, carrier.name, var,
                                                                 initial[var.name])
        self._nodes[carrier.name] = nodes

    async def _add_variable(self, obj: Node, carrier: str, var: VariableDef, value: Any) -> Node:
        ns = self.ns
        node = await obj.add_variable(_sid(f"{carrier}.{var.name}", ns),
                                      ua.QualifiedName(var.name, ns),
                                      ua.Variant(value, _VARIANT[var.kind]))
        description = var.description + (f" [{var.unit}]" if var.unit else "")
        await node.write_attribute(ua.AttributeIds.Description,
                                   ua.DataValue(ua.Variant(ua.LocalizedText(description))))
        if var.unece is not None:
            eu = ua.EUInformation(NamespaceUri=EU_NAMESPACE, UnitId=unece_unit_id(var.unece),
                                  DisplayName=ua.LocalizedText(var.unit),
                                  Description=ua.LocalizedText(var.description))
            await node.add_property(_sid(f"{carrier}.{var.name}.EngineeringUnits", ns),
                                    ua.QualifiedName("EngineeringUnits", 0), eu,
                                    datatype=ua.NodeId(ua.Int32(ua.ObjectIds.EUInformation)))
        return node

    def node_id(self, carrier: str, variable: str) -> ua.NodeId:
        """Return the node id of a carrier variable."""
        return _sid(f"{carrier}.{variable}", self.ns)

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
            variant = ua.Variant(value, _VARIANT[var.kind])
        else:
            variant = ua.Variant(None, ua.VariantType.Null)
        dv = _data_value(variant, status, source, server_time)
        await self.server.write_attribute_value(node.nodeid, dv)
        self._last[key] = (value, status)
        self.stats.writes += 1
        if var.kind != "string":
            self.stats.numeric_writes += 1
        self.history.append(WriteRecord(tick, source_ns, carrier, var.name, value, status))

    # ----------------------------------------------------------------- fault injection
    def carrier(self, name: str) -> Carrier:
        """Return the model of carrier ``name`` (KeyError names it if unknown)."""
        for carrier in self.fleet:
            if carrier.name == name:
                return carrier
        raise KeyError(f"unknown carrier {name!r}")

    async def sensor_bad(self, carrier: str, variable: str = "PayloadTemperature",
                         status: int = ua.StatusCodes.BadSensorFailure) -> None:
        """Fault: the variable reports a Bad status (value null) until ``sensor_ok``."""
        self.carrier(carrier)
        self._bad[(carrier, variable)] = status
        await self._fault_applied()

    async def sensor_ok(self, carrier: str, variable: str = "PayloadTemperature") -> None:
        """Clear a ``sensor_bad`` fault: the next publish writes the Good value again."""
        self._bad.pop((carrier, variable), None)
        await self._fault_applied()

    async def temperature_excursion(self, carrier: str, celsius: float = 11.5) -> None:
        """Fault: the payload temperature jumps to ``celsius`` (None clears it)."""
        self.carrier(carrier).faults.temperature_c = celsius
        await self._fault_applied()

    async def clear_temperature(self, carrier: str) -> None:
        """Clear a temperature excursion."""
        self.carrier(carrier).faults.temperature_c = None
        await self._fault_applied()

    async def open_door_in_transit(self, carrier: str) -> None:
        """Fault: put the carrier in transit (if it is not) and open its payload door."""
        model = self.carrier(carrier)
        if model.state is not MissionState.IN_TRANSIT:
            model.state = MissionState.IN_TRANSIT
            model.phase_s = 0.0
            model.position_m = min(model.position_m, model.route_length_m / 2)
        model.faults.door_forced_open = True
        await self._fault_applied()

    async def close_door(self, carrier: str) -> None:
        """Clear a forced-open door."""
        self.carrier(carrier).faults.door_forced_open = False
        await self._fault_applied()

    async def drive_fault(self, carrier: str, active: bool = True) -> None:
        """Fault: the carrier stops with mission state FAULT and alarm 401 (False clears)."""
        self.carrier(carrier).faults.drive_fault = active
        await self._fault_applied()

    async def _fault_applied(self) -> None:
        """Publish a fault: on a new tick in manual mode (a value gets a time of its own)."""
        if self.config.manual:
            await self.step()
        else:
            await self._publish(self.stats.ticks)

    def set_clock_skew(self, seconds: float) -> None:
        """Fault: offset every following SourceTimestamp by ``seconds``."""
        self.clock_skew_ns = int(seconds * 1e9)

    async def remove_carrier(self, carrier: str) -> None:
        """Fault: delete a carrier's object and variables (subscribers get BadNodeIdUnknown)."""
        nodes = self._nodes.pop(carrier)
        self._removed.add(carrier)
        assert self.server is not None
        now_ns = time.time_ns() // 1000 * 1000
        now = ns_to_datetime(now_ns)
        gone = ua.StatusCodes.BadNodeIdUnknown
        for name, node in nodes.variables.items():
            # what a conformant server tells monitored items of a deleted node
            await self.server.write_attribute_value(
                node.nodeid, _data_value(ua.Variant(None, ua.VariantType.Null), gone, now, now))
            self._drop_datachange_callbacks(node.nodeid)
            self._last.pop((carrier, name), None)
            self.history.append(WriteRecord(self.stats.ticks, now_ns, carrier, name, None, gone))
        await self.server.delete_nodes([nodes.obj], recursive=True)

    def _drop_datachange_callbacks(self, nodeid: ua.NodeId) -> None:
        """Detach monitored items before deleting a node (asyncua would call them un-awaited)."""
        assert self.server is not None
        aspace = self.server.iserver.aspace
        attribute = aspace[nodeid].attributes[ua.AttributeIds.Value]
        for handle in list(attribute.datachange_callbacks):
            aspace.delete_datachange_callback(handle)

    async def restore_carrier(self, carrier: str) -> None:
        """Re-add a removed carrier with the same node ids and publish its current state."""
        self._removed.discard(carrier)
        await self._add_carrier_nodes(self.carrier(carrier))
        await self._fault_applied()

    async def inject_raw(self, carrier: str, variable: str, value: Any,
                         variant_type: ua.VariantType | None = None) -> None:
        """Fault: a buggy firmware publishes ``value`` with status Good, bypassing type checks.

        The server's own write path refuses a value of the wrong type, so this sets the
        attribute and notifies monitored items directly, as broken devices do.
        """
        assert self.server is not None
        nodeid = self.node_id(carrier, variable)
        now_ns = self.source_ns(self.stats.ticks)
        variant = ua.Variant(value) if variant_type is None else ua.Variant(value, variant_type)
        dv = _data_value(variant, ua.StatusCodes.Good, ns_to_datetime(now_ns),
                         datetime.now(timezone.utc))
        attribute = self.server.iserver.aspace[nodeid].attributes[ua.AttributeIds.Value]
        previous, attribute.value = attribute.value, dv
        for handle, callback in list(attribute.datachange_callbacks.items()):
            await callback(handle, dv)
        attribute.value = previous  # keep the declared type so normal writes go on
        self._last.pop((carrier, variable), None)  # next tick writes the real value again
        self.history.append(WriteRecord(self.stats.ticks, now_ns, carrier, variable, value, 0,
                                        injected=True))


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
