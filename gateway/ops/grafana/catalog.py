"""What the configured devices write to InfluxDB: measurements, fields and event labels.

Derived from the config only (no device is contacted): drivers whose streams are only
known at runtime (ros2 discovery, opcua browsing) are described by their fixed mapping
tables and typed options (the options model the registry parsed, checked with isinstance
against the driver package's public model); other drivers by an optional ``measurement``
option.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from drivers.opcua import OpcUaOptions
from drivers.synthetic import SyntheticOptions
from gateway.config import LoadedConfig
from gateway.model import StreamKind

ROBOT_DRIVERS = frozenset({"ros2"})


@dataclass(frozen=True)
class CarrierFields:
    """Field names and thresholds of carrier streams (from the opcua driver's options)."""

    measurement: str
    event_measurement: str
    temperature: str
    temperature_min: float
    temperature_max: float
    door: str
    alarm: str
    mission: str
    # variables of the fleet's carrier model that no event rule names (browse name
    # RouteProgress, Battery: see simulators/transport_carrier), drawn as they are
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


def _carrier_fields(options: OpcUaOptions) -> CarrierFields:
    events = options.events
    return CarrierFields(
        measurement=options.measurement,
        event_measurement=options.event_measurement,
        temperature=events.temperature_field,
        temperature_min=events.temperature_min,
        temperature_max=events.temperature_max,
        door=events.door_field,
        alarm=events.alarm_field,
        mission=events.mission_field,
    )


def _synthetic(options: SyntheticOptions) -> list[GenericMeasurement]:
    return [GenericMeasurement(stream.measurement, tuple(f"f{i}" for i in range(stream.fields)),
                               stream.kind is StreamKind.EVENT)
            for stream in options.streams]


def _declared_measurement(options: BaseModel) -> str | None:
    """The ``measurement`` option of another driver's model, if it declares one."""
    value = options.model_dump().get("measurement") if "measurement" in type(
        options).model_fields else None
    return value if isinstance(value, str) else None


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
        elif isinstance(options, OpcUaOptions):
            carriers.append(device.name)
            carrier = carrier or _carrier_fields(options)
            measurements += [options.measurement, options.event_measurement]
        elif isinstance(options, SyntheticOptions):
            found = _synthetic(options)
            generic += found
            measurements += [g.measurement for g in found]
        elif (measurement := _declared_measurement(options)) is not None:
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
