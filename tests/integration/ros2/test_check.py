"""`medgw check` preflight of a ROS 2 device: DDS discovery only, clear answer when silent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from drivers.ros2 import Ros2Driver, Ros2Options
from gateway.driver import DriverContext
from gateway.errors import DeviceError
from simulators.surgical_robot.sim import RobotSimulator

pytestmark = pytest.mark.integration


def test_check_counts_selected_topics(ctx: DriverContext, domain_id: int,
                                      make_sim: Callable[..., RobotSimulator]) -> None:
    make_sim(arms=["PSM1"], topics=["measured_js", "measured_cp"], events=False)
    driver = Ros2Driver(ctx, Ros2Options(domain_id=domain_id, patterns=["/PSM1/measured_*"],
                                         transport="cyclonedds"))
    detail = asyncio.run(driver.check(listen_s=2.0))
    head, *lines = detail.splitlines()
    assert head.startswith(f"cyclonedds on ROS domain {domain_id}: 2 selected topics published")
    assert len(lines) == 2
    assert all("matched" in line and "Eclipse Cyclone DDS (1.16)" in line for line in lines)


def test_check_says_when_nothing_is_published(ctx: DriverContext, domain_id: int) -> None:
    driver = Ros2Driver(ctx, Ros2Options(domain_id=domain_id, patterns=["/PSM1/*"],
                                         transport="cyclonedds"))
    with pytest.raises(DeviceError, match="no publisher of a selected topic"):
        asyncio.run(driver.check(listen_s=1.0))
