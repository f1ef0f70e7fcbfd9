"""What the configured devices write to InfluxDB: measurements, fields and event labels.

Derived from the config only (no device is contacted): drivers whose streams are only
known at runtime (ros2 discovery, opcua browsing) are described by their fixed mapping
tables and options; unknown drivers are described by an optional ``measurement`` option.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import LoadedConfig

ROBOT_DRIVERS = frozenset({"ros2"})
CARRIER_DRIVERS = frozenset({"opcua"})


@dataclass(frozen=True)
class CarrierFields:
    """Field names and thresholds of carrier streams (from the opcua driver's event rules)."""

    measurement: str = "carrier"
    event_measurement: str = "carrier_event"
    temperature: str = "payload_temperature"
    temperature_min: float = 2.0
    temperature_max: float = 8.0
    door: str = "door_open"
    alarm: str = "active_alarm"
    mission: str = "mission_state"
    route_progress: str = "route_progress"
    battery: str = "battery"


@dataclass(frozen=True)
class GenericMeasurement:
    """A measurement whose fields are known from the config (e.g. the synthetic driver)."""

    measurement: str
    fields: tuple[str, ...]
    event: bool = False


@dataclass(frozen=True)
class Catalog:
    """Everything the dashboards need to know about one gateway config."""

    site: str
    gateway: str
    database: str
    robot_devices: tuple[str, ...] = ()
    carrier_devices: tuple[str, ...] = ()
    carrier: CarrierFields | None = None
    generic: tuple[GenericMeasurement, ...] = ()
    measurements: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def data_measurements(self) -> tuple[str, ...]:
        """Return every measurement written by a device, sorted."""
        return tuple(sorted(set(self.measurements)))


def robot_measurements() -> tuple[str, ...]:
    """Return the measurements of the ros2 driver's frozen type table."""
    from drivers.ros2 import TYPE_TABLE

    return tuple(sorted({m.measurement for m in TYPE_TABLE.values()}))


def _carrier_fields(options: object) -> CarrierFields:
    events = getattr(options, "events", None)
    return CarrierFields(
        measurement=str(getattr(options, "measurement", "carrier")),
        event_measurement=str(getattr(options, "event_measurement", "carrier_event")),
        temperature=str(getattr(events, "temperature_field", "payload_temperature")),
        temperature_min=float(getattr(events, "temperature_min", 2.0)),
        temperature_max=float(getattr(events, "temperature_max", 8.0)),
        door=str(getattr(events, "door_field", "door_open")),
        alarm=str(getattr(events, "alarm_field", "active_alarm")),
        mission=str(getattr(events, "mission_field", "mission_state")),
    )


def _synthetic(options: object) -> list[GenericMeasurement]:
    out = []
    for stream in getattr(options, "streams", ()):
        fields = tuple(f"f{i}" for i in range(int(stream.fields)))
        out.append(GenericMeasurement(str(stream.measurement), fields,
                                      str(getattr(stream.kind, "value", stream.kind)) == "event"))
    return out


def build_catalog(loaded: LoadedConfig) -> Catalog:
    """Describe what every enabled device of ``loaded`` writes."""
    cfg = loaded.config
    robots: list[str] = []
    carriers: list[str] = []
    carrier: CarrierFields | None = None
    generic: list[GenericMeasurement] = []
    measurements: list[str] = []
    notes: list[str] = []
    for device in cfg.devices:
        if not device.enabled:
            continue
        options = loaded.driver_options[device.name]
        if device.driver in ROBOT_DRIVERS:
            robots.append(device.name)
            measurements += robot_measurements()
        elif device.driver in CARRIER_DRIVERS:
            carriers.append(device.name)
            carrier = carrier or _carrier_fields(options)
            measurements += [carrier.measurement, carrier.event_measurement]
        elif device.driver == "synthetic":
            found = _synthetic(options)
            generic += found
            measurements += [g.measurement for g in found]
        elif isinstance(measurement := getattr(options, "measurement", None), str):
            measurements.append(measurement)
        else:
            notes.append(f"device {device.name}: driver {device.driver} declares no measurement;"
                         " it appears only in the gateway health dashboard")
    merged: dict[str, GenericMeasurement] = {}
    for g in generic:
        old = merged.get(g.measurement)
        fields = tuple(dict.fromkeys((old.fields if old else ()) + g.fields))
        merged[g.measurement] = GenericMeasurement(g.measurement, fields, g.event)
    return Catalog(cfg.site, cfg.gateway, cfg.influxdb.database, tuple(robots), tuple(carriers),
                   carrier, tuple(merged.values()), tuple(dict.fromkeys(measurements)),
                   tuple(notes))
