"""Config loading: typed, unknown keys named with path and file, secrets from env/file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config, parse_config
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


# ---------------------------------------------------------------- never a traceback (#10)
def test_a_non_utf8_file_is_a_config_error_naming_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(BASE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    line = BASE.count("\n") + 1
    assert f"not UTF-8 text: byte 0xe9 at line {line}" in str(info.value)


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000,
    "a: " + "{b: " * 3000 + "1" + "}" * 3000,
    "- " * 5000 + "x",
])
def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="YAML nested too deeply") as info:
        load_config(write(tmp_path, text))
    assert str(tmp_path) in str(info.value)


def test_deep_nesting_inside_a_section_names_the_key(tmp_path: Path) -> None:
    nested: object = 1
    for _ in range(3000):
        nested = [nested]
    with pytest.raises(ConfigError) as info:
        parse_config({"site": "s", "gateway": "g", "devices": [
            {"name": "d", "driver": "synthetic", "options": {"streams": nested}}]}, "gw.yaml")
    assert "gw.yaml" in str(info.value)


@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30 10:00:00"])
def test_a_yaml_date_that_does_not_exist_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, BASE + f"when: {value}\n"))


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(b"#" * (5 * 1024 * 1024))
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_config(path)


@pytest.mark.parametrize(("prefix", "message"), [
    ("medgw/#", "contains '#'"),
    ("medgw/+/v1", "contains '[+]'"),
    ("medgw//v1", "empty level"),
    ("/medgw/v1", "empty level"),
    ("medgw/v1/", "empty level"),
    ("", "empty level"),
    ("$SYS/medgw", "starts with '\\$'"),
    ("medgw/\x00", "NUL"),
    ("m" * 2000, "more than 1024"),
    ("medgw/\udc80", "not valid UTF-8"),
])
def test_topic_prefixes_a_broker_refuses_are_config_errors(prefix: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config({"site": "s", "gateway": "g", "mqtt": {"topic_prefix": prefix}},
                     "gw.yaml")
    assert info.value.key == "mqtt.topic_prefix" and info.value.file == "gw.yaml"


def test_valid_topic_prefixes_load() -> None:
    for prefix in ("medgw/v1", "site-a/medgw/v1", "hospital.eu/m_g-w/v1", "m"):
        assert parse_config({"site": "s", "gateway": "g",
                             "mqtt": {"topic_prefix": prefix}}).config.mqtt.topic_prefix == prefix


@pytest.mark.parametrize(("section", "key"), [
    ("mqtt", "password"), ("influxdb", "password"), ("influxdb", "token")])
def test_inline_secrets_are_config_errors_saying_how_to_write_them(section: str,
                                                                   key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"site": "s", "gateway": "g", section: {key: "hunter2"}}, "gw.yaml")
    assert info.value.key == f"{section}.{key}"
    assert "never written in the config: write {env: VARIABLE} or {file:" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("mqtt", "key"), [
    ({"client_id": ""}, "mqtt.client_id"), ({"client_id": "a\x00b"}, "mqtt.client_id"),
    ({"username": "x" * 70_000}, "mqtt.username"),
])
def test_mqtt_strings_a_broker_refuses_are_config_errors(mqtt: dict[str, str],
                                                         key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"site": "s", "gateway": "g", "mqtt": mqtt}, "gw.yaml")
    assert info.value.key == key


@pytest.mark.parametrize(("stream", "message"), [
    ({"name": "status"}, "reserved"),
    ({"name": "s", "measurement": "a b"}, "pattern"),
])
def test_synthetic_streams_the_ingest_refuses_are_config_errors(stream: dict[str, str],
                                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config({"site": "s", "gateway": "g", "devices": [
            {"name": "d", "driver": "synthetic", "options": {"streams": [stream]}}]}, "gw.yaml")
    assert (info.value.key or "").startswith("devices[0].options.streams[0]")


@pytest.mark.parametrize(("data", "key"), [
    ({"gateway": "g" * 65_600}, "gateway"),
    ({"site": "s" * 129}, "site"),
    ({"influxdb": {"url": "ftp://127.0.0.1:8086"}}, "influxdb.url"),
    ({"influxdb": {"url": "http://"}}, "influxdb.url"),
    ({"influxdb": {"database": 'a"b'}}, "influxdb.database"),
    ({"influxdb": {"database": "a\nb"}}, "influxdb.database"),
    ({"mqtt": {"host": "broker .example"}}, "mqtt.host"),
    ({"mqtt": {"host": ""}}, "mqtt.host"),
])
def test_values_a_server_refuses_are_config_errors_naming_the_key(data: dict[str, Any],
                                                                  key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"site": "s", "gateway": "g", **data}, "gw.yaml")
    assert info.value.key == key and len(str(info.value)) < 1000


def test_a_yaml_alias_bomb_is_refused_before_validation(tmp_path: Path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        name, previous = chr(ord("a") + i), chr(ord("a") + i - 1)
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]")
    with pytest.raises(ConfigError, match="aliases expand to more than 100,000 values"):
        load_config(write(tmp_path, BASE + "\n".join(levels) + "\n"))
