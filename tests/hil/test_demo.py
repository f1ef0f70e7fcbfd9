"""The README's main job: `medgw demo` with both simulators, broker, InfluxDB, gateway, ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.ops.cli import app

pytestmark = pytest.mark.hil


def test_demo_lands_every_received_sample_in_influxdb(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--seconds", "6", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "every sample the gateway received is in InfluxDB" in result.output
    for stream in ("davinci-or1/PSM1.measured_js", "carrier-fleet/carrier-01"):
        assert stream in result.output
    # the scripted temperature excursion took the event lane all the way to InfluxDB
    assert "incident: a payload leaves 2-8 °C on carrier-03" in result.output
    row = next(line for line in result.output.splitlines()
               if "demo-hospital/carrier-fleet/carrier-03.events" in line)
    produced, published, stored, lost = (int(cell) for cell in row.split("│")[2:6])
    assert produced >= 1 and produced == published == stored and lost == 0
    dashboards = sorted(p.name for p in (tmp_path / "grafana" / "dashboards").glob("*.json"))
    assert dashboards, "the demo renders Grafana dashboards for its config"
