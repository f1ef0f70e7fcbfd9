"""Grafana dashboards generated from the device model: tables of frozen panel descriptions.

Each dashboard is a tuple of :class:`PanelDesc`; a query is a ``str.format`` template
filled from the :class:`~gateway.ops.grafana.catalog.Catalog` (measurement and field names,
thresholds) and keeps Grafana's own macros (``$timeFilter``, ``$__interval``) and
template variables (``$site``, ``$robot`` ...) for Grafana to substitute.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.ops.grafana.catalog import Catalog
from gateway.ops.grafana.fleet import fleet_dashboard, fleet_label_tables
from gateway.ops.grafana.panels import (
    GRID_WIDTH,
    INFLUX_UID,
    PROM_UID,
    QUALITY_LABELS,
    SCHEMA_VERSION,
    SITE,
    SITE_VAR,
    DashboardDesc,
    PanelDesc,
    VariableDesc,
)

__all__ = ["GRID_WIDTH", "INFLUX_UID", "PROM_UID", "QUALITY_LABELS", "SCHEMA_VERSION",
           "DashboardDesc", "PanelDesc", "VariableDesc", "dashboards_for", "format_context"]

FLEET = DashboardDesc("medgw-fleet", "medgw — fleet overview", (
    SITE_VAR,
    VariableDesc("device", "Device",
                 'SHOW TAG VALUES FROM {all_re} WITH KEY = "device" WHERE ' + SITE),
), (
    PanelDesc("Up: samples in the last 2 minutes (0 or missing = down)", "stat",
              'SELECT count("seq") FROM {all_re} WHERE time > now() - 2m AND ' + SITE
              + ' AND "device" =~ /^$device$/ GROUP BY "site", "device"',
              width=24, height=5, thresholds="up"),
    PanelDesc("Every device: samples and last quality in range", "table",
              'SELECT count("seq") AS "samples", last("quality") AS "last_quality" FROM {all_re}'
              ' WHERE $timeFilter AND ' + SITE + ' AND "device" =~ /^$device$/'
              ' GROUP BY "site", "device"', fmt="table", mappings="quality",
              mapping_field="last_quality"),
    PanelDesc("Stale samples (source silent) per device", "timeseries",
              'SELECT count("quality") FROM {all_re} WHERE $timeFilter AND ' + SITE
              + ' AND "device" =~ /^$device$/ AND "quality" = 3'
              ' GROUP BY time($__interval), "device" fill(none)'),
    PanelDesc("Sample rate per device (samples per interval)", "timeseries",
              'SELECT count("seq") FROM {all_re} WHERE $timeFilter AND ' + SITE
              + ' AND "device" =~ /^$device$/ GROUP BY time($__interval), "device" fill(0)',
              width=24),
))

ROBOT_WHERE = ' WHERE $timeFilter AND ' + SITE + ' AND "device" =~ /^$robot$/'
ROBOT = DashboardDesc("medgw-robot", "medgw — surgical robot", (
    SITE_VAR,
    VariableDesc("robot", "Robot",
                 'SHOW TAG VALUES FROM "joint_state" WITH KEY = "device" WHERE ' + SITE),
    VariableDesc("joint", "Joint", 'SHOW TAG VALUES FROM "joint_state" WITH KEY = "joint"'
                 ' WHERE "device" =~ /^$robot$/'),
), (
    PanelDesc("Operating state", "state-timeline",
              'SELECT last("state") FROM "robot_event"' + ROBOT_WHERE
              + ' GROUP BY time($__interval), "device", "stream" fill(previous)',
              width=24, height=6, mappings="crtk", thresholds="crtk"),
    PanelDesc("Joint positions", "timeseries",
              'SELECT mean("position") FROM "joint_state"' + ROBOT_WHERE
              + ' AND "joint" =~ /^$joint$/ GROUP BY time($__interval), "device", "joint"'
              ' fill(none)', description="rad for revolute joints, m for prismatic joints"),
    PanelDesc("Joint velocities", "timeseries",
              'SELECT mean("velocity") FROM "joint_state"' + ROBOT_WHERE
              + ' AND "joint" =~ /^$joint$/ GROUP BY time($__interval), "device", "joint"'
              ' fill(none)'),
    PanelDesc("Joint efforts", "timeseries",
              'SELECT mean("effort") FROM "joint_state"' + ROBOT_WHERE
              + ' AND "joint" =~ /^$joint$/ GROUP BY time($__interval), "device", "joint"'
              ' fill(none)'),
    PanelDesc("Tool-tip position", "timeseries",
              'SELECT mean("x") AS "x", mean("y") AS "y", mean("z") AS "z" FROM "pose"'
              + ROBOT_WHERE + ' GROUP BY time($__interval), "device", "stream" fill(none)',
              unit="lengthm"),
    PanelDesc("Tool-tip orientation (quaternion)", "timeseries",
              'SELECT mean("qx") AS "qx", mean("qy") AS "qy", mean("qz") AS "qz",'
              ' mean("qw") AS "qw" FROM "pose"' + ROBOT_WHERE
              + ' GROUP BY time($__interval), "device", "stream" fill(none)'),
    PanelDesc("Wrench: force", "timeseries",
              'SELECT mean("fx") AS "fx", mean("fy") AS "fy", mean("fz") AS "fz" FROM "wrench"'
              + ROBOT_WHERE + ' GROUP BY time($__interval), "device", "stream" fill(none)',
              unit="forceN"),
    PanelDesc("Wrench: torque", "timeseries",
              'SELECT mean("tx") AS "tx", mean("ty") AS "ty", mean("tz") AS "tz" FROM "wrench"'
              + ROBOT_WHERE + ' GROUP BY time($__interval), "device", "stream" fill(none)',
              unit="forceNm"),
    PanelDesc("Robot events", "table",
              'SELECT "state", "text" FROM "robot_event"' + ROBOT_WHERE
              + ' ORDER BY time DESC LIMIT 200', width=24, fmt="table", mappings="crtk",
              mapping_field="state"),
))

CARRIER_WHERE = (' WHERE $timeFilter AND ' + SITE + ' AND "device" =~ /^$fleet$/'
                 ' AND "stream" =~ /^$carrier$/')
CARRIERS = DashboardDesc("medgw-carriers", "medgw — transport carriers", (
    SITE_VAR,
    VariableDesc("fleet", "Fleet",
                 'SHOW TAG VALUES FROM "{cm}" WITH KEY = "device" WHERE ' + SITE),
    VariableDesc("carrier", "Carrier", 'SHOW TAG VALUES FROM "{cm}" WITH KEY = "stream"'
                 ' WHERE "device" =~ /^$fleet$/'),
), (
    PanelDesc("Payload temperature (limits {tmin:g}–{tmax:g} °C)", "timeseries",
              'SELECT mean("{temp}") FROM "{cm}"' + CARRIER_WHERE
              + ' GROUP BY time($__interval), "stream" fill(none)', unit="celsius",
              width=16, thresholds="temperature"),
    PanelDesc("Payload temperature now", "stat",
              'SELECT last("{temp}") FROM "{cm}"' + CARRIER_WHERE + ' GROUP BY "stream"',
              unit="celsius", width=8, thresholds="temperature"),
    PanelDesc("Route progress", "timeseries",
              'SELECT last("{route}") FROM "{cm}"' + CARRIER_WHERE
              + ' GROUP BY time($__interval), "stream" fill(none)', unit="percentunit"),
    PanelDesc("Battery", "timeseries",
              'SELECT mean("{battery}") FROM "{cm}"' + CARRIER_WHERE
              + ' GROUP BY time($__interval), "stream" fill(none)', unit="percent",
              thresholds="battery"),
    PanelDesc("Door open and active alarm", "state-timeline",
              'SELECT last("{door}") AS "door_open", last("{alarm}") AS "alarm" FROM "{cm}"'
              + CARRIER_WHERE + ' GROUP BY time($__interval), "stream" fill(previous)',
              width=24, height=7, thresholds="onoff"),
    PanelDesc("Carrier events (door, temperature, mission, alarm)", "table",
              'SELECT "code", "active", "value", "text" FROM "{cem}" WHERE $timeFilter AND '
              + SITE + ' AND "device" =~ /^$fleet$/ AND "stream" =~ /^$carrier\\.events$/'
              ' ORDER BY time DESC LIMIT 200', width=24, fmt="table", mappings="carrier_events",
              mapping_field="code"),
))

HEALTH = DashboardDesc("medgw-gateway", "medgw — gateway health", (
    SITE_VAR,
    VariableDesc("device", "Device",
                 'SHOW TAG VALUES FROM {all_re} WITH KEY = "device" WHERE ' + SITE),
), (
    PanelDesc("Samples stored per stream (InfluxDB)", "timeseries",
              'SELECT count("seq") FROM {all_re} WHERE $timeFilter AND ' + SITE
              + ' AND "device" =~ /^$device$/ GROUP BY time($__interval), "device", "stream"'
              ' fill(0)'),
    PanelDesc("Samples not GOOD (uncertain, bad, stale, gap)", "timeseries",
              'SELECT count("quality") FROM {all_re} WHERE $timeFilter AND ' + SITE
              + ' AND "device" =~ /^$device$/ AND "quality" > 0'
              ' GROUP BY time($__interval), "device" fill(none)'),
    PanelDesc("Data gaps (medgw_gap)", "timeseries",
              'SELECT sum("seconds") FROM "medgw_gap" WHERE $timeFilter AND ' + SITE
              + ' AND "device" =~ /^$device$/ GROUP BY time($__interval), "device" fill(none)',
              unit="s", description="seconds of data missing per device"),
    PanelDesc("Received samples/s (from devices)", "timeseries",
              'sum by (stream) (rate(medgw_samples_received_total{{stream=~"$site/$device/.*"}}'
              '[$__rate_interval]))', source="prom", unit="short"),
    PanelDesc("Published samples/s (acknowledged by the broker)", "timeseries",
              'sum by (stream) (rate(medgw_samples_published_total{{stream=~"$site/$device/.*"}}'
              '[$__rate_interval]))', source="prom", unit="short"),
    PanelDesc("Spooled samples/s (broker unreachable)", "timeseries",
              'sum by (stream) (rate(medgw_samples_spooled_total{{stream=~"$site/$device/.*"}}'
              '[$__rate_interval]))', source="prom", unit="short"),
    PanelDesc("Dropped samples/s by reason", "timeseries",
              'sum by (stream, reason) (rate(medgw_samples_dropped_total'
              '{{stream=~"$site/$device/.*"}}[$__rate_interval]))', source="prom", unit="short"),
    PanelDesc("Ring overrun samples/s", "timeseries",
              'sum by (stream) (rate(medgw_ring_overrun_samples_total'
              '{{stream=~"$site/$device/.*"}}[$__rate_interval]))', source="prom"),
    PanelDesc("Publish lag", "timeseries",
              'max by (stream) (medgw_stream_lag_seconds{{stream=~"$site/$device/.*"}})',
              source="prom", unit="s"),
    PanelDesc("Device session up", "state-timeline",
              'max by (device) (medgw_device_connected{{device=~"$device"}})', source="prom",
              thresholds="up"),
    PanelDesc("Device gap seconds", "timeseries",
              'sum by (device) (increase(medgw_device_gap_seconds_total{{device=~"$device"}}'
              '[$__rate_interval]))', source="prom", unit="s"),
    PanelDesc("Driver task running (0: crashed, restarting, finished or dead)",
              "state-timeline", 'max by (device) (medgw_driver_running{{device=~"$device"}})',
              source="prom", thresholds="up"),
    PanelDesc("Driver restarts since the gateway started", "timeseries",
              'max by (device) (medgw_driver_restarts_total{{device=~"$device"}})',
              source="prom", description="driver tasks restarted after they crashed"),
    PanelDesc("Sequence state resets (seq.json lost or corrupt: numbering under a new epoch)",
              "timeseries", 'max by (instance, reason) (medgw_seq_state_resets_total)',
              source="prom"),
    PanelDesc("Publisher errors per interval (logged with a traceback)", "timeseries",
              'sum by (instance, where) (increase(medgw_publisher_errors_total'
              '[$__rate_interval]))', source="prom"),
    PanelDesc("Spool write errors per interval (disk full, I/O: the spool policy applied)",
              "timeseries", 'sum by (instance) (increase(medgw_spool_write_errors_total'
              '[$__rate_interval]))', source="prom"),
    PanelDesc("Spool records cut by recovery at start-up (damaged or torn)", "timeseries",
              'max by (instance) (medgw_spool_recovery_cut_records_total)', source="prom"),
    PanelDesc("Publications no reader matched (type or QoS)", "timeseries",
              'max by (device, topic) (medgw_unmatched_publications{{device=~"$device"}})',
              source="prom"),
    PanelDesc("Configured topics that never delivered (1: silent since the session started)",
              "state-timeline",
              'max by (device, topic) (medgw_topic_never_delivered{{device=~"$device"}})',
              source="prom", thresholds="onoff"),
    PanelDesc("Samples lost in the middleware per interval (before the driver)", "timeseries",
              'sum by (device, topic, kind) (increase(medgw_middleware_samples_lost_total'
              '{{device=~"$device"}}[$__rate_interval]))', source="prom"),
    PanelDesc("Messages lost at the source per interval (sequence-number holes)", "timeseries",
              'sum by (device, vehicle) (increase(medgw_source_gap_total{{device=~"$device"}}'
              '[$__rate_interval]))', source="prom",
              description="numbered by the source (VDA 5050 headerId) but never received"),
))


def format_context(catalog: Catalog) -> dict[str, Any]:
    """Return the values that fill the query templates of ``catalog``."""
    carrier = catalog.carrier
    measurements = catalog.data_measurements or ("telemetry",)
    context: dict[str, Any] = {
        "all_re": "/^(" + "|".join(re.escape(m) for m in measurements) + ")$/",
        "low_battery": catalog.thresholds.low_battery_pct,
        "label_tables": fleet_label_tables(catalog),
    }
    if carrier is not None:
        context.update(cm=carrier.measurement, cem=carrier.event_measurement,
                       temp=carrier.temperature, tmin=carrier.temperature_min,
                       tmax=carrier.temperature_max, door=carrier.door, alarm=carrier.alarm,
                       route=carrier.route_progress, battery=carrier.battery)
    return context


def generic_dashboard(catalog: Catalog) -> DashboardDesc | None:
    """Return a dashboard with one panel per field-known measurement (synthetic etc.)."""
    panels = []
    for g in catalog.generic:
        fields = ", ".join(f'mean("{f}") AS "{f}"' for f in g.fields)
        if g.event:
            panels.append(PanelDesc(f"{g.measurement} (events)", "table",
                                    f'SELECT "text", "{g.fields[0]}" FROM "{g.measurement}"'
                                    ' WHERE $timeFilter AND ' + SITE
                                    + ' ORDER BY time DESC LIMIT 200', fmt="table"))
        else:
            panels.append(PanelDesc(g.measurement, "timeseries",
                                    f'SELECT {fields} FROM "{g.measurement}" WHERE $timeFilter'
                                    ' AND ' + SITE + ' AND "device" =~ /^$device$/'
                                    ' GROUP BY time($__interval), "device", "stream" fill(none)'))
    if not panels:
        return None
    device = VariableDesc("device", "Device",
                          'SHOW TAG VALUES FROM {all_re} WITH KEY = "device" WHERE ' + SITE)
    return DashboardDesc("medgw-streams", "medgw — other streams", (SITE_VAR, device),
                         tuple(panels))


def dashboards_for(catalog: Catalog) -> list[DashboardDesc]:
    """Choose the dashboards the configured devices need."""
    chosen = [FLEET]
    if catalog.robot_devices or "joint_state" in catalog.measurements:
        chosen.append(ROBOT)
    if catalog.carrier is not None:
        chosen.append(CARRIERS)
    fleet = fleet_dashboard(catalog)
    if fleet is not None:
        chosen.append(fleet)
    chosen.append(HEALTH)
    generic = generic_dashboard(catalog)
    if generic is not None:
        chosen.append(generic)
    return chosen
