"""``medgw discover vda5050``: listen on a fleet broker for a while and say what is there.

Read-only like the driver: the same client, connect and subscribe code (Vda5050Driver's),
topic filters with ``+`` for the interface name and version level so any fleet shows
up, and nothing is ever published. Every message is validated by the driver's decode, so
what the listing calls valid is what the driver would store.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from drivers.vda5050.driver import Vda5050Driver
from drivers.vda5050.messages import ConnectionView, FactsheetView, MessageError, StateView, decode
from drivers.vda5050.options import Vda5050Options
from gateway.driver import DriverContext
from gateway.errors import DeviceError
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore

Key = tuple[str, str, str, str]  # (interface name, version level, manufacturer, serial)


@dataclass
class VehicleSeen:
    """One vehicle as seen on the broker: its topics, versions, state rate, connection."""

    interface: str
    level: str  # the topic's version level, e.g. v2
    manufacturer: str
    serial: str
    topics: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)  # the messages' 'version'
    refused: Counter[str] = field(default_factory=Counter)  # quarantine reason -> count
    last_refusal: str = ""
    states: int = 0
    first_state_ns: int = 0
    last_state_ns: int = 0
    last_header: int | None = None
    missing: int = 0  # state headerIds skipped between two received ones
    maps: Counter[str] = field(default_factory=Counter)  # mapId of the states
    connection: str | None = None
    factsheet: FactsheetView | None = None

    @property
    def name(self) -> str:
        """manufacturer/serial, as the driver's logs and ``medgw check`` name a vehicle."""
        return f"{self.manufacturer}/{self.serial}"

    def state_rate_hz(self) -> float:
        """Valid states per second over the time they arrived (0 with fewer than two)."""
        span = (self.last_state_ns - self.first_state_ns) / 1e9
        return (self.states - 1) / span if self.states > 1 and span > 0 else 0.0


@dataclass
class FleetSurvey:
    """What ``survey_fleet`` saw in its window."""

    where: str
    filters: list[str]
    seconds: float
    vehicles: dict[Key, VehicleSeen] = field(default_factory=dict)
    other_topics: Counter[str] = field(default_factory=Counter)  # not 5 levels deep
    overflow: int = 0  # messages of vehicles beyond max_vehicles (not listed)

    def observe(self, topic: str, payload: bytes, receive_ns: int, limit: int) -> None:
        """Record one message (called on the MQTT network thread; never raises)."""
        parts = topic.split("/")
        if len(parts) != 5:
            self.other_topics[topic[:120]] += 1
            return
        interface, level, manufacturer, serial, subtopic = parts
        key = (interface, level, manufacturer, serial)
        seen = self.vehicles.get(key)
        if seen is None:
            if len(self.vehicles) >= limit:
                self.overflow += 1
                return
            seen = self.vehicles[key] = VehicleSeen(interface, level, manufacturer, serial)
        seen.topics[subtopic] += 1
        _note_version(seen, payload)
        major = int(level[1:]) if level[:1] == "v" and level[1:].isdigit() else None
        try:
            view = decode(subtopic, payload, manufacturer, serial, major)
        except MessageError as err:
            seen.refused[err.reason] += 1
            seen.last_refusal = f"{subtopic}: {err.detail}"[:200]
            return
        if isinstance(view, StateView):
            _on_state(seen, view.header_id, receive_ns)
            if view.map_id and len(seen.maps) < 64:
                seen.maps[view.map_id[:80]] += 1
        elif isinstance(view, ConnectionView):
            seen.connection = view.state
        elif isinstance(view, FactsheetView):
            seen.factsheet = view


def _note_version(seen: VehicleSeen, payload: bytes) -> None:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if isinstance(doc, dict) and "version" in doc:
        seen.versions[str(doc["version"])[:20]] += 1


def _on_state(seen: VehicleSeen, header_id: int, receive_ns: int) -> None:
    if seen.states == 0:
        seen.first_state_ns = receive_ns
    seen.states += 1
    seen.last_state_ns = receive_ns
    if seen.last_header is not None and header_id > seen.last_header + 1:
        seen.missing += header_id - seen.last_header - 1
    seen.last_header = header_id


def listening_options(options: Vda5050Options) -> Vda5050Options:
    """The options of the listening session: every version level, visualization too."""
    return Vda5050Options.model_validate({**options.model_dump(exclude_defaults=True),
                                          "major_versions": ("+",), "visualization": True})


async def survey_fleet(options: Vda5050Options, seconds: float,
                       device: str = "discover") -> FleetSurvey:
    """Subscribe (never publish) for ``seconds``; DeviceError if the broker refuses us."""
    listen = listening_options(options)
    ctx = DriverContext("discover", device, RingStore(), GatewayMetrics(),
                        logging.getLogger(f"medgw.discover.{device}"))
    driver = Vda5050Driver(ctx, listen)
    found = FleetSurvey(driver.where, listen.topic_filters(), seconds)
    limit = listen.max_vehicles

    def collect(topic: str, payload: bytes, receive_ns: int) -> None:
        found.observe(topic, payload, receive_ns, limit)

    client = driver._client(f"-discover-{secrets.token_hex(3)}")
    try:
        await driver._open(client, collect, lambda _reason: None)
    except DeviceError as err:
        if "subscription refused" not in str(err) or listen.interface_name != "+":
            raise
        raise DeviceError(f"{err}: this user may not subscribe to any interface name;"
                          " give the fleet's with --interface (often uagv)") from err
    try:
        await asyncio.sleep(seconds)
    finally:
        await driver._close(client)  # the network thread has stopped: found is ours
    return found


def _rate(hz: float) -> float:
    return float(round(hz)) if hz >= 10 else round(hz, 2)


def device_options(found: FleetSurvey, options: Vda5050Options,
                   interface: str | None = None) -> dict[str, Any]:
    """The vda5050 options for the vehicles seen on one interface name (validated)."""
    seen = [v for v in found.vehicles.values() if interface is None or v.interface == interface]
    broker = options.broker.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    block: dict[str, Any] = {"broker": {"host": options.broker.host,
                                        "port": options.broker.port, **broker}}
    block["interface_name"] = interface or options.interface_name
    levels = sorted({v.level for v in seen if v.level[:1] == "v" and v.level[1:].isdigit()})
    if levels:
        block["major_versions"] = levels
    manufacturers = sorted({v.manufacturer for v in seen})
    block["manufacturer"] = manufacturers[0] if len(manufacturers) == 1 else "+"
    serials = [v.serial for v in seen]
    if len(set(serials)) < len(serials):  # one serial at two manufacturers: keep both apart
        block["stream_name"] = "manufacturer.serial"
    if any(v.topics["visualization"] for v in seen):
        block["visualization"] = True
    maps = sorted({m for v in seen for m in v.maps})[:options.max_maps]
    if maps:  # the 'map' field numbers them in this order, stable from day one
        block["maps"] = maps
    rates = [v.state_rate_hz() for v in seen if v.state_rate_hz() > 0]
    if rates:
        block["rate_hz"] = max(0.1, _rate(max(rates)))
    if len(seen) * 2 > options.max_vehicles:
        block["max_vehicles"] = len(seen) * 2
    Vda5050Options.model_validate(block)  # what config check will do with it
    return block
