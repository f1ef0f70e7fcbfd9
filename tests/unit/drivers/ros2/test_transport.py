"""The transport option and factory: auto picks rclpy when it imports, rclpy asked for
explicitly without rclpy is a DeviceError naming the install command."""

from __future__ import annotations

import logging

import pytest

from drivers.ros2 import Ros2Options, transport
from gateway.errors import DeviceError

LOG = logging.getLogger("test.ros2.transport")


def _options(name: str) -> Ros2Options:
    return Ros2Options(transport=name, patterns=["/PSM*/*"])  # type: ignore[arg-type]


def test_default_transport_is_auto() -> None:
    assert Ros2Options(patterns=["/x"]).transport == "auto"


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="transport"):
        _options("zenoh")


def test_explicit_rclpy_without_rclpy_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "rclpy_available", lambda: False)
    with pytest.raises(DeviceError, match=r"pip install 'medgw\[ros\]'"):
        transport.make_transport(_options("rclpy"), LOG)


def test_cyclonedds_refuses_an_rclpy_node() -> None:
    with pytest.raises(DeviceError, match="cannot read through an rclpy node"):
        transport.make_transport(_options("cyclonedds"), LOG, node=object())


def test_auto_falls_back_to_cyclonedds_when_the_rclpy_transport_cannot_load(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AMENT_PREFIX_PATH", "/opt/ros/kilted")  # auto would pick rclpy
    monkeypatch.setattr(transport, "rclpy_available", lambda: True)
    monkeypatch.setitem(transport._FACTORIES, "rclpy", ("drivers.ros2.no_such_module", "X"))
    made = transport.make_transport(_options("auto"), LOG)
    assert made.name == "cyclonedds"
    assert "using cyclonedds" in caplog.text
    with pytest.raises(DeviceError, match=r"cannot load drivers\.ros2\.no_such_module"):
        transport.make_transport(_options("rclpy"), LOG)
