"""Gateway-health PromQL panels against real VictoriaMetrics scraping a running gateway.

VictoriaMetrics (Prometheus-compatible query API) scrapes the gateway's /metrics every
second, like the Prometheus datasource the dashboards are provisioned with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gateway.config import load_config, parse_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.ops.grafana import render
from gateway.ops.grafana.dashboards import PROM_UID
from gateway.ops.services import MosquittoService, VictoriaMetricsService
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "examples" / "hospital-edge.yaml"
STREAMS = [{"name": "joints", "fields": 3, "rate_hz": 200, "measurement": "joint_state"}]
# a running synthetic device always has these; the others (spooled, dropped, overrun, lag,
# gap) exist only after such an event, and then their panels must show them
ALWAYS_PRESENT = ("medgw_samples_received_total", "medgw_samples_published_total",
                  "medgw_device_connected")


@pytest.fixture
def scraped(mosquitto: MosquittoService, tmp_path: Path) -> Iterator[VictoriaMetricsService]:
    loaded = parse_config({"site": "test-site", "gateway": "gw-prom",
                           "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                           "health": {"enabled": False},
                           "devices": [{"name": "robot-1", "driver": "synthetic",
                                        "options": {"streams": STREAMS, "tick_ms": 20}}]})
    gateway = Gateway(loaded)
    runner = GatewayThread(gateway)
    server = HealthServer("127.0.0.1", 0, gateway.metrics.registry, gateway.health_report,
                          store=gateway.store)
    scrape = tmp_path / "scrape.yaml"
    scrape.write_text(yaml.safe_dump({"scrape_configs": [{
        "job_name": "medgw", "scrape_interval": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}]}))
    vm = VictoriaMetricsService(tmp_path / "vm", extra_args=[f"-promscrape.config={scrape}"])
    runner.start()
    server.start()
    try:
        vm.start()
        yield vm
    finally:
        vm.stop(5)
        vm.kill()
        server.stop()
        runner.stop(15)


def _query(vm: VictoriaMetricsService, expr: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{vm.url}/api/v1/query", params={"query": expr}, timeout=10)
    doc = resp.json()
    assert resp.status_code == 200 and doc["status"] == "success", (expr, doc)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def test_gateway_health_promql_panels(scraped: VictoriaMetricsService, tmp_path: Path) -> None:
    rendered = render(load_config(EXAMPLE), tmp_path / "grafana")
    board = rendered.dashboards["medgw-gateway.json"]
    exprs = [t["expr"] for p in board["panels"] if p["datasource"]["uid"] == PROM_UID
             for t in p["targets"]]
    assert len(exprs) >= 5

    def substitute(expr: str) -> str:
        return (expr.replace("$__rate_interval", "5s").replace("$site", "test-site")
                .replace("$device", "robot-1"))

    required = [e for e in exprs if any(name in e for name in ALWAYS_PRESENT)]

    def scraped_enough() -> bool:
        scraped.flush()
        return all(_query(scraped, substitute(e)) for e in required)

    wait_until(scraped_enough, 30, 0.5, message="enough scrapes of a publishing gateway")
    with_data = 0
    for expr in exprs:
        result = _query(scraped, substitute(expr))  # every expression is valid PromQL
        names = set(re.findall(r"\b(medgw_[a-z_]+)", expr))
        # scraped at least twice in the rate window: then rate() must have a value
        exists = any(_query(scraped, f'count_over_time({{__name__="{n}"}}[5s]) > 1')
                     for n in names)
        assert exists or not names & set(ALWAYS_PRESENT), f"{names} never scraped"
        if exists:
            assert result, f"no data for {expr}"
            labels = {k for series in result for k in series["metric"]}
            assert labels & {"stream", "device"}, (expr, result)
            with_data += 1
    print(f"{with_data} of {len(exprs)} PromQL panels had data")
    assert with_data >= len(ALWAYS_PRESENT)
