"""Unit tests of the OPC UA driver options, error messages and read-only guarantee."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua
from pydantic import ValidationError

import drivers.opcua
from drivers.opcua.mapping import EventRule
from drivers.opcua.options import EventOptions, OpcUaOptions
from drivers.opcua.session import translate_error
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError, DeviceError
from gateway.plugins import load_driver
from tests.helpers import sample_config_path

ENDPOINT = "opc.tcp://127.0.0.1:4840/medgw/carriers"
BROWSE = [{"pattern": "Fleet/*/*"}]


def plain(**extra: Any) -> dict[str, Any]:
    """Options of an unsecured connection plus ``extra``."""
    return {"endpoint": ENDPOINT, "security_policy": "None", "browse": BROWSE, **extra}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """Three files standing in for certificate, key and server certificate (paths only)."""
    files = {}
    for key in ("certificate", "private_key", "server_certificate"):
        files[key] = tmp_path / f"{key}.der"
        files[key].write_bytes(b"x")
    return files


def errors(exc: ValidationError) -> dict[str, str]:
    """Map 'a.b' locations to messages."""
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}


def test_security_is_on_by_default_and_names_the_missing_keys() -> None:
    with pytest.raises(ValidationError) as info:
        OpcUaOptions.model_validate({"endpoint": ENDPOINT, "browse": BROWSE})
    found = errors(info.value)
    assert set(found) == {"certificate", "private_key", "server_certificate"}
    assert all('security_policy: "None"' in msg for msg in found.values())
    assert "Basic256Sha256 SignAndEncrypt" in found["certificate"]


def test_the_gateway_config_error_names_the_key(tmp_path: Path) -> None:
    data = yaml.safe_load(sample_config_path("opcua").read_text(encoding="utf-8"))
    del data["devices"][0]["options"]["security_policy"]
    with pytest.raises(ConfigError) as info:
        parse_config(data, "gw.yaml")
    assert "devices[0].options.certificate" in str(info.value)
    assert "gw.yaml" in str(info.value)


def test_policy_none_must_be_written_and_then_needs_no_files() -> None:
    options = OpcUaOptions.model_validate(plain())
    assert not options.secure
    assert options.security_mode == "SignAndEncrypt"


def test_secure_options_accept_existing_files(pki: dict[str, Path]) -> None:
    options = OpcUaOptions.model_validate(
        {"endpoint": ENDPOINT, "browse": BROWSE, "security_mode": "Sign", **pki})
    assert options.secure and options.security_mode == "Sign"
    assert options.certificate == pki["certificate"]


def test_missing_certificate_file_is_named(pki: dict[str, Path], tmp_path: Path) -> None:
    pki["server_certificate"] = tmp_path / "absent.der"
    with pytest.raises(ValidationError) as info:
        OpcUaOptions.model_validate({"endpoint": ENDPOINT, "browse": BROWSE, **pki})
    assert errors(info.value) == {"server_certificate":
                                  f"Value error, file not found: {tmp_path / 'absent.der'}"}


@pytest.mark.parametrize("policy", ["none", "Basic128Rsa15", "Aes256"])
def test_unknown_policies_are_refused(policy: str) -> None:
    with pytest.raises(ValidationError, match="security_policy"):
        OpcUaOptions.model_validate(plain(security_policy=policy))


@pytest.mark.parametrize(("extra", "message"), [
    ({"password": {"env": "A"}, "password_env": "B", "username": "u"},
     r"password_env is not an option: write password: \{env: VARIABLE\}"),
    ({"password_file": "/run/pw", "username": "u"},
     r"password_file is not an option: write password: \{file: /path/to/file\}"),
    ({"username": "gateway"}, r"give password: \{env: VARIABLE\} or \{file: /path/to/file\}"),
    ({"password": {"env": "A"}}, "username is missing"),
    ({"password": "inline", "username": "u"}, "secrets are never written in the config"),
    ({"private_key_password": "inline", "security_policy": "None"},
     "secrets are never written in the config"),
    ({"password": {"env": "A", "file": "/b"}, "username": "u"}, "exactly one of"),
    ({"nodes": [{"node_id": "ns=2;s=x", "stream": "s", "field": "quality"}]}, "e.g. quality_"),
    ({"nodes": [{"node_id": "ns=2;s=x", "stream": "status", "field": "f"}]}, "reserved"),
    ({"nodes": [{"node_id": "ns=2;s=x", "stream": "c.events", "field": "f"}]}, "reserved"),
    ({"browse": []}, "at least one 'browse' pattern"),
    ({"browse": [{"pattern": "Fleet//Battery"}]}, "empty segment"),
    ({"endpoint": "http://127.0.0.1:4840"}, "endpoint"),
    ({"queue_size": 0}, "queue_size"),
    ({"publishing_interval_ms": 0}, "publishing_interval_ms"),
    ({"deadband": -1}, "deadband"),
    ({"timestamp_source": "gateway"}, "timestamp_source"),
    ({"reconnect_initial_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
    ({"nodes": [{"node_id": "ns=2;s=x", "stream": "a/b", "field": "f"}]}, "stream"),
    ({"sampling_rate": 10}, "Extra inputs are not permitted"),
    ({"endpoint": "opc.tcp://"}, "endpoint"),
    ({"endpoint": "opc.tcp://host:4840 /x"}, "endpoint"),
    ({"nodes": [{"node_id": "garbage", "stream": "s", "field": "f"}]}, "not a node id"),
    ({"events": {"temperature_field": "PayloadTemperature"}}, "temperature_field"),
])
def test_invalid_options_are_refused(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpcUaOptions.model_validate(plain(**extra))


def test_password_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDGW_TEST_OPCUA_PW", "from-env")
    assert OpcUaOptions.model_validate(plain(
        username="u", password={"env": "MEDGW_TEST_OPCUA_PW"})).resolve_password() == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n", encoding="utf-8")
    assert OpcUaOptions.model_validate(plain(
        username="u", password={"file": str(secret)})).resolve_password() == "from-file"
    assert OpcUaOptions.model_validate(plain()).resolve_password() is None


def test_missing_password_env_is_a_device_error_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDGW_TEST_ABSENT", raising=False)
    options = OpcUaOptions.model_validate(plain(username="u",
                                                password={"env": "MEDGW_TEST_ABSENT"}))
    with pytest.raises(DeviceError, match="password: environment variable MEDGW_TEST_ABSENT"):
        options.resolve_password()


def test_missing_key_password_file_is_a_device_error_naming_it(tmp_path: Path) -> None:
    options = OpcUaOptions.model_validate(plain(
        private_key_password={"file": str(tmp_path / "absent")}))
    with pytest.raises(DeviceError, match="private_key_password: cannot read secret file"):
        options.resolve_key_password()


def test_inline_password_in_a_gateway_config_is_a_config_error_naming_the_key(
        tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "site: s\ngateway: g\ndevices:\n  - name: fleet\n    driver: opcua\n    options:\n"
        "      endpoint: opc.tcp://127.0.0.1:4840\n      security_policy: 'None'\n"
        "      browse: [{pattern: 'Fleet/*/*'}]\n      username: gw\n      password: hunter2\n",
        encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "devices[0].options.password"
    assert "{env: VARIABLE}" in str(info.value) and str(path) in str(info.value)
    assert "hunter2" not in str(info.value)


def test_password_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDGW_TEST_OPCUA_PW", "hunter2")
    options = OpcUaOptions.model_validate(plain(username="u",
                                                password={"env": "MEDGW_TEST_OPCUA_PW"}))
    assert options.resolve_password() == "hunter2"
    assert "hunter2" not in repr(options)


def test_sample_config_validates_and_spells_out_policy_none() -> None:
    path = sample_config_path("opcua")
    loaded = load_config(path)
    options = loaded.driver_options["carrier-fleet"]
    assert isinstance(options, OpcUaOptions)
    assert options.security_policy == "None"
    assert 'security_policy: "None"' in path.read_text(encoding="utf-8")
    assert load_driver("opcua").options_model is OpcUaOptions


# ---------------------------------------------------------------- error messages
def test_event_options_are_the_event_rule_plus_enabled() -> None:
    rule_fields = [f.name for f in dataclasses.fields(EventRule)]
    assert list(EventOptions.model_fields) == ["enabled", *rule_fields]
    assert EventOptions().rule() == EventRule()  # the defaults come from EventRule
    custom = OpcUaOptions.model_validate(plain(events={"temperature_max": 6.5,
                                                       "fault_states": [4, 5]}))
    assert custom.events.rule() == EventRule(temperature_max=6.5, fault_states=(4, 5))


def test_auth_error_message() -> None:
    options = OpcUaOptions.model_validate(plain(username="gateway", password={"env": "X"}))
    err = translate_error(ua.UaStatusCodeError(ua.StatusCodes.BadUserAccessDenied), options)
    assert str(err) == (f"OPC UA server {ENDPOINT} refused user 'gateway'"
                        " (BadUserAccessDenied): wrong username or password")


def test_certificate_error_message(pki: dict[str, Path]) -> None:
    options = OpcUaOptions.model_validate({"endpoint": ENDPOINT, "browse": BROWSE, **pki})
    err = translate_error(ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted), options)
    assert f"rejected the client certificate {pki['certificate']}" in str(err)
    assert "BadCertificateUntrusted" in str(err)
    timeout = translate_error(asyncio.TimeoutError(), options)
    assert f"check that server_certificate {pki['server_certificate']}" in str(timeout)


def test_network_error_message() -> None:
    options = OpcUaOptions.model_validate(plain())
    err = translate_error(ConnectionRefusedError(111, "Connection refused"), options)
    assert str(err) == f"cannot reach OPC UA server {ENDPOINT}: Connection refused"


# ---------------------------------------------------------------- read-only
FORBIDDEN = {"write_value", "write_values", "write_attribute", "write", "set_value",
             "call_method", "call", "add_nodes", "delete_nodes", "add_references",
             "delete_references", "history_update", "register_nodes"}


def test_driver_code_never_writes_or_calls_on_the_device() -> None:
    package = Path(drivers.opcua.__file__).parent
    used = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                used.add((source.name, node.func.attr))
    offenders = sorted((f, name) for f, name in used if name in FORBIDDEN)
    assert offenders == []
    assert ("subscription.py", "create_monitored_items") in used  # the scan does see calls
