"""Grafana unified-alerting rules (provisioning YAML): temperature, robot FAULT, stale device,
and per vehicle fleet: FATAL error, e-stop, low battery, source gaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ops.grafana.catalog import Catalog, FleetSource, Thresholds, devices_regex
from gateway.ops.grafana.dashboards import INFLUX_UID, format_context


@dataclass(frozen=True)
class AlertDesc:
    """One alert: InfluxQL queries (refIds A, B ...) reduced to last values, then a math test."""

    uid: str
    title: str
    queries: tuple[str, ...]
    condition: str  # Grafana math over the reduced queries, e.g. "$RA > 8 || $RB < 2"
    summary: str
    window_s: int = 600
    for_: str = "1m"
    no_data: str = "NoData"
    severity: str = "critical"


def _crtk_fault_code() -> float:
    from drivers.ros2 import CRTK_STATES

    return dict(CRTK_STATES)["FAULT"]


GAP_WINDOW_S = 600


def fleet_alerts(f: FleetSource, limits: Thresholds) -> list[AlertDesc]:
    """Return one fleet source's alerts (per vehicle: the state stream's last values).

    A silent vehicle is the stale-device alert's business, so no data here is OK.
    """
    by = (f' WHERE "device" =~ {devices_regex(f)} AND $timeFilter'
          ' GROUP BY "site", "device", "stream"')
    gap_limit = limits.source_gap_per_min * GAP_WINDOW_S / 60
    return [
        AlertDesc(f"medgw-{f.key}-fatal-error", f"{f.title} vehicle has {f.fatal_name}",
                  (f'SELECT last("{f.fatal}") FROM "{f.state}"' + by,), f"$RA {f.fatal_when}",
                  "{{ $labels.device }}/{{ $labels.stream }}: " + f.fatal_name
                  + f" ({f.fatal} {{{{ $values.RA }}}})", for_="0s", no_data="OK"),
        AlertDesc(f"medgw-{f.key}-estop", f"{f.title} vehicle emergency stop",
                  (f'SELECT last("{f.estop}") FROM "{f.state}"' + by,), f"$RA {f.estop_when}",
                  "{{ $labels.device }}/{{ $labels.stream }}: e-stop active", for_="0s",
                  no_data="OK"),
        AlertDesc(f"medgw-{f.key}-low-battery",
                  f"{f.title} vehicle battery below {limits.low_battery_pct:g} %",
                  (f'SELECT last("{f.battery}") FROM "{f.state}"' + by,),
                  f"$RA < {limits.low_battery_pct:g}",
                  "{{ $labels.device }}/{{ $labels.stream }}: battery "
                  f"below {limits.low_battery_pct:g} %", for_="2m", no_data="OK",
                  severity="warning"),
        AlertDesc(f"medgw-{f.key}-source-gaps",
                  f"{f.title} vehicle messages lost at the source "
                  f"(more than {limits.source_gap_per_min:g}/min over 10 minutes)",
                  (f'SELECT sum("{f.missing}") FROM "{f.gaps}"' + by,), f"$RA > {gap_limit:g}",
                  "{{ $labels.device }}/{{ $labels.stream }}: {{ $values.RA }} messages "
                  "numbered by the vehicle were never received", window_s=GAP_WINDOW_S,
                  no_data="OK", severity="warning"),
    ]


def alert_descs(catalog: Catalog) -> list[AlertDesc]:
    """Return the alerts the configured devices need."""
    context = format_context(catalog)
    out = []
    if catalog.carrier is not None:
        c = catalog.carrier
        where = ' WHERE $timeFilter GROUP BY time(1m), "site", "device", "stream" fill(none)'
        out.append(AlertDesc(
            "medgw-temperature-excursion",
            f"Carrier payload temperature outside {c.temperature_min:g}-{c.temperature_max:g} °C",
            (f'SELECT max("{c.temperature}") FROM "{c.measurement}"' + where,
             f'SELECT min("{c.temperature}") FROM "{c.measurement}"' + where),
            f"$RA > {c.temperature_max:g} || $RB < {c.temperature_min:g}",
            "{{ $labels.device }}/{{ $labels.stream }}: payload temperature left "
            f"{c.temperature_min:g}-{c.temperature_max:g} °C", for_="0s"))
    if catalog.robot_devices or "robot_event" in catalog.measurements:
        out.append(AlertDesc(
            "medgw-robot-fault", "Surgical robot in FAULT",
            ('SELECT last("state") FROM "robot_event" WHERE $timeFilter'
             ' GROUP BY "site", "device", "stream"',),
            f"$RA == {_crtk_fault_code():g}",
            "{{ $labels.device }}/{{ $labels.stream }}: operating state FAULT", for_="0s",
            window_s=86400))
    for fleet in catalog.fleets:
        out += fleet_alerts(fleet, catalog.thresholds)
    out.append(AlertDesc(
        "medgw-device-stale", "Device stale: no samples for 5 minutes",
        ('SELECT count("seq") FROM ' + context["all_re"]
         + ' WHERE $timeFilter GROUP BY "site", "device"',),
        "$RA < 1", "{{ $labels.device }} sent no sample for 5 minutes",
        window_s=300, for_="2m", no_data="Alerting", severity="warning"))
    return out


def _query_node(ref: str, query: str, window_s: int) -> dict[str, Any]:
    return {"refId": ref, "relativeTimeRange": {"from": window_s, "to": 0},
            "datasourceUid": INFLUX_UID,
            "model": {"refId": ref, "query": query, "rawQuery": True,
                      "resultFormat": "time_series", "intervalMs": 1000,
                      "maxDataPoints": 43200}}


def _expr_node(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {"refId": ref, "relativeTimeRange": {"from": 0, "to": 0},
            "datasourceUid": "__expr__",
            "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": "__expr__"},
                      **model}}


def rule_json(desc: AlertDesc) -> dict[str, Any]:
    """Return one provisioned alert rule."""
    refs = [chr(ord("A") + i) for i in range(len(desc.queries))]
    data = [_query_node(ref, q, desc.window_s) for ref, q in zip(refs, desc.queries, strict=True)]
    data += [_expr_node(f"R{ref}", {"type": "reduce", "expression": ref, "reducer": "last",
                                    "settings": {"mode": "dropNN"}}) for ref in refs]
    data.append(_expr_node("C", {"type": "math", "expression": desc.condition}))
    return {
        "uid": desc.uid, "title": desc.title, "condition": "C", "data": data,
        "noDataState": desc.no_data, "execErrState": "Error", "for": desc.for_,
        "labels": {"severity": desc.severity, "app": "medgw"},
        "annotations": {"summary": desc.summary}, "isPaused": False,
    }


def alert_rules(catalog: Catalog) -> dict[str, Any]:
    """Return the alerting provisioning document (one rule group in folder medgw)."""
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "medgw", "folder": "medgw", "interval": "1m",
        "rules": [rule_json(d) for d in alert_descs(catalog)],
    }]}
