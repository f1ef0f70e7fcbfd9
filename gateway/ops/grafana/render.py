"""Turn dashboard descriptions into Grafana JSON, and write provisioning files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.config import LoadedConfig
from gateway.ops.grafana.alerts import alert_rules
from gateway.ops.grafana.catalog import Catalog, Thresholds, build_catalog
from gateway.ops.grafana.dashboards import (
    GRID_WIDTH,
    INFLUX_UID,
    PROM_UID,
    QUALITY_LABELS,
    SCHEMA_VERSION,
    DashboardDesc,
    PanelDesc,
    dashboards_for,
    format_context,
)

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/medgw"


def datasource_ref(source: str) -> dict[str, str]:
    """Return the Grafana datasource reference of ``influx`` or ``prom``."""
    if source == "prom":
        return {"type": "prometheus", "uid": PROM_UID}
    return {"type": "influxdb", "uid": INFLUX_UID}


def label_table(name: str, context: dict[str, Any] | None = None
                ) -> tuple[tuple[str, float], ...]:
    """Return an enum label table (name, code) by name, from the drivers' own tables."""
    found = (context or {}).get("label_tables", {}).get(name)
    if found is not None:
        return tuple(found)
    if name == "crtk":
        from drivers.ros2 import CRTK_STATES

        return CRTK_STATES
    if name == "carrier_events":
        from drivers.opcua import EVENT_LABELS

        return EVENT_LABELS
    if name == "quality":
        return QUALITY_LABELS
    raise ValueError(f"unknown label table {name!r}")


_COLORS = {"FAULT": "red", "ENABLED": "green", "DISABLED": "blue", "PAUSED": "yellow",
           "UNKNOWN": "gray", "GOOD": "green", "UNCERTAIN": "yellow", "BAD": "red",
           "STALE": "orange", "GAP": "purple", "AUTOMATIC": "green", "SEMIAUTOMATIC": "blue",
           "MANUAL": "yellow", "SERVICE": "purple", "ONLINE": "green", "OFFLINE": "gray",
           "CONNECTIONBROKEN": "red", "HIBERNATING": "blue", "WARNING": "yellow",
           "CRITICAL": "orange", "FATAL": "red", "ERROR": "red", "ESTOP": "red"}


def value_mappings(name: str, context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Return Grafana value mappings: code -> label text (and color)."""
    options = {
        f"{code:g}": {"text": label, "color": _COLORS.get(label, "orange"), "index": i}
        for i, (label, code) in enumerate(label_table(name, context))
    }
    return [{"type": "value", "options": options}]


def thresholds(name: str, context: dict[str, Any]) -> dict[str, Any]:
    """Return a Grafana absolute threshold set by name (temperature limits from the config)."""
    steps: list[tuple[float | None, str]]
    if name == "temperature":
        steps = [(None, "blue"), (float(context["tmin"]), "green"),
                 (float(context["tmax"]), "red")]
    elif name == "battery":
        steps = [(None, "red"), (20.0, "yellow"), (40.0, "green")]
    elif name == "low_battery":  # the low-battery alert's threshold
        low = float(context["low_battery"])
        steps = [(None, "red"), (low, "yellow"), (2 * low, "green")]
    elif name == "up":
        steps = [(None, "red"), (1.0, "green")]
    elif name == "onoff":
        steps = [(None, "green"), (1.0, "red")]
    elif name == "crtk":
        steps = [(None, "gray"), (3.0, "red")]
    else:
        steps = [(None, "green")]
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


def _target(desc: PanelDesc, query: str) -> dict[str, Any]:
    if desc.source == "prom":
        return {"refId": "A", "datasource": datasource_ref("prom"), "expr": query,
                "range": True, "legendFormat": "__auto"}
    return {"refId": "A", "datasource": datasource_ref("influx"), "query": query,
            "rawQuery": True, "resultFormat": desc.fmt}


def panel_json(desc: PanelDesc, panel_id: int, grid: dict[str, int],
               context: dict[str, Any]) -> dict[str, Any]:
    """Return one panel's JSON."""
    query = desc.query.format(**context)
    defaults: dict[str, Any] = {"unit": desc.unit or "none",
                                "thresholds": thresholds(desc.thresholds, context)}
    overrides: list[dict[str, Any]] = []
    if desc.mappings and desc.mapping_field:
        overrides.append({"matcher": {"id": "byName", "options": desc.mapping_field},
                          "properties": [{"id": "mappings",
                                          "value": value_mappings(desc.mappings,
                                                                  context)}]})
    elif desc.mappings:
        defaults["mappings"] = value_mappings(desc.mappings, context)
    if desc.kind == "timeseries" and desc.thresholds == "temperature":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line+area"}}
    if desc.kind == "xychart":
        defaults["custom"] = {"show": "points", "pointSize": {"fixed": 6}}
    panel: dict[str, Any] = {
        "id": panel_id,
        "type": desc.kind,
        "title": desc.title.format(**context),
        "description": desc.description,
        "gridPos": grid,
        "datasource": datasource_ref(desc.source),
        "targets": [_target(desc, query)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides},
        "options": _options(desc.kind),
    }
    if desc.time_from:
        panel["timeFrom"] = desc.time_from
    if desc.partition_by:
        panel["transformations"] = [{"id": "partitionByValues", "options": {
            "fields": [desc.partition_by], "keepFields": False}}]
    return panel


def _options(kind: str) -> dict[str, Any]:
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background", "graphMode": "none", "textMode": "value_and_name"}
    if kind == "state-timeline":
        return {"mergeValues": True, "showValue": "auto", "rowHeight": 0.9,
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    if kind == "xychart":  # auto (Grafana 10.4+): a series per frame (one per vehicle after
        # partitionByValues), its first number field x, the next ones y
        return {"mapping": "auto", "series": [{}],
                "legend": {"displayMode": "list", "placement": "right", "showLegend": True},
                "tooltip": {"mode": "single", "sort": "none"}}
    return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"}}


def layout(panels: tuple[PanelDesc, ...]) -> list[dict[str, int]]:
    """Pack panels left to right, top to bottom, on Grafana's 24-column grid."""
    grids, x, y, row_height = [], 0, 0, 0
    for desc in panels:
        width = min(desc.width, GRID_WIDTH)
        if x + width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        grids.append({"x": x, "y": y, "w": width, "h": desc.height})
        x += width
        row_height = max(row_height, desc.height)
    return grids


def variable_json(name: str, label: str, query: str) -> dict[str, Any]:
    """Return a multi-value InfluxQL query variable (All selected by default)."""
    return {
        "name": name, "label": label, "type": "query", "datasource": datasource_ref("influx"),
        "query": query, "definition": query, "refresh": 2, "multi": True, "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "hide": 0, "regex": "", "options": [],
    }


def dashboard_json(desc: DashboardDesc, context: dict[str, Any]) -> dict[str, Any]:
    """Return a complete dashboard JSON model."""
    panels = [panel_json(p, i + 1, grid, context)
              for i, (p, grid) in enumerate(zip(desc.panels, layout(desc.panels), strict=True))]
    return {
        "uid": desc.uid, "title": desc.title, "tags": ["medgw"], "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"}, "graphTooltip": 1,
        "templating": {"list": [variable_json(v.name, v.label, v.query.format(**context))
                                for v in desc.variables]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def render_dashboards(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Return every dashboard the catalog needs, keyed by file name."""
    context = format_context(catalog)
    return {f"{d.uid}.json": dashboard_json(d, context) for d in dashboards_for(catalog)}


def datasources_yaml(loaded: LoadedConfig, prometheus_url: str) -> dict[str, Any]:
    """Return the datasource provisioning document (InfluxDB 1.x InfluxQL + Prometheus)."""
    influx = loaded.config.influxdb
    influx_ds: dict[str, Any] = {
        "name": "medgw InfluxDB", "uid": INFLUX_UID, "type": "influxdb", "access": "proxy",
        "url": influx.url, "jsonData": {"dbName": influx.database, "httpMode": "GET"},
        "editable": False,
    }
    if influx.username:
        influx_ds["user"] = influx.username
        influx_ds["secureJsonData"] = {"password": "$MEDGW_INFLUX_PASSWORD"}
    if influx.backend == "v2":
        influx_ds["secureJsonData"] = {"httpHeaderValue1": "Token $MEDGW_INFLUX_TOKEN"}
        influx_ds["jsonData"]["httpHeaderName1"] = "Authorization"
    return {"apiVersion": 1, "datasources": [influx_ds, {
        "name": "medgw Prometheus", "uid": PROM_UID, "type": "prometheus", "access": "proxy",
        "url": prometheus_url, "jsonData": {"timeInterval": "15s"}, "editable": False,
    }]}


def provider_yaml(dashboards_path: str) -> dict[str, Any]:
    """Return the dashboard provider provisioning document."""
    return {"apiVersion": 1, "providers": [{
        "name": "medgw", "orgId": 1, "folder": "medgw", "folderUid": "medgw", "type": "file",
        "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 30,
        "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
    }]}


@dataclass(frozen=True)
class Rendered:
    """What ``render`` wrote."""

    files: tuple[Path, ...]
    dashboards: dict[str, dict[str, Any]]
    alerts: dict[str, Any]
    notes: tuple[str, ...]


def render(loaded: LoadedConfig, out_dir: Path, prometheus_url: str = DEFAULT_PROMETHEUS_URL,
           dashboards_path: str | None = None, thresholds: Thresholds | None = None
           ) -> Rendered:
    """Write dashboards/*.json and provisioning/{datasources,dashboards,alerting}/ under out."""
    catalog = build_catalog(loaded, thresholds)
    dashboards = render_dashboards(catalog)
    alerts = alert_rules(catalog)
    board_dir = out_dir / "dashboards"
    prov = out_dir / "provisioning"
    files: list[Path] = []
    for name, board in dashboards.items():
        files.append(_write(board_dir / name, orjson.dumps(board, option=orjson.OPT_INDENT_2)))
    path = dashboards_path or str(board_dir.resolve())
    for rel, doc in (("datasources/medgw.yaml", datasources_yaml(loaded, prometheus_url)),
                     ("dashboards/medgw.yaml", provider_yaml(path)),
                     ("alerting/medgw-alerts.yaml", alerts)):
        files.append(_write(prov / rel, yaml.safe_dump(doc, sort_keys=False,
                                                       allow_unicode=True).encode()))
    return Rendered(tuple(files), dashboards, alerts, catalog.notes)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data + (b"" if data.endswith(b"\n") else b"\n"))
    return path
