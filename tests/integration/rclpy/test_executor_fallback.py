"""The rclpy transport's executor works where stderr has no file descriptor (CliRunner, pytest)."""

from __future__ import annotations

import io
import os
import sys

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from drivers.ros2.rclpy_support import make_executor

pytestmark = pytest.mark.integration


def test_executor_falls_back_when_stderr_has_no_fileno(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("MEDGW_RCLPY_EXECUTOR", raising=False)
    context = Context()
    rclpy.init(context=context, domain_id=100 + os.getpid() % 100)
    try:
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # no fileno(): EventsExecutor refuses
        executor = make_executor(context)
        monkeypatch.undo()
        assert isinstance(executor, SingleThreadedExecutor)
        executor.shutdown()
    finally:
        rclpy.shutdown(context=context)
