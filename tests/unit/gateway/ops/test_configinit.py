"""``medgw config init``: a commented config that passes ``config check``, from device blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ops.configinit import Answers, render, write_config
from tests.integration.dayone.support import medgw

BLOCK = """# a device block as discover writes it
- name: psm1
  driver: synthetic
  options:
    streams:
    - {name: joints, fields: 3, rate_hz: 50}
"""


def test_written_config_loads_and_keeps_comments(tmp_path: Path) -> None:
    block = tmp_path / "psm1.yaml"
    block.write_text(BLOCK)
    out = tmp_path / "medgw.yaml"
    summary = write_config(out, Answers("st-olav", "edge-01", mqtt_port=1884,
                                        spool_dir=tmp_path / "spool"), (block,))
    assert "psm1 (synthetic)" in summary
    loaded = load_config(out)
    assert loaded.config.site == "st-olav" and loaded.config.mqtt.port == 1884
    assert loaded.config.spool.dir == tmp_path / "spool"
    assert [d.name for d in loaded.config.devices] == ["psm1"]
    text = out.read_text()
    assert "# The disk spool" in text and "medgw run --test" in text
    assert out.stat().st_mode & 0o077 == 0o040  # group-readable, nobody else


def test_refuses_overwrite_duplicates_and_bad_names(tmp_path: Path) -> None:
    block = tmp_path / "b.yaml"
    block.write_text(BLOCK)
    out = tmp_path / "c.yaml"
    out.write_text("keep me")
    with pytest.raises(ConfigError, match="--force"):
        write_config(out, Answers("s", "g"), (block,))
    assert out.read_text() == "keep me"
    with pytest.raises(ConfigError, match="psm1"):
        write_config(tmp_path / "d.yaml", Answers("s", "g"), (block, block))
    with pytest.raises(ConfigError, match="site"):
        write_config(tmp_path / "e.yaml", Answers("bad site!", "g"), (block,))
    assert not (tmp_path / "e.yaml").exists()  # nothing written that would not load


def test_no_device_gives_a_placeholder_that_loads(tmp_path: Path) -> None:
    text = render(Answers("s", "g", spool_dir=None), [], tmp_path / "x.yaml")
    data = yaml.safe_load(text)
    assert data["devices"][0]["driver"] == "synthetic"
    assert "spool" not in data


def test_cli_non_interactive_then_config_check(tmp_path: Path) -> None:
    block = tmp_path / "b.yaml"
    block.write_text(BLOCK)
    out = tmp_path / "medgw.yaml"
    result = medgw("config", "init", "-o", out, "--device", block, "--site", "ward-3",
                   "--gateway", "box-7", "--influx-url", "http://127.0.0.1:8087")
    assert result.exit_code == 0, result.output
    check = medgw("config", "check", out)
    assert check.exit_code == 0 and "ward-3" in check.output
    assert load_config(out).config.influxdb.url == "http://127.0.0.1:8087"


def test_cli_asks_for_site_and_gateway_when_interactive(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.ops.cli import app

    out = tmp_path / "asked.yaml"
    result = CliRunner().invoke(app, ["config", "init", "-o", str(out), "--interactive"],
                                input="ward-9\nbox-2\n")
    assert result.exit_code == 0, result.output
    assert "site name" in result.output and "gateway name" in result.output
    config = load_config(out).config
    assert (config.site, config.gateway) == ("ward-9", "box-2")
