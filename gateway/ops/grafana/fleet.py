"""The vehicle-fleet dashboard: one section of panels per fleet source (VDA 5050 now).

Every panel is built from a :class:`~gateway.ops.grafana.catalog.FleetSource` (measurement,
field and label-table names), so a second source (an Open-RMF fleet) adds its own section
under the same ``$fleet``/``$vehicle`` variables without a new dashboard.
"""

from __future__ import annotations

import re

from gateway.ops.grafana.catalog import Catalog, FleetSource, Labels, devices_regex
from gateway.ops.grafana.panels import SITE, SITE_VAR, DashboardDesc, PanelDesc, VariableDesc

FLEET_UID = "medgw-vehicles"


def _literal(text: str) -> str:
    """Escape braces: panel queries are ``str.format`` templates (PromQL has braces)."""
    return text.replace("{", "{{").replace("}", "}}")


def state_measurements(catalog: Catalog) -> str:
    """InfluxQL regex over every fleet source's state measurement."""
    return "/^(" + "|".join(re.escape(f.state) for f in catalog.fleets) + ")$/"


def fleet_label_tables(catalog: Catalog) -> dict[str, Labels]:
    """Return the label tables the fleet panels name (``<key>.mode`` ...)."""
    tables: dict[str, Labels] = {}
    for f in catalog.fleets:
        tables.update({f"{f.key}.mode": f.mode_labels, f"{f.key}.events": f.event_labels,
                       f"{f.key}.connection": f.connection_labels,
                       f"{f.key}.error_level": f.error_level_labels})
    return tables


def _where(stream: str = "") -> str:
    return (' WHERE $timeFilter AND ' + SITE + ' AND "device" =~ /^$fleet$/'
            ' AND "stream" =~ /^$vehicle' + re.escape(stream) + '$/')


def _state_panels(f: FleetSource) -> list[PanelDesc]:
    where, by_time = _where(), ' GROUP BY time($__interval), "stream"'
    panels = [
        PanelDesc(f"{f.title}: vehicles on the floor map (x/y, last 10 minutes)", "xychart",
                  f'SELECT last("{f.x}") AS "x", last("{f.y}") AS "y" FROM "{f.state}"'
                  + where + by_time + ' fill(none)', unit="lengthm", width=16, height=12,
                  fmt="table", time_from="10m", partition_by="stream",
                  description="one series per vehicle: its track over the last 10 minutes; "
                  "map coordinates in metres"),
        PanelDesc(f"{f.title}: battery now", "stat",
                  f'SELECT last("{f.battery}") FROM "{f.state}"' + where + ' GROUP BY "stream"',
                  unit="percent", width=8, height=12, thresholds="low_battery"),
        PanelDesc(f"{f.title}: battery", "timeseries",
                  f'SELECT mean("{f.battery}") FROM "{f.state}"' + where + by_time
                  + ' fill(none)', unit="percent", thresholds="low_battery"),
        PanelDesc(f"{f.title}: operating mode", "state-timeline",
                  f'SELECT last("{f.mode}") FROM "{f.state}"' + where + by_time
                  + ' fill(previous)', mappings=f"{f.key}.mode"),
    ]
    if f.errors is not None:
        panels.append(PanelDesc(
            f"{f.title}: active errors, FATAL errors, e-stop", "timeseries",
            f'SELECT max("{f.errors}") AS "errors", max("{f.fatal}") AS "fatal",'
            f' max("{f.estop}") AS "estop" FROM "{f.state}"' + where + by_time + ' fill(none)',
            thresholds="onoff", description="estop: 0 none, 1 auto-ack, 2 manual, 3 remote"))
    return panels


def _coded_panels(f: FleetSource) -> list[PanelDesc]:
    """Panels over event codes the source has (connection changes, errors)."""
    events, out = _where(f.event_suffix), []
    if f.connection_code is not None:
        out.append(PanelDesc(
            f"{f.title}: connection (vehicle's connection topic)", "state-timeline",
            f'SELECT last("value") FROM "{f.events}"' + events + f' AND "code" = '
            f'{f.connection_code:g} GROUP BY time($__interval), "stream" fill(previous)',
            mappings=f"{f.key}.connection"))
    if f.error_code is not None:
        out.append(PanelDesc(
            f"{f.title}: errors (latest first)", "table",
            f'SELECT "value" AS "level", "active", "text" FROM "{f.events}"' + events
            + f' AND "code" = {f.error_code:g} ORDER BY time DESC LIMIT 100', width=24,
            fmt="table", mappings=f"{f.key}.error_level", mapping_field="level",
            description="active 1: raised, 0: cleared"))
    return out


def _prom_devices(f: FleetSource) -> str:
    """PromQL matchers: the chosen fleets, and only this source's devices."""
    return 'device=~"$fleet",device=~"' + "|".join(f.devices) + '"'


def _event_panels(f: FleetSource) -> list[PanelDesc]:
    events, gaps = _where(f.event_suffix), _where(f.gap_suffix)
    panels = [
        PanelDesc(f"{f.title}: {f.session}", "state-timeline",
                  _literal(f"max by (device) (medgw_device_connected{{{_prom_devices(f)}}})"),
                  source="prom", thresholds="up"),
        PanelDesc(f"{f.title}: source gaps (messages the vehicle numbered, nobody received)",
                  "timeseries", f'SELECT sum("{f.missing}") FROM "{f.gaps}"' + gaps
                  + f' AND "device" =~ {devices_regex(f)}'
                  ' GROUP BY time($__interval), "stream" fill(none)',
                  description="holes in the vehicle's own sequence numbers (headerId): lost "
                  "at the source, not inside medgw (that is medgw_gap)"),
        PanelDesc(f"{f.title}: messages lost at the source per interval (gateway counter)",
                  "timeseries",
                  _literal("sum by (device, vehicle) (increase(medgw_source_gap_total"
                           f"{{{_prom_devices(f)}}}[$__rate_interval]))"), source="prom"),
        PanelDesc(f"{f.title}: latest events", "table",
                  "SELECT " + ", ".join(f'"{n}"' for n in (*f.event_fields, "text"))
                  + f' FROM "{f.events}"' + events
                  + ' ORDER BY time DESC LIMIT 200', width=24, fmt="table",
                  mappings=f"{f.key}.events", mapping_field="code"),
    ]
    if f.quarantine_metric is not None:
        panels.append(PanelDesc(
            f"{f.title}: malformed messages quarantined per interval (the other vehicles flow)",
            "timeseries", _literal(f"sum by (device, vehicle, reason) (increase("
                                   f"{f.quarantine_metric}{{{_prom_devices(f)}}}"
                                   "[$__rate_interval]))"), source="prom", width=24))
    return panels


def fleet_dashboard(catalog: Catalog) -> DashboardDesc | None:
    """Return the vehicle-fleet dashboard, or None when no fleet device is configured."""
    if not catalog.fleets:
        return None
    states = state_measurements(catalog)
    variables = (
        SITE_VAR,
        VariableDesc("fleet", "Fleet",
                     f'SHOW TAG VALUES FROM {states} WITH KEY = "device" WHERE ' + SITE),
        VariableDesc("vehicle", "Vehicle", f'SHOW TAG VALUES FROM {states} WITH KEY = "stream"'
                     ' WHERE "device" =~ /^$fleet$/'),
    )
    panels = [p for f in catalog.fleets
              for p in _state_panels(f) + _coded_panels(f) + _event_panels(f)]
    titles = ", ".join(f.title for f in catalog.fleets)
    return DashboardDesc(FLEET_UID, f"medgw — vehicle fleets ({titles})", variables,
                         tuple(panels))
