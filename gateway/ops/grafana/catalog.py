"""What the configured devices write to InfluxDB: measurements, fields and event labels.

Derived from the config only (no device is contacted): drivers whose streams are only
known at runtime (ros2 discovery, opcua browsing) are described by their fixed mapping
tables and typed options (the options model the registry parsed, checked with isinstance
against the driver package's public model); other drivers by an optional ``measurement``
option.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from drivers.opcua import OpcUaOptions
from drivers.ros2 import Ros2Options
from drivers.synthetic import SyntheticOptions
from drivers.vda5050 import Vda5050Options
from gateway.config import LoadedConfig
from gateway.model import StreamKind

ROBOT_DRIVERS = frozenset({"ros2"})
RMF_FLEET_TYPE = "rmf_fleet_msgs/msg/FleetState"
RMF_FLEET_TOPIC = "/fleet_states"


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
class Thresholds:
    """Alert thresholds the device model does not carry (``medgw grafana render`` options)."""

    low_battery_pct: float = 20.0
    source_gap_per_min: float = 1.0  # messages lost at the source, averaged over 10 minutes


Labels = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class FleetSource:
    """One fleet protocol as the vehicle dashboard and the fleet alerts draw it.

    Each vehicle is one sampled stream (``state``, named by the vehicle), one event stream
    ``<vehicle><event_suffix>`` and one source-gap stream ``<vehicle><gap_suffix>``. VDA 5050
    is the first source; an Open-RMF fleet (ros2 ``rmf_fleet`` streams) plugs in as a second
    one with its own measurements, fields and label tables.
    """

    key: str  # short id: alert uids, label-table names
    title: str
    devices: tuple[str, ...]
    state: str
    events: str
    gaps: str
    mode_labels: Labels
    event_labels: Labels
    connection_labels: Labels
    error_level_labels: Labels
    connection_code: float | None  # event code of connection changes (None: no such events)
    error_code: float | None  # event code of errors (value: error_level_labels)
    x: str = "x"
    y: str = "y"
    battery: str = "battery_charge"
    mode: str = "operating_mode"
    errors: str | None = "errors"  # active errors (None: the source has no error list)
    fatal: str = "fatal_errors"  # state field the FATAL alert tests with fatal_when
    fatal_when: str = "> 0"  # e.g. an RMF fleet: fatal="mode", fatal_when="== 8"
    fatal_name: str = "a FATAL error"  # what the FATAL alert calls it
    estop: str = "estop"  # state field the e-stop alert tests with estop_when
    estop_when: str = "> 0"
    session: str = "medgw's session to the fleet broker"
    quarantine_metric: str | None = "medgw_source_quarantined_total"  # malformed, per vehicle
    missing: str = "missing"  # field of the gap measurement: messages lost
    event_fields: tuple[str, ...] = ("code", "active", "value")  # shown with "text"
    event_suffix: str = ".events"
    gap_suffix: str = ".source_gap"


def devices_regex(source: FleetSource) -> str:
    """InfluxQL regex over the source's devices (two sources share medgw_source_gap)."""
    return "/^(" + "|".join(re.escape(d) for d in source.devices) + ")$/"


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
    fleets: tuple[FleetSource, ...] = ()
    thresholds: Thresholds = Thresholds()

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


def _unique_codes(table: dict[str, int]) -> Labels:
    """(label, code) pairs with one label per code (the first spelling wins)."""
    seen: dict[int, str] = {}
    for label, code in table.items():
        seen.setdefault(code, label)
    return tuple((label, float(code)) for code, label in sorted(seen.items()))


def vda5050_source(devices: tuple[str, ...]) -> FleetSource:
    """Describe the vda5050 driver's streams from its exported tables."""
    from drivers.vda5050 import (
        CONNECTION_STATES,
        ERROR_LEVELS,
        EVENT_LABELS,
        OPERATING_MODES,
        EventCode,
    )

    return FleetSource(
        key="vda5050", title="VDA 5050", devices=devices, state="vda5050_state",
        events="vda5050_event", gaps="medgw_source_gap",
        mode_labels=_unique_codes(OPERATING_MODES), event_labels=EVENT_LABELS,
        connection_labels=_unique_codes(CONNECTION_STATES),
        error_level_labels=_unique_codes(ERROR_LEVELS),
        connection_code=float(EventCode.CONNECTION), error_code=float(EventCode.ERROR))


def rmf_source(devices: tuple[str, ...]) -> FleetSource:
    """Describe the ros2 driver's Open-RMF robot streams (FleetState fanned out per robot)."""
    from drivers.ros2 import RMF_ROBOT_EVENTS, RMF_ROBOT_MODES

    modes = dict(RMF_ROBOT_MODES)
    return FleetSource(
        key="rmf", title="Open-RMF", devices=devices, state="rmf_robot",
        events="rmf_robot_event", gaps="medgw_source_gap", mode_labels=RMF_ROBOT_MODES,
        event_labels=RMF_ROBOT_EVENTS, connection_labels=(), error_level_labels=(),
        connection_code=None, error_code=None, battery="battery", mode="mode", errors=None,
        fatal="mode", fatal_when=f"== {modes['ADAPTER_ERROR']:g}", fatal_name="ADAPTER_ERROR",
        estop="mode", estop_when=f"== {modes['EMERGENCY']:g}", session="medgw's DDS session",
        event_fields=("code", "mode", "previous"), quarantine_metric=None)


def reads_rmf_fleet(options: Ros2Options) -> bool:
    """Whether a ros2 device's topics or patterns take an Open-RMF FleetState."""
    names = ["/" + t.name.lstrip("/") for t in options.topics if t.type in (None,
                                                                            RMF_FLEET_TYPE)]
    return (any(t.type == RMF_FLEET_TYPE for t in options.topics) or RMF_FLEET_TOPIC in names
            or any(fnmatch.fnmatchcase(RMF_FLEET_TOPIC, "/" + p.lstrip("/"))
                   for p in options.patterns))


def _fleet_measurements(options: Vda5050Options) -> list[str]:
    extra = ["vda5050_visualization"] if options.visualization else []
    return ["vda5050_state", "vda5050_event", "medgw_source_gap", *extra]


def _synthetic(options: SyntheticOptions) -> list[GenericMeasurement]:
    return [GenericMeasurement(stream.measurement, tuple(f"f{i}" for i in range(stream.fields)),
                               stream.kind is StreamKind.EVENT)
            for stream in options.streams]


def _declared_measurement(options: BaseModel) -> str | None:
    """The ``measurement`` option of another driver's model, if it declares one."""
    value = options.model_dump().get("measurement") if "measurement" in type(
        options).model_fields else None
    return value if isinstance(value, str) else None


def build_catalog(loaded: LoadedConfig, thresholds: Thresholds | None = None) -> Catalog:
    """Describe what every enabled device of ``loaded`` writes."""
    cfg = loaded.config
    vehicles: list[str] = []
    rmf: list[str] = []
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
            if isinstance(options, Ros2Options) and reads_rmf_fleet(options):
                rmf.append(device.name)
        elif isinstance(options, OpcUaOptions):
            carriers.append(device.name)
            carrier = carrier or _carrier_fields(options)
            measurements += [options.measurement, options.event_measurement]
        elif isinstance(options, Vda5050Options):
            vehicles.append(device.name)
            measurements += _fleet_measurements(options)
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
    fleets = (((vda5050_source(tuple(vehicles)),) if vehicles else ())
              + ((rmf_source(tuple(rmf)),) if rmf else ()))
    return Catalog(cfg.site, cfg.gateway, cfg.influxdb.database, tuple(robots), tuple(carriers),
                   carrier, tuple(merged.values()), tuple(dict.fromkeys(measurements)),
                   tuple(notes), fleets, thresholds or Thresholds())
