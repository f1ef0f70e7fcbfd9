"""The frozen descriptions dashboards are made of: panels, variables, dashboards."""

from __future__ import annotations

from dataclasses import dataclass

INFLUX_UID = "medgw-influxdb"
PROM_UID = "medgw-prometheus"
SCHEMA_VERSION = 39
GRID_WIDTH = 24

QUALITY_LABELS: tuple[tuple[str, float], ...] = (
    ("GOOD", 0.0), ("UNCERTAIN", 1.0), ("BAD", 2.0), ("STALE", 3.0), ("GAP", 4.0))


@dataclass(frozen=True)
class PanelDesc:
    """One panel: title, visualization, query template and display settings."""

    title: str
    kind: str  # timeseries | stat | state-timeline | table | xychart
    query: str
    source: str = "influx"  # influx (InfluxQL) | prom (PromQL)
    unit: str = ""
    width: int = 12
    height: int = 8
    fmt: str = "time_series"  # InfluxDB result format: time_series | table
    thresholds: str = ""  # name of a threshold set, see render.thresholds
    mappings: str = ""  # name of a label table, see render.label_table
    mapping_field: str = ""  # apply mappings only to this field (table panels)
    description: str = ""
    time_from: str = ""  # the panel's own relative time range, e.g. "10m" (Grafana timeFrom)
    partition_by: str = ""  # split a table result into one frame per value of this column


@dataclass(frozen=True)
class VariableDesc:
    """One query template variable (InfluxQL SHOW TAG VALUES)."""

    name: str
    label: str
    query: str


@dataclass(frozen=True)
class DashboardDesc:
    """One dashboard: uid, title, variables and panels."""

    uid: str
    title: str
    variables: tuple[VariableDesc, ...]
    panels: tuple[PanelDesc, ...]


SITE = '"site" =~ /^$site$/'
SITE_VAR = VariableDesc("site", "Site", 'SHOW TAG VALUES FROM {all_re} WITH KEY = "site"')
