"""Every generated PromQL panel against real VictoriaMetrics scraping a running gateway.

VictoriaMetrics (Prometheus-compatible query API) scrapes the gateway's /metrics every
second, like the Prometheus datasource the dashboards are provisioned with. The gateway
runs what makes the health metrics exist: a synthetic device, the vda5050 driver on the
AGV simulator and the ros2 driver on the Open-RMF simulator (messages dropped at the
source: source gaps), a ros2 device on real Cyclone DDS (a configured
topic nobody publishes, a publication of the wrong type, a JointState stream with a hole
in its header stamps), a device whose driver crashes (restarts) and a corrupt seq.json.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from pydantic import BaseModel

from drivers.ros2 import dds
from gateway import plugins
from gateway.config import load_config, parse_config
from gateway.driver import DriverContext, DriverInfo
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.ops.grafana import render
from gateway.ops.grafana.dashboards import PROM_UID
from gateway.ops.services import MosquittoService, VictoriaMetricsService
from simulators.agv import AgvFleet, FleetConfig
from simulators.rmf_fleet import RmfSimConfig, RmfSimulator
from simulators.surgical_robot import dds as sim_dds
from simulators.surgical_robot import msgs
from tests.helpers import unique_domain_id, wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "examples" / "hospital-edge.yaml"
STREAMS = [{"name": "joints", "fields": 3, "rate_hz": 200, "measurement": "joint_state"}]
DEVICES = ("robot-1", "agv-fleet", "rmf-fleet", "dds-1", "crasher")
FLEETS = ("agv-fleet", "rmf-fleet")  # the fleet devices' names in hospital-edge.yaml
SILENT, WRONG, JOINTS = "/medgw_test/absent", "/medgw_test/wrong", "/medgw_test/joints"
# Not provoked here: drops by spool policy and ring overruns (the fault tests cause them) and
# publisher loop errors (an internal fault, not caused from outside a running gateway). Their
# panels must be valid PromQL, and return rows once the metric exists.
NOT_PROVOKED = ("medgw_samples_dropped_total", "medgw_ring_overrun_samples_total",
                "medgw_publisher_errors_total")
NEW_METRICS = ("medgw_driver_running", "medgw_driver_restarts_total",
               "medgw_source_quarantined_total",
               "medgw_seq_state_resets_total", "medgw_unmatched_publications",
               "medgw_topic_never_delivered", "medgw_middleware_samples_lost_total",
               "medgw_spool_write_errors_total", "medgw_spool_recovery_cut_records_total",
               "medgw_source_gap_total", "medgw_device_connected")


class CrashOptions(BaseModel):
    """No options."""


class CrashingDriver:
    """A device whose driver task raises at once, every run (the daemon restarts it)."""

    def __init__(self, ctx: DriverContext, options: CrashOptions) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        """Crash."""
        raise RuntimeError("this test driver crashes on purpose")


@dataclass
class Scraped:
    """The running gateway, its simulators and the VictoriaMetrics scraping it."""

    vm: VictoriaMetricsService
    gateway: Gateway
    sim: AgvFleet


def _devices(fleet_port: int, domain_id: int) -> list[dict[str, Any]]:
    topics = [{"name": SILENT, "type": "geometry_msgs/msg/Pose", "rate_hz": 10},
              {"name": WRONG, "type": "geometry_msgs/msg/Pose", "rate_hz": 10},
              {"name": JOINTS, "type": "sensor_msgs/msg/JointState", "rate_hz": 100}]
    return [
        {"name": "robot-1", "driver": "synthetic", "options": {"streams": STREAMS,
                                                               "tick_ms": 20}},
        {"name": "agv-fleet", "driver": "vda5050",
         "options": {"broker": {"port": fleet_port}, "rate_hz": 10}},
        {"name": "dds-1", "driver": "ros2", "options": {
            "domain_id": domain_id, "transport": "cyclonedds", "topics": topics,
            "unmatched_after_s": 1.0}},
        {"name": "rmf-fleet", "driver": "ros2", "options": {
            "domain_id": domain_id, "transport": "cyclonedds", "stale_periods": 40,
            "topics": [{"name": "/fleet_states", "type": "rmf_fleet_msgs/msg/FleetState",
                        "rate_hz": 20},
                       {"name": "/door_states", "type": "rmf_door_msgs/msg/DoorState"},
                       {"name": "/lift_states", "type": "rmf_lift_msgs/msg/LiftState"}]}},
        {"name": "crasher", "driver": "crashing", "options": {}},
    ]


class DdsPeer:
    """A Cyclone DDS publisher (the simulator's message types): a wrong type, a stamp hole."""

    def __init__(self, domain_id: int) -> None:
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic

        self.participant = sim_dds.open_participant(domain_id)
        qos = sim_dds.make_qos(sim_dds.QosOptions(depth=1000))
        self.wrong = DataWriter(self.participant, Topic(
            self.participant, msgs.ros_dds_topic(WRONG), msgs.String), qos=qos)
        self.joints = DataWriter(self.participant, Topic(
            self.participant, msgs.ros_dds_topic(JOINTS), msgs.JointState), qos=qos)

    def publish(self, count: int, hole_at: int, hole: int) -> None:
        """``count`` JointStates 10 ms apart (in stamp time) with ``hole`` stamps skipped."""
        # the driver's reader must have matched first, or the hole might go unseen
        wait_until(lambda: len(self.joints.get_matched_subscriptions()) >= 1, 20,
                   message="the driver's JointState reader")
        t0 = time.time_ns()
        for i in range(count):
            k = i + (hole if i >= hole_at else 0)
            header = msgs.Header(msgs.stamp(t0 + k * 10_000_000), "base")
            self.joints.write(msgs.JointState(header, ["j1"], [0.1 * i], [0.0], [0.0]))
            self.wrong.write(msgs.String(f"not a pose {i}"))
            time.sleep(0.01)

    def close(self) -> None:
        """Delete the writers and the participant."""
        sim_dds.delete_entities(self.wrong, self.joints, self.participant)


@pytest.fixture
def scraped(mosquitto: MosquittoService, make_mosquitto: Callable[..., MosquittoService],
            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scraped]:
    real = plugins.load_driver
    crashing = DriverInfo("crashing", CrashOptions, CrashingDriver)
    monkeypatch.setattr(plugins, "load_driver",
                        lambda name: crashing if name == "crashing" else real(name))
    fleet_broker = make_mosquitto()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "seq.json").write_bytes(b'{"version": 1, "streams": ')  # torn: a reset
    domain_id = unique_domain_id()
    loaded = parse_config({"site": "test-site", "gateway": "gw-prom",
                           "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                           "spool": {"dir": str(spool)}, "health": {"enabled": False},
                           "devices": _devices(fleet_broker.port, domain_id)})
    gateway = Gateway(loaded)
    runner = GatewayThread(gateway)
    server = HealthServer("127.0.0.1", 0, gateway.metrics.registry, gateway.health_report,
                          store=gateway.store)
    scrape = tmp_path / "scrape.yaml"
    scrape.write_text(yaml.safe_dump({"scrape_configs": [{
        "job_name": "medgw", "scrape_interval": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}]}))
    vm = VictoriaMetricsService(tmp_path / "vm", extra_args=[f"-promscrape.config={scrape}"])
    sim = AgvFleet(FleetConfig(port=fleet_broker.port, vehicles=2, rate_hz=10))
    peer = DdsPeer(domain_id)
    rmf = RmfSimulator(RmfSimConfig.model_validate(dict(
        domain_id=domain_id, rate_hz=20, ticks=20, drop_ticks=[5, 6], faults=[],
        network={"config_xml": dds.loopback_config()}))).open()
    runner.start()
    server.start()
    try:
        vm.start()
        _provoke(gateway, sim, peer)
        assert rmf.wait_for_subscribers(20.0), "the gateway did not subscribe the RMF topics"
        rmf.start()
        yield Scraped(vm, gateway, sim)
    finally:
        rmf.stop()
        peer.close()
        sim.stop()
        vm.stop(5)
        vm.kill()
        server.stop()
        runner.stop(15)


def _provoke(gateway: Gateway, sim: AgvFleet, peer: DdsPeer) -> None:
    """Source gaps on agv-01, a stamp hole on the JointState topic, a wrong-type writer."""
    driver = next(d.driver for d in gateway.devices if d.name == "agv-fleet")
    wait_until(lambda: getattr(driver, "sessions", 0) >= 1, 15, message="fleet session")
    sim.start()
    for tick in range(10):
        if tick == 3:  # not the first states: those after ONLINE never count as loss
            sim.drop_states("agv-01", 3)
            sim.malformed("agv-02", "json")
        sim.tick()
    peer.publish(60, hole_at=40, hole=2)


def _query(vm: VictoriaMetricsService, expr: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{vm.url}/api/v1/query", params={"query": expr}, timeout=10)
    doc = resp.json()
    assert resp.status_code == 200 and doc["status"] == "success", (expr, doc)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _substitute(expr: str) -> str:
    devices = "(" + "|".join(DEVICES) + ")"
    return (expr.replace("$__rate_interval", "5s").replace("$site", "test-site")
            .replace("$device", devices).replace("$fleet", "(" + "|".join(FLEETS) + ")"))


def _metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b(medgw_[a-z_]+)", expr))


def test_every_promql_panel_returns_rows(scraped: Scraped, tmp_path: Path) -> None:
    rendered = render(load_config(EXAMPLE), tmp_path / "grafana")
    panels = [(name, p["title"], t["expr"]) for name, board in rendered.dashboards.items()
              for p in board["panels"] if p["datasource"]["uid"] == PROM_UID
              for t in p["targets"]]
    used = {n for _, _, e in panels for n in _metrics(e)}
    assert set(NEW_METRICS) <= used and len(panels) >= 20
    vm = scraped.vm

    def series(name: str) -> list[dict[str, Any]]:
        return _query(vm, f'count_over_time({{__name__="{name}"}}[5s]) > 1')

    expected = sorted(used - set(NOT_PROVOKED))
    missing = list(expected)

    def provoked() -> bool:
        vm.flush()
        missing[:] = [n for n in expected if not series(n)]
        return not missing

    try:
        wait_until(provoked, 45, 0.5, message="every provoked metric scraped twice")
    except AssertionError as err:
        raise AssertionError(f"{err}; never scraped: {missing}") from None
    with_rows = 0
    for board, title, expr in panels:
        result = _query(vm, _substitute(expr))  # every expression is valid PromQL
        if _metrics(expr) <= set(NOT_PROVOKED) and not any(series(n) for n in _metrics(expr)):
            continue
        assert result, f"{board}: {title!r} returned no rows: {_substitute(expr)}"
        grouped = re.search(r"\bby \(([^)]*)\)", expr)
        keys = {k.strip() for k in grouped.group(1).split(",")} if grouped else set()
        assert all(keys <= set(s["metric"]) for s in result), (title, result)
        with_rows += 1
    print(f"{with_rows} of {len(panels)} PromQL panels returned rows")
    assert with_rows >= len(panels) - len(NOT_PROVOKED)
    _check_values(vm)


def _check_values(vm: VictoriaMetricsService) -> None:
    """The provoked events have the values the gateway counted."""
    def value(expr: str) -> dict[str, float]:
        return {",".join(f"{k}={v}" for k, v in sorted(s["metric"].items())): float(
            s["value"][1]) for s in _query(vm, expr)}

    assert value('max by (vehicle) (medgw_source_gap_total{device="agv-fleet"})') == {
        "vehicle=agv-01": 3.0}
    assert value('max by (vehicle, reason) (medgw_source_quarantined_total)') == {
        "reason=bad_json,vehicle=agv-02": 1.0}
    assert value('max by (vehicle) (medgw_source_gap_total{device="rmf-fleet"})') == {
        f"vehicle=tug/tug{i}": 2.0 for i in (1, 2, 3)}
    assert value('max by (topic) (medgw_topic_never_delivered{device="dds-1"})')[
        f"topic={SILENT}"] == 1.0
    assert value('max by (topic) (medgw_unmatched_publications{device="dds-1"})')[
        f"topic={WRONG}"] >= 1.0
    lost = value('max by (topic, kind) (medgw_middleware_samples_lost_total{device="dds-1"})')
    assert lost == {f"kind=stamp_gap,topic={JOINTS}": 2.0}
    assert value('max by (device) (medgw_driver_restarts_total)')["device=crasher"] >= 1
    assert value("max by (reason) (medgw_seq_state_resets_total)") == {"reason=corrupt": 1.0}
    running = value("max by (device) (medgw_driver_running)")
    assert running["device=robot-1"] == 1.0 and "device=crasher" in running
