"""``medgw discover vda5050``: vehicles, manufacturers, versions, topics, state rates; a block."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from drivers.vda5050 import FleetSurvey, Vda5050Options, VehicleSeen, device_options, survey_fleet
from gateway.errors import DeviceError

PASSWORD_ENV = "MEDGW_FLEET_PASSWORD"


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); 1883 when no port."""
    host, port = text, "1883"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"--broker {text!r}: give HOST or HOST:PORT (e.g. 127.0.0.1:1883)")
    return host, int(port)


def options_for(broker: str, interface: str | None, username: str | None = None,
                password_env: str | None = None, password_file: Path | None = None,
                tls: dict[str, Path] | None = None, protocol: str = "3.1.1") -> Vda5050Options:
    """The listening options from the command line (a password only by reference)."""
    host, port = parse_broker(broker)
    fleet: dict[str, Any] = {"host": host, "port": port, "protocol": protocol}
    if username is not None:
        fleet["username"] = username
        fleet["password"] = ({"file": password_file} if password_file is not None
                             else {"env": password_env or PASSWORD_ENV})
    if tls:
        fleet["tls"] = tls
    try:
        return Vda5050Options.model_validate({"broker": fleet,
                                              "interface_name": interface or "+"})
    except ValueError as err:  # pydantic: what the driver refuses, named by the option
        raise DeviceError(f"discover vda5050: {err}") from err


def vehicle_lines(v: VehicleSeen) -> list[str]:
    """One vehicle: topic and message versions, topics seen, state rate, connection."""
    versions = ", ".join(sorted(v.versions)) or "-"
    topics = ", ".join(f"{t} {n}" for t, n in sorted(v.topics.items()))
    lines = [f"  {v.name}: interface {v.interface}, topic {v.level}, messages {versions}",
             f"      topics seen: {topics}"]
    if v.states:
        lines.append(f"      state: {v.states} valid at {v.state_rate_hz():.1f} Hz,"
                     f" {v.missing} headerId(s) skipped")
        lines.append(f"      maps: {', '.join(sorted(v.maps)) or '-'}")
    else:
        lines.append("      state: none valid in the window")
    lines.append(f"      connection: {v.connection or 'not seen (no retained message)'}")
    if v.factsheet is not None:
        f = v.factsheet
        lines.append(f"      factsheet: series {f.series_name or '-'}, {f.kinematic or '-'},"
                     f" {f.robot_class or '-'}")
    if v.refused:
        why = ", ".join(f"{r} {n}" for r, n in sorted(v.refused.items()))
        lines.append(f"      refused by the driver's decode: {why} (last: {v.last_refusal})")
    return lines


def summary_lines(found: FleetSurvey) -> list[str]:
    """Manufacturers, topic version levels and message versions over the whole fleet."""
    seen = list(found.vehicles.values())
    makers = Counter(v.manufacturer for v in seen)
    levels = Counter(v.level for v in seen)
    versions = Counter(ver for v in seen for ver in v.versions)
    interfaces = Counter(v.interface for v in seen)

    def counted(c: Counter[str]) -> str:
        return ", ".join(f"{k} ({n})" for k, n in sorted(c.items())) or "-"
    lines = [f"interface names: {counted(interfaces)}", f"manufacturers: {counted(makers)}",
             f"protocol versions (vehicles): topic {counted(levels)};"
             f" messages {counted(versions)}"]
    if found.other_topics:
        lines.append(f"other topics (not VDA 5050's 5 levels): {len(found.other_topics)}")
    if found.overflow:
        lines.append(f"{found.overflow} message(s) of vehicles beyond max_vehicles not listed")
    return lines


def blocks_for(found: FleetSurvey, options: Vda5050Options, name: str) -> list[dict[str, Any]]:
    """One device per interface name seen (one device with the options' when none)."""
    interfaces = sorted({v.interface for v in found.vehicles.values()})
    if not interfaces:
        listen = options.model_copy(update={"interface_name": "uagv"}) \
            if options.interface_name == "+" else options
        return [{"name": name, "driver": "vda5050", "options": device_options(found, listen)}]
    return [{"name": name if len(interfaces) == 1 else f"{name}-{i}", "driver": "vda5050",
             "options": device_options(found, options, i)} for i in interfaces]


def vda5050_report(options: Vda5050Options, seconds: float, name: str) -> tuple[str, str]:
    """Listen, then return (the listing, the device block(s) as YAML)."""
    found = asyncio.run(survey_fleet(options, seconds, name))
    lines = [f"VDA 5050 {found.where}, listened {seconds:g} s (subscribe only) on"
             f" {', '.join(found.filters)}: {len(found.vehicles)} vehicle(s)"]
    for key in sorted(found.vehicles, key=lambda k: (k[2], k[3], k[0], k[1])):
        lines += vehicle_lines(found.vehicles[key])
    if found.vehicles:
        lines += summary_lines(found)
    else:
        lines.append("  no vehicle published: are the vehicles connected to this broker, is"
                     " --interface right, may this user read their topics (ACL)?")
    head = ["# medgw device block (under devices: in the gateway config); rate_hz is the"
            " fastest state rate seen", "# (it sizes the rings), maps the mapIds seen (the"
            " 'map' field is the index); medgw only subscribes"]
    if options.broker.password is not None and options.broker.password.env is not None:
        head.append(f"# the password is read from ${options.broker.password.env} at each"
                    " connect, never written here")
    if not found.vehicles:
        head.append("# nothing was seen: interface_name and versions are the defaults")
    body = yaml.safe_dump(blocks_for(found, options, name), sort_keys=False, width=100)
    return "\n".join(lines), "\n".join(head) + "\n" + body
