"""The README's main job: `medgw demo` with its simulators (a robot, OPC UA carriers, a VDA 5050
AGV fleet on its own broker, an Open-RMF fleet), broker, InfluxDB, gateway and ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.ops.cli import app

pytestmark = pytest.mark.hil

SITE = "demo-hospital"
AGVS = ("agv-01", "agv-02", "agv-03", "agv-04")  # VDA 5050 2.0.0, 3.0.0, 2.1.0, 3.0.0
TUGS = ("tug1", "tug2", "tug3")  # Open-RMF fleet "tug"


def summary_rows(output: str) -> dict[str, tuple[int, int, int, int]]:
    """The end summary: stream key -> (produced, published, in InfluxDB, lost)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) == 7 and cells[1].startswith(f"{SITE}/") and cells[2].isdigit():
            produced, published, stored, lost = (int(cell) for cell in cells[2:6])
            rows[cells[1]] = (produced, published, stored, lost)
    return rows


def assert_landed(rows: dict[str, tuple[int, int, int, int]], key: str) -> None:
    """At least one sample of ``key`` produced, and every one published and in InfluxDB."""
    assert key in rows, f"{key} not in the end summary"
    produced, published, stored, lost = rows[key]
    assert produced >= 1 and produced == published == stored and lost == 0, (key, rows[key])


def test_demo_lands_every_received_sample_in_influxdb(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--seconds", "6", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "every sample the gateway received is in InfluxDB" in result.output
    for stream in ("davinci-or1/PSM1.measured_js", "carrier-fleet/carrier-01"):
        assert stream in result.output
    rows = summary_rows(result.output)
    # the scripted temperature excursion took the event lane all the way to InfluxDB
    assert "incident: a payload leaves 2-8 °C on carrier-03" in result.output
    assert_landed(rows, f"{SITE}/carrier-fleet/carrier-03.events")
    # the fleets: every vehicle's and robot's state stream, and their event streams
    # (ONLINE and the factsheet per AGV; the first state per tug), in InfluxDB
    for agv in AGVS:
        assert_landed(rows, f"{SITE}/agv-fleet/{agv}")
        assert_landed(rows, f"{SITE}/agv-fleet/{agv}.events")
    for tug in TUGS:
        assert_landed(rows, f"{SITE}/rmf-fleet/fleet_states.tug.{tug}")
        assert_landed(rows, f"{SITE}/rmf-fleet/fleet_states.tug.{tug}.events")
    for stream in ("door_states.lab_door", "door_states.pharmacy_door", "lift_states.lift_main"):
        assert_landed(rows, f"{SITE}/rmf-fleet/{stream}")
    # the states dropped on purpose at the sources are stored as source gaps
    assert "incident: agv-01 (VDA 5050) loses 3 state messages at the source" in result.output
    assert_landed(rows, f"{SITE}/agv-fleet/agv-01.source_gap")
    assert "incident: the Open-RMF fleet adapter loses 2 FleetStates" in result.output
    for tug in TUGS:
        assert_landed(rows, f"{SITE}/rmf-fleet/fleet_states.tug.{tug}.source_gap")
    dashboards = sorted(p.name for p in (tmp_path / "grafana" / "dashboards").glob("*.json"))
    assert dashboards, "the demo renders Grafana dashboards for its config"
