"""Every generated Grafana query returns data from a real influxd after a real chain run.

Robot and carrier streams are built with the drivers' own naming tables (ros2 mapping,
opcua snake_case of the carrier simulator's variables); the AGV fleet is the real vda5050
driver reading the AGV simulator on its own mosquitto. Everything goes ring -> MQTT
(mosquitto) -> ingest -> influxd.
Grafana cannot run here, so its macros and template variables are substituted the way
Grafana does for InfluxDB (multi-value variables become an escaped ``(a|b)`` regex).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from drivers.opcua.mapping import EVENT_FIELDS, EVENT_LABELS, EventCode, snake_case
from drivers.ros2 import dds
from drivers.ros2.mapping import (
    CRTK_STATES,
    JOINT_PARTS,
    POSE_FIELDS,
    TYPE_TABLE,
    WRENCH_FIELDS,
    joint_fields,
)
from drivers.vda5050 import Vda5050Driver
from gateway.config import load_config
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind
from gateway.ops.grafana import Thresholds, render
from gateway.ops.grafana.dashboards import INFLUX_UID, PROM_UID
from gateway.ops.services import MosquittoService
from simulators.agv import AgvFleet, FleetConfig
from simulators.rmf_fleet import RmfSimConfig, RmfSimulator, fleet
from simulators.transport_carrier.fleet import VARIABLES
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, unique_domain_id, wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "examples" / "hospital-edge.yaml"
N = 60  # samples per stream, one per second over the last minute
JOINTS = ("outer_yaw", "outer_pitch", "outer_insertion")


def _ctx(chain: Chain, device: str) -> DriverContext:
    gw = chain.gateway
    return DriverContext(site="test-site", device=device, store=gw.store, metrics=gw.metrics,
                         log=logging.getLogger(f"test.{device}"))


def _feed_robot(chain: Chain, t0: int) -> None:
    ctx = _ctx(chain, "robot-1")
    ts = t0 + np.arange(N, dtype=np.int64) * 1_000_000_000
    fields, units = joint_fields(JOINTS, JOINT_PARTS, frozenset({"outer_insertion"}))
    spec = ctx.stream_spec("PSM1.measured_js", fields, units, measurement="joint_state",
                           channel_tag="joint", rate_hz=1.0)
    values = np.sin(np.arange(N * len(fields), dtype=np.float64).reshape(N, len(fields)))
    _append(ctx, spec, ts, values)
    pose = ctx.stream_spec("PSM1.measured_cp", POSE_FIELDS, ("",) * 7, measurement="pose")
    quality = np.where(np.arange(N) >= N - 5, Quality.STALE, Quality.GOOD).astype(np.uint8)
    _append(ctx, pose, ts, np.cos(np.arange(N * 7.0).reshape(N, 7)), quality)
    wrench = ctx.stream_spec("PSM1.body.measured_cf", WRENCH_FIELDS, ("",) * 6,
                             measurement="wrench")
    _append(ctx, wrench, ts, np.linspace(-1, 1, N * 6).reshape(N, 6))
    crtk = TYPE_TABLE["crtk_msgs/msg/OperatingState"]
    state = ctx.stream_spec("PSM1.operating_state", crtk.fields, crtk.units,
                            kind=StreamKind.EVENT, measurement=crtk.measurement,
                            labels=CRTK_STATES)
    codes = dict(CRTK_STATES)
    names = ("DISABLED", "ENABLED", "FAULT")  # the robot ends in FAULT
    rows = np.array([[codes[n], 1.0, 0.0] for n in names])
    _append(ctx, state, ts[[0, N // 2, N - 1]], rows, text=names)


def _feed_carriers(chain: Chain, t0: int) -> None:
    ctx = _ctx(chain, "carrier-fleet")
    ts = t0 + np.arange(N, dtype=np.int64) * 1_000_000_000
    fields = tuple(snake_case(v.name) for v in VARIABLES if v.kind != "string")
    spec = ctx.stream_spec("carrier-01", fields, ("",) * len(fields), measurement="carrier")
    values = np.zeros((N, len(fields)))
    col = {f: i for i, f in enumerate(fields)}
    values[:, col["payload_temperature"]] = np.linspace(4.0, 9.5, N)  # leaves 2-8 °C
    values[:, col["route_progress"]] = np.linspace(0.0, 1.0, N)
    values[:, col["battery"]] = np.linspace(90.0, 80.0, N)
    values[N // 2:, col["door_open"]] = 1.0
    _append(ctx, spec, ts, values)
    events = ctx.stream_spec("carrier-01.events", EVENT_FIELDS, ("", "", ""),
                             kind=StreamKind.EVENT, measurement="carrier_event",
                             labels=EVENT_LABELS)
    code = float(EventCode.TEMPERATURE_EXCURSION)
    _append(ctx, events, ts[[-10]], np.array([[code, 1.0, 8.1]]),
            text=("payload temperature 8.1 above 8",))


AGVS = ("agv-01", "agv-02", "agv-03")
GAP_DROPS = 12  # agv-01's states never sent: above the source-gap alert's 10 per 10 minutes


def _fleet_device(broker: MosquittoService) -> dict[str, Any]:
    return {"name": "agv-fleet", "driver": "vda5050", "options": {
        "broker": {"port": broker.port}, "maps": ["hospital-L1"], "rate_hz": 10}}


def _run_fleet(chain: Chain, sim: AgvFleet) -> None:
    """The real simulator through the real driver: drops, a FATAL error, an e-stop, low battery."""
    driver = chain.gateway.devices[0].driver
    assert isinstance(driver, Vda5050Driver)
    wait_until(lambda: driver.sessions == 1, 15, message="the driver's fleet session")
    sim.vehicles["agv-03"].model.battery = 12.0
    sim.start()
    try:
        wait_until(lambda: len(driver.fleet.vehicles) == len(AGVS), 15, message="every AGV")
        for tick in range(30):
            if tick == 5:
                sim.drop_states("agv-01", GAP_DROPS)
                sim.error("agv-02", "batteryFault", "FATAL", "cell 3 over temperature")
                sim.estop("agv-03", "MANUAL")
            sim.tick()

        def delivered() -> bool:
            return all(driver.fleet.vehicles[("medgw-sim", s)].stats.states == len(sim.sent(s))
                       for s in AGVS)

        wait_until(delivered, 20, message="every sent state in the driver")
    finally:
        sim.stop()


RMF_TICKS, RMF_RATE, RMF_DROPS = 40, 20.0, [10, 11]


def _rmf_device(domain: int) -> dict[str, Any]:
    topics = [{"name": "/fleet_states", "type": "rmf_fleet_msgs/msg/FleetState",
               "rate_hz": RMF_RATE},
              {"name": "/door_states", "type": "rmf_door_msgs/msg/DoorState", "rate_hz": 4},
              {"name": "/lift_states", "type": "rmf_lift_msgs/msg/LiftState", "rate_hz": 4}]
    return {"name": "rmf-fleet", "driver": "ros2", "options": {
        "domain_id": domain, "transport": "cyclonedds", "topics": topics, "stale_periods": 40}}


def _rmf_sim(domain: int) -> RmfSimulator:
    """tug2 ends in EMERGENCY, tug3 in ADAPTER_ERROR; two FleetStates dropped at the source."""
    faults = [fleet.Fault(robot="tug2", mode=5, start=20, end=10_000),
              fleet.Fault(robot="tug3", mode=8, start=25, end=10_000)]
    return RmfSimulator(RmfSimConfig.model_validate(dict(
        domain_id=domain, rate_hz=RMF_RATE, ticks=RMF_TICKS, drop_ticks=RMF_DROPS,
        faults=faults, network={"config_xml": dds.loopback_config()}))).open()


def _run_rmf(chain: Chain, sim: RmfSimulator) -> None:
    """The real RMF simulator on Cyclone DDS through the real ros2 driver."""
    assert sim.wait_for_subscribers(20.0), "the gateway did not subscribe every RMF topic"
    sim.start()
    assert sim.done.wait(RMF_TICKS / RMF_RATE + 30), "the RMF simulator did not finish"

    def count(stream: str) -> int:
        try:
            batch = chain.gateway.store.ring(f"test-site/rmf-fleet/{stream}").snapshot()
        except KeyError:
            return 0
        return 0 if batch is None else len(batch.timestamps_ns)

    wait_until(lambda: all(count(f"fleet_states.tug.{r.name}") == RMF_TICKS - len(RMF_DROPS)
                           for r in sim.config.robots), 30, message="every RMF robot state")


def _append(ctx: DriverContext, spec: Any, ts: np.ndarray, values: np.ndarray,
            quality: np.ndarray | None = None, text: tuple[str, ...] | None = None) -> None:
    ring = ctx.add_stream(spec)
    q = np.zeros(len(ts), dtype=np.uint8) if quality is None else quality
    ring.append(ts, values, q, text=text)
    ctx.count(ring, len(ts), int(ts[-1]))


def _write_gap(influx: InfluxTarget, t0: int) -> None:
    """medgw_gap has no producer yet: write one point in the schema the panel expects."""
    line = f"medgw_gap,device=robot-1,site=test-site,stream=PSM1.measured_js seconds=2.5 {t0}"
    resp = requests.post(f"{influx.url}/write", params={"db": influx.database}, data=line,
                         timeout=10)
    assert resp.status_code == 204, resp.text


def _regex(values: list[str]) -> str:
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def _substitute(query: str, variables: dict[str, list[str]], time_from: str = "1h") -> str:
    out = query.replace("$timeFilter", f"time > now() - {time_from}")
    out = out.replace("$__interval", "5s")
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace(f"${name}", _regex(variables[name]))
    return out


def _resolve_variables(board: dict[str, Any], influx: InfluxTarget) -> dict[str, list[str]]:
    resolved: dict[str, list[str]] = {}
    for var in board["templating"]["list"]:
        rows = influx.query(_substitute(var["query"], resolved))
        values = sorted({str(row["value"]) for row in rows})
        assert values, f"{board['uid']}: variable {var['name']} has no values"
        resolved[var["name"]] = values
    return resolved


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return render(load_config(EXAMPLE), tmp_path_factory.mktemp("grafana"))


def test_every_panel_and_alert_query_returns_data(
        mosquitto: MosquittoService, make_mosquitto: Callable[..., MosquittoService],
        influxdb: InfluxTarget, rendered: Any) -> None:
    fleet_broker = make_mosquitto()
    sim = AgvFleet(FleetConfig(port=fleet_broker.port, vehicles=len(AGVS), rate_hz=10,
                               versions=("2.0.0", "3.0.0", "2.1.0")))
    domain = unique_domain_id()
    loaded = chain_config(mosquitto, influxdb, [_fleet_device(fleet_broker),
                                                _rmf_device(domain)])
    rmf = _rmf_sim(domain)
    t0 = time.time_ns() - N * 1_000_000_000
    with Chain(loaded) as chain:
        _run_fleet(chain, sim)
        try:
            _run_rmf(chain, rmf)
        finally:
            rmf.stop()
        _feed_robot(chain, t0)
        _feed_carriers(chain, t0)
        wait_until(lambda: chain.acked() == chain.produced(), 20, message="broker acks")
        chain.stop()
        families = {m.name for m in chain.gateway.metrics.registry.collect()}
    assert chain.all_acked
    _write_gap(influxdb, t0)

    checked, per_board = 0, dict.fromkeys(rendered.dashboards, 0)
    for name, board in rendered.dashboards.items():
        variables = _resolve_variables(board, influxdb)
        assert variables["site"] == ["test-site"]
        for panel in board["panels"]:
            for target in panel["targets"]:
                if panel["datasource"]["uid"] == PROM_UID:
                    used = set(re.findall(r"\b(medgw_[a-z_]+)", target["expr"]))
                    assert used and {u.removesuffix("_total") for u in used} <= families
                    continue
                assert panel["datasource"]["uid"] == INFLUX_UID
                # a panel's own time range (timeFrom) replaces the dashboard's
                rows = influxdb.query(_substitute(target["query"], variables,
                                                  panel.get("timeFrom", "1h")))
                values = [v for row in rows for k, v in row.items()
                          if k not in ("time", "_measurement") and v is not None]
                assert values, f"{name}: panel {panel['title']!r} returned no data"
                for step in panel.get("transformations", []):  # the columns it splits by
                    fields = step["options"]["fields"]
                    assert all(row.get(f) for row in rows for f in fields), panel["title"]
                checked += 1
                per_board[name] += 1
    print(f"checked {checked} InfluxQL panel queries: {per_board}")
    assert checked >= 37 and per_board["medgw-vehicles.json"] == 15  # 9 VDA 5050, 6 RMF

    rules = {r["uid"]: r for r in rendered.alerts["groups"][0]["rules"]}
    states = _alert_values(rules, "medgw-robot-fault", "A", influxdb)
    assert states[("robot-1", "PSM1.operating_state")] == dict(CRTK_STATES)["FAULT"]
    hottest = _alert_values(rules, "medgw-temperature-excursion", "A", influxdb)
    assert max(hottest.values()) > 8.0
    counts = _alert_values(rules, "medgw-device-stale", "A", influxdb)
    assert set(counts) >= {("robot-1", None), ("carrier-fleet", None), ("agv-fleet", None),
                           ("rmf-fleet", None)}
    _check_fleet_alerts(rules, influxdb, sim)
    _check_rmf_alerts(rules, influxdb)


def _check_fleet_alerts(rules: dict[str, Any], influx: InfluxTarget, sim: AgvFleet) -> None:
    """Each fleet alert's query gives, per vehicle, the value its condition tests."""
    limits = Thresholds()
    fatal = _alert_values(rules, "medgw-vda5050-fatal-error", "A", influx)
    assert {k[1]: v for k, v in fatal.items()} == {"agv-01": 0.0, "agv-02": 1.0, "agv-03": 0.0}
    estop = _alert_values(rules, "medgw-vda5050-estop", "A", influx)
    assert {k[1] for k, v in estop.items() if v > 0} == {"agv-03"}
    battery = _alert_values(rules, "medgw-vda5050-low-battery", "A", influx)
    assert {k[1] for k, v in battery.items() if v < limits.low_battery_pct} == {"agv-03"}
    assert rules["medgw-vda5050-low-battery"]["data"][-1]["model"]["expression"] == "$RA < 20"
    gaps = _alert_values(rules, "medgw-vda5050-source-gaps", "A", influx)
    dropped = sum(1 for p in sim.history if p.serial == "agv-01" and p.dropped)
    assert dropped == GAP_DROPS and gaps == {("agv-fleet", "agv-01.source_gap"): GAP_DROPS}
    assert rules["medgw-vda5050-source-gaps"]["data"][-1]["model"]["expression"] == "$RA > 10"


def _alert_values(rules: dict[str, Any], uid: str, ref: str, influx: InfluxTarget
                  ) -> dict[tuple[str, str | None], float]:
    """Run an alert's query over its window; return the last value per (device, stream)."""
    node = next(n for n in rules[uid]["data"] if n["refId"] == ref)
    window = node["relativeTimeRange"]["from"]
    query = node["model"]["query"].replace("$timeFilter", f"time > now() - {window}s")
    out: dict[tuple[str, str | None], float] = {}
    for row in influx.query(query):
        value = next(v for k, v in row.items() if k not in ("time", "_measurement", "site",
                                                             "device", "stream"))
        if value is not None:
            out[(row["device"], row.get("stream"))] = float(value)
    assert out, f"alert {uid}: query {ref} returned no data"
    return out


def _check_rmf_alerts(rules: dict[str, Any], influx: InfluxTarget) -> None:
    """The Open-RMF alerts test the robot's mode: EMERGENCY (e-stop), ADAPTER_ERROR."""
    robots = ("fleet_states.tug.tug1", "fleet_states.tug.tug2", "fleet_states.tug.tug3")
    modes = {k[1]: v for k, v in _alert_values(rules, "medgw-rmf-estop", "A", influx).items()}
    assert modes == {robots[0]: modes[robots[0]], robots[1]: 5.0, robots[2]: 8.0}
    assert modes[robots[0]] not in (5.0, 8.0)
    assert rules["medgw-rmf-estop"]["data"][-1]["model"]["expression"] == "$RA == 5"
    fatal = _alert_values(rules, "medgw-rmf-fatal-error", "A", influx)
    assert {k[1] for k, v in fatal.items() if v == 8.0} == {robots[2]}
    battery = _alert_values(rules, "medgw-rmf-low-battery", "A", influx)
    assert set(k[1] for k in battery) == set(robots) and min(battery.values()) > 20
    gaps = _alert_values(rules, "medgw-rmf-source-gaps", "A", influx)
    assert {k[1]: v for k, v in gaps.items() if k[0] == "rmf-fleet"} == {
        f"{r}.source_gap": float(len(RMF_DROPS)) for r in robots}
