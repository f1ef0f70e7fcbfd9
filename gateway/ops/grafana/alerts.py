"""Grafana unified-alerting rules (provisioning YAML): temperature, robot FAULT, stale device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ops.grafana.catalog import Catalog
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
