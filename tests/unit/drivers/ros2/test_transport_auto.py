"""`transport: auto`: rclpy only in a sourced ROS 2 environment, else cyclonedds."""

from __future__ import annotations

import pytest

from drivers.ros2 import transport
from gateway.errors import DeviceError


def test_auto_is_cyclonedds_outside_a_sourced_ros_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(transport, "rclpy_available", lambda: True)  # wheels installed
    assert transport.resolve_transport("auto") == "cyclonedds"


def test_auto_is_rclpy_in_a_sourced_ros_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENT_PREFIX_PATH", "/opt/ros/kilted")
    monkeypatch.setattr(transport, "rclpy_available", lambda: True)
    assert transport.resolve_transport("auto") == "rclpy"
    monkeypatch.setattr(transport, "rclpy_available", lambda: False)
    assert transport.resolve_transport("auto") == "cyclonedds"


def test_explicit_transports_are_kept_and_unknown_ones_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert transport.resolve_transport("rclpy") == "rclpy"
    with pytest.raises(DeviceError, match="unknown transport"):
        transport.resolve_transport("zenoh")
