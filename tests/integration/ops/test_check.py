"""``medgw check`` against real mosquitto and influxd: reachable, closed port, refused auth."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway.config import load_config
from gateway.ops.check import FAIL, OK, SKIP, run_checks
from gateway.ops.cli import app
from gateway.ops.services import MosquittoService, free_port
from tests.helpers import InfluxTarget

pytestmark = pytest.mark.integration

SYNTHETIC = {"name": "gen", "driver": "synthetic",
             "options": {"streams": [{"name": "s", "fields": 1}]}}


def _config(tmp_path: Path, mqtt: dict[str, Any], influx: dict[str, Any]) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({
        "site": "s1", "gateway": "g1", "mqtt": mqtt, "influxdb": influx,
        "devices": [SYNTHETIC]}), encoding="utf-8")
    return path


def _by_target(results: list[Any]) -> dict[str, Any]:
    return {f"{r.component}:{r.target}": r for r in results}


def test_everything_reachable(tmp_path: Path, mosquitto: MosquittoService,
                              influxdb: InfluxTarget) -> None:
    path = _config(tmp_path, {"host": "127.0.0.1", "port": mosquitto.port},
                   {"url": influxdb.url, "database": influxdb.database})
    result = CliRunner().invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "CONNACK Success" in result.output and "write authorized" in result.output
    results = run_checks(load_config(path))
    assert [r.status for r in results] == [OK, OK, OK, SKIP]
    assert results[-1].detail == "no check available"
    assert influxdb.query("SHOW MEASUREMENTS") == []  # the write check stored nothing


def test_closed_ports_fail_with_reasons(tmp_path: Path) -> None:
    path = _config(tmp_path, {"host": "127.0.0.1", "port": free_port()},
                   {"url": f"http://127.0.0.1:{free_port()}", "database": "medgw"})
    result = CliRunner().invoke(app, ["check", "-c", str(path), "--timeout", "2"])
    assert result.exit_code == 1
    results = run_checks(load_config(path), 2)
    assert [r.status for r in results[:2]] == [FAIL, FAIL]
    assert all("connection refused" in r.detail for r in results[:2])


def test_missing_database_and_refused_password(tmp_path: Path, make_mosquitto: Any,
                                               influxdb: InfluxTarget,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gw", "right"], check=True,
                   capture_output=True, timeout=20)
    broker = make_mosquitto(allow_anonymous=False, extra_config=[f"password_file {passwords}"])
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong")
    path = _config(tmp_path, {"host": "127.0.0.1", "port": broker.port, "username": "gw",
                              "password": {"env": "TEST_MQTT_PASSWORD"}},
                   {"url": influxdb.url, "database": "absent_db", "create_database": False})
    results = run_checks(load_config(path))
    broker_result, ping, database = results[:3]
    assert broker_result.status == FAIL and "refused" in broker_result.detail
    assert "password" in broker_result.detail.lower()
    assert ping.status == OK
    assert database.status == FAIL and "database not found" in database.detail
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "right")
    assert run_checks(load_config(path))[0].status == OK


def test_influx_user_without_write_right_fails(tmp_path: Path, mosquitto: MosquittoService,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.ops.services import InfluxdService

    with InfluxdService(tmp_path / "influxd", auth_enabled=True) as influxd:
        influxd.query_raw("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
        admin = ("admin", "admin-pw")
        influxd.create_database("tele", auth=admin)
        influxd.query_raw("CREATE USER viewer WITH PASSWORD 'viewer-pw'", auth=admin)
        influxd.query_raw('GRANT READ ON "tele" TO "viewer"', auth=admin)
        influxd.query_raw("CREATE USER writer WITH PASSWORD 'writer-pw'", auth=admin)
        influxd.query_raw('GRANT WRITE ON "tele" TO "writer"', auth=admin)
        results = {}
        for user in ("viewer", "writer"):
            monkeypatch.setenv("TEST_INFLUX_PASSWORD", f"{user}-pw")
            path = _config(tmp_path, {"host": "127.0.0.1", "port": mosquitto.port},
                           {"url": influxd.url, "database": "tele", "username": user,
                            "password": {"env": "TEST_INFLUX_PASSWORD"}})
            results[user] = run_checks(load_config(path))[2]
        assert influxd.query("SHOW MEASUREMENTS", "tele", auth=admin) == []
    assert results["viewer"].status == FAIL and "HTTP 403" in results["viewer"].detail
    assert "not authorized" in results["viewer"].detail
    assert results["writer"].status == OK and "write authorized" in results["writer"].detail
