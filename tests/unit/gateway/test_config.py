"""Config loading: typed, unknown keys named with path and file, secrets from env/file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.plugins import driver_names, load_driver
from tests.helpers import sample_config_path

BASE = """
site: st-olav
gateway: edge-01
devices:
  - name: gen
    driver: synthetic
    options:
      streams: [{name: s1, fields: 2, rate_hz: 10}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, BASE))
    assert loaded.config.site == "st-olav"
    assert loaded.config.mqtt.port == 1883
    assert loaded.config.influxdb.batch_lines == 5000
    options = loaded.driver_options["gen"]
    assert options.streams[0].fields == 2  # type: ignore[attr-defined]


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "mqqt: {host: 127.0.0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "mqqt: unknown key" in str(info.value)


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("rate_hz: 10", "rate_hz: 10, rat_hz: 5"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "devices[0].options.streams[0].rat_hz"
    assert "unknown key" in str(info.value) and str(path) in str(info.value)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "mqtt: {port: not-a-port}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "mqtt.port"


def test_unknown_driver_lists_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("driver: synthetic", "driver: modbus"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "devices[0].driver"
    assert "synthetic" in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "site: [unclosed"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_duplicate_device_names_rejected(tmp_path: Path) -> None:
    text = BASE + "  - name: gen\n    driver: synthetic\n    options: {streams: [{name: x}]}\n"
    with pytest.raises(ConfigError, match="repeated: gen"):
        load_config(write(tmp_path, text))


def test_secret_from_env_and_file_never_in_message(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-token\n")
    text = BASE + (
        "mqtt: {username: gw, password: {env: MEDGW_TEST_PW}}\n"
        f"influxdb: {{backend: v2, token: {{file: {secret_file}}}}}\n"
    )
    loaded = load_config(write(tmp_path, text))
    monkeypatch.setenv("MEDGW_TEST_PW", "hunter2")
    assert loaded.secret(loaded.config.mqtt.password, "mqtt.password") == "hunter2"
    assert loaded.secret(loaded.config.influxdb.token, "influxdb.token") == "s3cr3t-token"
    monkeypatch.delenv("MEDGW_TEST_PW")
    with pytest.raises(ConfigError) as info:
        loaded.secret(loaded.config.mqtt.password, "mqtt.password")
    assert "MEDGW_TEST_PW is not set" in str(info.value) and info.value.key == "mqtt.password"
    assert "hunter2" not in repr(loaded.config)


def test_secret_requires_exactly_one_source(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "mqtt: {password: {env: A, file: /b}}\n")
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(path)


@pytest.mark.parametrize("name", driver_names())
def test_every_driver_loads_its_sample_config(name: str) -> None:
    info = load_driver(name)
    assert info.name == name
    path = sample_config_path(name)
    assert path.exists(), f"driver {name} has no sample.yaml"
    assert (path.parent / "README.md").exists(), f"driver {name} has no README.md"
    loaded = load_config(path)
    assert any(device.driver == name for device in loaded.config.devices)
