"""Generated Grafana dashboards, provisioning and alert rules are valid and match the config."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import yaml

from gateway.config import LoadedConfig, load_config, parse_config
from gateway.ops.grafana import render
from gateway.ops.grafana.dashboards import INFLUX_UID, PROM_UID, SCHEMA_VERSION
from gateway.ops.grafana.push import GrafanaPushError, connect, push
from gateway.ops.grafana.render import datasources_yaml
from tests.helpers import sample_config_path

EXAMPLES = Path(__file__).resolve().parents[4] / "configs" / "examples"


def _both() -> LoadedConfig:
    """A robot (ros2), a carrier fleet (opcua) and an AGV fleet (vda5050), from the samples."""
    robot = load_config(sample_config_path("ros2")).config.devices[0]
    fleet = load_config(sample_config_path("opcua")).config.devices[0]
    agvs = load_config(sample_config_path("vda5050")).config.devices[0]
    data = {"site": "or-site", "gateway": "edge-9",
            "influxdb": {"url": "http://127.0.0.1:8086", "database": "tele"},
            "devices": [robot.model_dump(), fleet.model_dump(), agvs.model_dump()]}
    return parse_config(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return render(_both(), tmp_path_factory.mktemp("grafana"))


def _datasource_uids(out: Path) -> set[str]:
    doc = yaml.safe_load((out / "provisioning/datasources/medgw.yaml").read_text())
    return {ds["uid"] for ds in doc["datasources"]}


def test_dashboards_are_valid_grafana_json(rendered: Any) -> None:
    out = rendered.files[0].parent.parent
    uids = _datasource_uids(out)
    assert uids == {INFLUX_UID, PROM_UID}
    files = sorted((out / "dashboards").glob("*.json"))
    assert {f.name for f in files} == set(rendered.dashboards)
    assert {"medgw-fleet.json", "medgw-robot.json", "medgw-carriers.json",
            "medgw-vehicles.json", "medgw-gateway.json"} <= set(rendered.dashboards)
    for path in files:
        board = orjson.loads(path.read_bytes())
        assert board["schemaVersion"] == SCHEMA_VERSION and board["uid"] and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
        _check_grid(board["panels"])
        variables = {v["name"] for v in board["templating"]["list"]}
        for v in board["templating"]["list"]:
            assert v["datasource"]["uid"] in uids and v["query"].startswith("SHOW TAG VALUES")
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids
            assert panel["type"] in {"timeseries", "stat", "state-timeline", "table", "xychart"}
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == panel["datasource"]["uid"]
                text = target.get("query") or target["expr"]
                used = set(re.findall(r"\$([a-z]+)\b", text))
                assert used <= variables | {"timeFilter"}, (path.name, panel["title"], used)
                if panel["datasource"]["uid"] == INFLUX_UID:
                    assert "$timeFilter" in text or "now()" in text
                    assert "{" not in text  # every template placeholder was filled


def _check_grid(panels: list[dict[str, Any]]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert set(g) == {"x", "y", "w", "h"}
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {panel['title']} overlaps another"
                cells.add((x, y))


def test_temperature_limits_come_from_the_opcua_options(tmp_path: Path) -> None:
    loaded = _both()
    data = loaded.config.model_dump(mode="json")
    data["devices"][1]["options"]["events"] = {"temperature_min": 3.5, "temperature_max": 7.25}
    result = render(parse_config(data), tmp_path)
    panel = next(p for p in result.dashboards["medgw-carriers.json"]["panels"]
                 if p["title"].startswith("Payload temperature ("))
    steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 3.5, 7.25]
    rule = next(r for r in result.alerts["groups"][0]["rules"]
                if r["uid"] == "medgw-temperature-excursion")
    assert rule["data"][-1]["model"]["expression"] == "$RA > 7.25 || $RB < 3.5"


def test_operating_state_mappings_use_the_driver_table(rendered: Any) -> None:
    from drivers.ros2.mapping import CRTK_STATES

    panel = next(p for p in rendered.dashboards["medgw-robot.json"]["panels"]
                 if p["title"] == "Operating state")
    options = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"]: float(k) for k, v in options.items()} == dict(CRTK_STATES)


def test_alert_rules_reference_the_provisioned_datasource(rendered: Any) -> None:
    out = rendered.files[0].parent.parent
    doc = yaml.safe_load((out / "provisioning/alerting/medgw-alerts.yaml").read_text())
    rules = doc["groups"][0]["rules"]
    assert {r["uid"] for r in rules} == {"medgw-temperature-excursion", "medgw-robot-fault",
                                         "medgw-vda5050-fatal-error", "medgw-vda5050-estop",
                                         "medgw-vda5050-low-battery", "medgw-vda5050-source-gaps",
                                         "medgw-device-stale"}
    for rule in rules:
        refs = {node["refId"] for node in rule["data"]}
        assert rule["condition"] in refs
        for node in rule["data"]:
            assert node["datasourceUid"] in {INFLUX_UID, "__expr__"}
            if node["datasourceUid"] == "__expr__" and node["model"]["type"] == "reduce":
                assert node["model"]["expression"] in refs
    provider = yaml.safe_load((out / "provisioning/dashboards/medgw.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str((out / "dashboards").resolve())


def test_only_needed_dashboards_for_a_synthetic_config(tmp_path: Path) -> None:
    result = render(load_config(sample_config_path("synthetic")), tmp_path)
    names = set(result.dashboards)
    assert "medgw-carriers.json" not in names
    assert "medgw-robot.json" in names  # the sample writes joint_state
    streams = result.dashboards["medgw-streams.json"]
    assert any('mean("f6")' in p["targets"][0]["query"] for p in streams["panels"])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate_and_render(path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from drivers.ros2 import Ros2Options
    from gateway.ops.cli import app
    from gateway.ops.grafana import catalog

    checked = CliRunner().invoke(app, ["config", "check", str(path)])
    assert checked.exit_code == 0, checked.output
    loaded = load_config(path)
    result = render(loaded, tmp_path)
    drivers = {d.driver for d in loaded.config.devices}
    assert ("medgw-robot.json" in result.dashboards) == ("ros2" in drivers)
    assert ("medgw-carriers.json" in result.dashboards) == ("opcua" in drivers)
    rmf = any(catalog.reads_rmf_fleet(o) for o in loaded.driver_options.values()
              if isinstance(o, Ros2Options))
    assert ("medgw-vehicles.json" in result.dashboards) == ("vda5050" in drivers or rmf)


class _FakeGrafana(BaseHTTPRequestHandler):
    """Records requests; answers 404 on GETs, 200 on writes (a unit-test fake of the API)."""

    calls: ClassVar[list[tuple[str, str, Any]]] = []

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return orjson.loads(self.rfile.read(length)) if length else None

    def _answer(self, code: int, doc: Any) -> None:
        data = orjson.dumps(doc)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, self.headers.get("Authorization")))
        self._answer(404, {"message": "not found"})

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path, self._body()))
        self._answer(200, {"status": "success", "uid": "x"})

    def do_PUT(self) -> None:
        self.do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_grafana() -> Iterator[str]:
    _FakeGrafana.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_uploads_everything_through_grafana_client(rendered: Any, fake_grafana: str
                                                        ) -> None:
    datasources = datasources_yaml(_both(), "http://127.0.0.1:9090")["datasources"]
    result = push(connect(fake_grafana, "sekret"), rendered.dashboards, datasources,
                  rendered.alerts)
    posts = [(path, body) for method, path, body in _FakeGrafana.calls if method == "POST"]
    gets = [auth for method, _, auth in _FakeGrafana.calls if method == "GET"]
    assert gets and all(auth == "Bearer sekret" for auth in gets)
    assert ("/api/folders", {"title": "medgw", "uid": "medgw"}) in posts
    boards = [b["dashboard"]["uid"] for p, b in posts if p == "/api/dashboards/db"]
    assert sorted(boards) == sorted(d["uid"] for d in rendered.dashboards.values())
    assert sorted(result.dashboards) == sorted(boards)
    rules = [b for p, b in posts if p == "/api/v1/provisioning/alert-rules"]
    assert {r["uid"] for r in rules} == set(result.alert_rules)
    assert all(r["folderUID"] == "medgw" and r["ruleGroup"] == "medgw" for r in rules)
    assert [b["uid"] for p, b in posts if p == "/api/datasources"] == [INFLUX_UID, PROM_UID]


def test_push_needs_an_explicit_url_and_reports_refusal(rendered: Any) -> None:
    with pytest.raises(GrafanaPushError, match="--url"):
        connect("grafana.local", "t")
    from gateway.ops.services import free_port

    api = connect(f"http://127.0.0.1:{free_port()}", "t", timeout_s=2)
    with pytest.raises(GrafanaPushError, match="get folder"):
        push(api, rendered.dashboards, [], rendered.alerts)


def test_committed_provisioning_matches_the_generator(tmp_path: Path) -> None:
    committed = EXAMPLES.parent / "grafana"
    render(load_config(EXAMPLES / "hospital-edge.yaml"), tmp_path,
           dashboards_path="/var/lib/grafana/dashboards/medgw")
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in fresh:
        assert (committed / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"configs/grafana/{rel} is stale: rerun medgw grafana render (see its README)")


def test_cli_render_and_push(fake_grafana: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.ops.cli import app

    example = str(EXAMPLES / "carrier-fleet.yaml")
    out = CliRunner().invoke(app, ["grafana", "render", "-c", example, "-o", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert str(tmp_path / "dashboards" / "medgw-carriers.json") in out.output
    missing_url = CliRunner().invoke(app, ["grafana", "push", "-c", example, "--token", "t"])
    assert missing_url.exit_code != 0  # no default host: --url is required
    pushed = CliRunner().invoke(app, ["grafana", "push", "-c", example, "--url", fake_grafana,
                                      "--token", "t"])
    assert pushed.exit_code == 0, pushed.output
    assert "medgw-carriers" in pushed.output and "medgw-temperature-excursion" in pushed.output


def test_the_catalog_reads_the_typed_opcua_options() -> None:
    from drivers.opcua import OpcUaOptions
    from gateway.ops.grafana.catalog import build_catalog

    loaded = _both()
    data = loaded.config.model_dump(mode="json")
    data["devices"][1]["options"].update(
        measurement="tube", event_measurement="tube_event",
        events={"temperature_field": "cold_box", "door_field": "hatch",
                "alarm_field": "fault_code", "mission_field": "job_state"})
    second = dict(data["devices"][1], name="fleet-2")
    second["options"] = dict(second["options"], measurement="agv", event_measurement="agv_ev")
    data["devices"].append(second)
    typed = parse_config(data)
    assert isinstance(typed.driver_options["fleet-2"], OpcUaOptions)
    catalog = build_catalog(typed)
    assert catalog.carrier is not None
    assert (catalog.carrier.measurement, catalog.carrier.event_measurement) == ("tube",
                                                                                "tube_event")
    assert (catalog.carrier.temperature, catalog.carrier.door, catalog.carrier.alarm,
            catalog.carrier.mission) == ("cold_box", "hatch", "fault_code", "job_state")
    # every carrier device's measurements, not only the first one's
    assert {"tube", "tube_event", "agv", "agv_ev"} <= set(catalog.measurements)
    assert catalog.carrier_devices == (data["devices"][1]["name"], "fleet-2")


def test_the_catalog_has_no_hard_coded_option_defaults() -> None:
    source = (Path(__file__).resolve().parents[4] / "gateway/ops/grafana/catalog.py").read_text()
    assert "getattr(" not in source


def _panel(board: dict[str, Any], title_end: str) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["title"].endswith(title_end))


def test_vehicle_dashboard_uses_the_vda5050_tables(rendered: Any) -> None:
    from drivers.vda5050 import CONNECTION_STATES, EVENT_LABELS, OPERATING_MODES

    board = rendered.dashboards["medgw-vehicles.json"]
    assert [v["name"] for v in board["templating"]["list"]] == ["site", "fleet", "vehicle"]
    floor = _panel(board, "floor map (x/y, last 10 minutes)")
    assert floor["type"] == "xychart" and floor["timeFrom"] == "10m"
    # a table (time, stream, x, y) split per vehicle: x/y per frame for the auto mapping
    assert floor["targets"][0]["resultFormat"] == "table"
    assert floor["transformations"] == [{"id": "partitionByValues", "options": {
        "fields": ["stream"], "keepFields": False}}]
    assert floor["options"]["mapping"] == "auto"
    assert 'last("x") AS "x", last("y") AS "y" FROM "vda5050_state"' in (
        floor["targets"][0]["query"])
    mode = _panel(board, "operating mode")["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"]: float(k) for k, v in mode.items()}.items() <= {
        k: float(v) for k, v in OPERATING_MODES.items()}.items()
    assert set(map(float, mode)) == set(map(float, OPERATING_MODES.values()))
    connection = _panel(board, "connection (vehicle's connection topic)")
    query = connection["targets"][0]["query"]
    assert '"stream" =~ /^$vehicle\\.events$/' in query and '"code" = 5' in query
    options = connection["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"]: float(k) for k, v in options.items()} == {
        k: float(v) for k, v in CONNECTION_STATES.items()}
    events = _panel(board, "latest events")["fieldConfig"]["overrides"][0]
    assert events["matcher"] == {"id": "byName", "options": "code"}
    labels = events["properties"][0]["value"][0]["options"]
    assert {v["text"]: float(k) for k, v in labels.items()} == dict(EVENT_LABELS)
    gaps = _panel(board, "(messages the vehicle numbered, nobody received)")
    assert 'sum("missing") FROM "medgw_source_gap"' in gaps["targets"][0]["query"]


def test_low_battery_and_source_gap_thresholds_are_settings(tmp_path: Path) -> None:
    from gateway.ops.grafana import Thresholds

    result = render(_both(), tmp_path, thresholds=Thresholds(low_battery_pct=35,
                                                             source_gap_per_min=0.5))
    rules = {r["uid"]: r for r in result.alerts["groups"][0]["rules"]}
    assert rules["medgw-vda5050-low-battery"]["data"][-1]["model"]["expression"] == "$RA < 35"
    assert rules["medgw-vda5050-source-gaps"]["data"][-1]["model"]["expression"] == "$RA > 5"
    stat = _panel(result.dashboards["medgw-vehicles.json"], "battery now")
    steps = [s["value"] for s in stat["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 35.0, 70.0]
    default = render(_both(), tmp_path / "default").alerts["groups"][0]["rules"]
    low = next(r for r in default if r["uid"] == "medgw-vda5050-low-battery")
    assert low["data"][-1]["model"]["expression"] == "$RA < 20"
    fatal = next(r for r in default if r["uid"] == "medgw-vda5050-fatal-error")
    assert 'last("fatal_errors") FROM "vda5050_state"' in fatal["data"][0]["model"]["query"]
    assert fatal["noDataState"] == "OK"  # a silent vehicle is the stale alert's business


def test_a_second_fleet_source_adds_its_own_section() -> None:
    """An Open-RMF fleet (future ros2 rmf_fleet streams) plugs in beside VDA 5050."""
    from dataclasses import replace

    from gateway.ops.grafana.alerts import alert_descs
    from gateway.ops.grafana.catalog import build_catalog
    from gateway.ops.grafana.dashboards import dashboards_for, format_context
    from gateway.ops.grafana.render import dashboard_json

    catalog = build_catalog(_both())
    vda = catalog.fleets[0]
    rmf = replace(vda, key="rmf", title="Open-RMF", devices=("rmf-fleet",),
                  state="rmf_robot_state", events="rmf_robot_event", gaps="medgw_source_gap",
                  battery="battery", mode="mode", errors=None, fatal="mode",
                  fatal_when="== 8", estop="mode", estop_when="== 5", connection_code=None,
                  error_code=None, event_fields=("code", "mode", "previous"),
                  mode_labels=(("IDLE", 0.0), ("EMERGENCY", 5.0)))
    both = replace(catalog, fleets=(vda, rmf),
                   measurements=(*catalog.measurements, "rmf_robot_state", "rmf_robot_event"))
    board = next(d for d in dashboards_for(both) if d.uid == "medgw-vehicles")
    board_json = dashboard_json(board, format_context(both))
    fleet_var = board_json["templating"]["list"][1]["query"]
    assert "/^(vda5050_state|rmf_robot_state)$/" in fleet_var
    rmf_mode = _panel(board_json, "Open-RMF: operating mode")
    assert '"mode") FROM "rmf_robot_state"' in rmf_mode["targets"][0]["query"]
    options = rmf_mode["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"] for v in options.values()} == {"IDLE", "EMERGENCY"}
    alerts = {a.uid: a for a in alert_descs(both)}
    assert alerts["medgw-rmf-estop"].condition == "$RA == 5"
    assert alerts["medgw-rmf-fatal-error"].condition == "$RA == 8"
    assert 'last("mode") FROM "rmf_robot_state"' in alerts["medgw-rmf-estop"].queries[0]
    assert alerts["medgw-vda5050-estop"].condition == "$RA > 0"
    rmf_titles = [p["title"] for p in board_json["panels"] if p["title"].startswith("Open-RMF")]
    assert not any("connection" in t or "errors" in t for t in rmf_titles), rmf_titles
    events = _panel(board_json, "Open-RMF: latest events")["targets"][0]["query"]
    assert events.startswith('SELECT "code", "mode", "previous", "text" FROM "rmf_robot_event"')
    _check_grid(board_json["panels"])


def test_cli_render_takes_the_alert_thresholds(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.ops.cli import app

    example = str(EXAMPLES / "sample-transport-fleet.yaml")
    out = CliRunner().invoke(app, ["grafana", "render", "-c", example, "-o", str(tmp_path),
                                   "--low-battery-pct", "25"])
    assert out.exit_code == 0, out.output
    doc = yaml.safe_load((tmp_path / "provisioning/alerting/medgw-alerts.yaml").read_text())
    low = next(r for r in doc["groups"][0]["rules"] if r["uid"] == "medgw-vda5050-low-battery")
    assert low["data"][-1]["model"]["expression"] == "$RA < 25"
    assert (tmp_path / "dashboards" / "medgw-vehicles.json").exists()


def test_gateway_health_shows_the_new_metrics(rendered: Any) -> None:
    board = rendered.dashboards["medgw-gateway.json"]
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"] if "expr" in t)
    for name in ("medgw_driver_restarts_total", "medgw_driver_running",
                 "medgw_seq_state_resets_total", "medgw_unmatched_publications",
                 "medgw_topic_never_delivered", "medgw_middleware_samples_lost_total",
                 "medgw_publisher_errors_total", "medgw_spool_write_errors_total",
                 "medgw_spool_recovery_cut_records_total", "medgw_source_gap_total"):
        assert name + "{" in exprs or name + ")" in exprs or name + "[" in exprs, name
    from drivers.vda5050.fleet import FleetMetrics
    from gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    FleetMetrics.of(metrics.registry)
    families = {m.name for m in metrics.registry.collect()}
    used = set(re.findall(r"\b(medgw_[a-z_]+)", exprs))
    assert {u.removesuffix("_total") for u in used} <= families  # the real metric names


def test_an_open_rmf_fleet_is_a_second_fleet_source(tmp_path: Path) -> None:
    from drivers.ros2 import RMF_ROBOT_MODES, Ros2Options, TopicOptions
    from gateway.ops.grafana.catalog import reads_rmf_fleet

    assert reads_rmf_fleet(Ros2Options(topics=[TopicOptions(name="fleet_states")]))
    assert reads_rmf_fleet(Ros2Options(topics=[TopicOptions(
        name="/tugs", type="rmf_fleet_msgs/msg/FleetState")]))
    assert not reads_rmf_fleet(Ros2Options(topics=[TopicOptions(
        name="/fleet_states", type="std_msgs/msg/String")]))
    assert reads_rmf_fleet(Ros2Options(patterns=["/fleet_*"]))
    assert not reads_rmf_fleet(Ros2Options(patterns=["/PSM*/*"]))
    result = render(load_config(EXAMPLES / "hospital-edge.yaml"), tmp_path)
    board = result.dashboards["medgw-vehicles.json"]
    assert board["title"] == "medgw — vehicle fleets (VDA 5050, Open-RMF)"
    states = board["templating"]["list"][1]["query"]
    assert "/^(vda5050_state|rmf_robot)$/" in states
    floor = _panel(board, "Open-RMF: vehicles on the floor map (x/y, last 10 minutes)")
    assert 'FROM "rmf_robot"' in floor["targets"][0]["query"]
    mode = _panel(board, "Open-RMF: operating mode")["fieldConfig"]["defaults"]["mappings"]
    assert {v["text"]: float(k) for k, v in mode[0]["options"].items()} == dict(RMF_ROBOT_MODES)
    rules = {r["uid"]: r for r in result.alerts["groups"][0]["rules"]}
    assert rules["medgw-rmf-estop"]["data"][-1]["model"]["expression"] == "$RA == 5"
    assert rules["medgw-rmf-fatal-error"]["data"][-1]["model"]["expression"] == "$RA == 8"
    assert rules["medgw-rmf-fatal-error"]["title"] == "Open-RMF vehicle has ADAPTER_ERROR"
    assert 'last("battery") FROM "rmf_robot"' in (
        rules["medgw-rmf-low-battery"]["data"][0]["model"]["query"])
