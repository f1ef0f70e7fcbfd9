"""A real ROS 2 node on Fast DDS (rclpy, rmw_fastrtps_cpp) -> the cyclonedds transport.

The publisher is a child process using rclpy's own message types, so nothing of the
driver's encoding is involved. ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a test-unique
ROS_DOMAIN_ID keep it on this machine; the driver's Cyclone participant is pinned to
loopback with unicast discovery as everywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.ros2 import dds
from gateway.driver import DriverContext
from gateway.errors import DeviceError
from gateway.model import Quality

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
import fastdds_publisher as fdp  # noqa: E402  (the child's script: its expected values)

PREFIX = "/FD"
N, RATE = 60, 100.0


class Child:
    """The Fast DDS publisher process; stdin closed -> it exits."""

    def __init__(self, domain_id: int, wait_s: float) -> None:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
                   ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fastdds_publisher.py"), PREFIX, str(N), str(RATE),
             str(wait_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def wait_line(self, word: str, timeout_s: float = 60.0) -> None:
        """Read the child's stdout until ``word`` (bounded by the child's own wait)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == word:
                return
        pytest.fail(f"publisher exited ({self.proc.wait(timeout_s)}) before {word}")

    def close(self) -> None:
        """Close stdin and reap the child."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def fastdds(domain_id: int) -> Iterator[Callable[[float], Child]]:
    """Start Fast DDS publishers on the test's domain; each is stopped at teardown."""
    children: list[Child] = []

    def start(wait_s: float) -> Child:
        child = Child(domain_id, wait_s)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def _topic(name: str) -> str:
    return f"{PREFIX}/{name}"


def _check_values(ctx: DriverContext, helpers: Any, name: str, ros_type: str) -> None:
    batch = helpers.ring_for(ctx, _topic(name)).snapshot()
    good = batch.quality != Quality.STALE
    want = np.array([fdp.expected(ros_type, i) for i in range(N)])
    assert np.array_equal(batch.values[good], want), name
    if fdp.TOPICS[name].rsplit("/", 1)[-1] in ("JointState", "TransformStamped",
                                                "PoseStamped", "TwistStamped", "WrenchStamped"):
        assert batch.timestamps_ns[good].tolist() == [fdp.stamp_ns(i) for i in range(N)], name


def test_fastdds_every_mapped_type_matches_by_default(
        fastdds: Callable[[float], Child], start_driver: Any, ctx: DriverContext,
        domain_id: int, helpers: Any) -> None:
    driver = start_driver(domain_id=domain_id, patterns=[f"{PREFIX}/*", f"{PREFIX}/*/*"],
                          qos=dds.QosOptions(depth=1000), default_rate_hz=RATE)
    child = fastdds(30.0)
    child.wait_line("READY")
    child.wait_line("DONE")
    helpers.wait_for(lambda: all(helpers.data_count(ctx, _topic(t)) == N for t in fdp.TOPICS),
                     30, "every Fast DDS topic to deliver all messages")
    assert {t: helpers.data_count(ctx, _topic(t)) for t in fdp.TOPICS} == dict.fromkeys(
        fdp.TOPICS, N)
    for name, ros_type in fdp.TOPICS.items():
        if not ros_type.endswith("String"):
            _check_values(ctx, helpers, name, ros_type)
    js = helpers.ring_for(ctx, _topic("measured_js")).snapshot()
    assert js.stream.fields[:3] == ("outer_yaw.position", "outer_yaw.velocity",
                                    "outer_yaw.effort")
    assert set(helpers.ring_for(ctx, _topic("error")).snapshot().text) == {
        f"fault {i}" for i in range(N)}
    vendors = {p.vendor for p in driver.transport.publications() if p.topic.startswith(PREFIX)}
    assert vendors == {"eProsima Fast DDS (1.15)"}
    helpers.wait_for(lambda: ctx.state.last_error is None, 5, "no device error")
    m = ctx.metrics
    assert all(m.unmatched_publications.labels(ctx.device, _topic(t))._value.get() == 0
               for t in fdp.TOPICS)
    assert all(m.middleware_lost.labels(ctx.device, _topic(t), kind)._value.get() == 0
               for t in fdp.TOPICS for kind in ("lost", "stamp_gap", "reader_history_full"))


def test_fastdds_type_information_rejected_is_a_warning_metric_and_degraded(
        fastdds: Callable[[float], Child], start_driver: Any, ctx: DriverContext,
        domain_id: int, helpers: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Without the compatibility setting Cyclone 11 never matches Fast DDS's JointState
    writer (the failure of issue 12): it must be loud, and every other topic flows."""
    caplog.set_level(logging.WARNING, logger="test.ros2")
    start_driver(domain_id=domain_id, patterns=[f"{PREFIX}/*", f"{PREFIX}/*/*"],
                 qos=dds.QosOptions(depth=1000), default_rate_hz=RATE, unmatched_after_s=1.0,
                 network=dds.NetworkOptions(ignore_type_information=[]))
    child = fastdds(5.0)
    child.wait_line("READY")
    child.wait_line("DONE")
    js, metric = _topic("measured_js"), ctx.metrics.unmatched_publications
    helpers.wait_for(lambda: metric.labels(ctx.device, js)._value.get() == 1, 15,
                     "the unmatched JointState publication in the metric")
    assert helpers.data_count(ctx, js) == 0
    helpers.wait_for(lambda: helpers.data_count(ctx, _topic("measured_cp")) == N, 30,
                     "TransformStamped to flow regardless")
    error = ctx.state.last_error or ""
    assert js in error and "eProsima Fast DDS (1.15)" in error
    warnings = [r.getMessage() for r in caplog.records if "did not match a reader" in
                r.getMessage()]
    assert len(warnings) == 1, warnings
    assert js in warnings[0] and "sensor_msgs/msg/JointState" in warnings[0]
    assert "likely reason: type" in warnings[0]


def _check(ctx: DriverContext, domain_id: int, **options: Any) -> str:
    from drivers.ros2 import Ros2Driver, Ros2Options, TopicOptions

    explicit = [TopicOptions(name=f"{PREFIX}/absent", type="geometry_msgs/msg/Pose")]
    driver = Ros2Driver(ctx, Ros2Options(domain_id=domain_id, transport="cyclonedds",
                                         patterns=[f"{PREFIX}/*"], topics=explicit, **options))
    return asyncio.run(driver.check(listen_s=4.0))


def test_check_lists_every_wanted_topic(fastdds: Callable[[float], Child], ctx: DriverContext,
                                        domain_id: int) -> None:
    fastdds(30.0)
    head, *lines = _check(ctx, domain_id).splitlines()
    assert head.startswith(f"cyclonedds on ROS domain {domain_id}: {len(fdp.TOPICS)} selected "
                           f"topics published, {len(fdp.TOPICS) + 1} wanted")
    by_topic = {line.split()[0].rstrip(":"): line for line in lines}
    assert set(by_topic) == {_topic(t) for t in fdp.TOPICS} | {f"{PREFIX}/absent"}
    assert "not discovered" in by_topic[f"{PREFIX}/absent"]
    js = by_topic[_topic("measured_js")]
    assert "[sensor_msgs/msg/JointState] 1 publisher(s) (eProsima Fast DDS (1.15)): matched" in js
    assert all(": matched, " in by_topic[_topic(t)] and " Hz" in by_topic[_topic(t)]
               for t in fdp.TOPICS)


def test_check_fails_naming_the_unmatched_publication(
        fastdds: Callable[[float], Child], ctx: DriverContext, domain_id: int) -> None:
    fastdds(30.0)
    with pytest.raises(DeviceError, match="1 problem") as err:
        _check(ctx, domain_id, network=dds.NetworkOptions(ignore_type_information=[]))
    js = next(line for line in str(err.value).splitlines() if _topic("measured_js") in line)
    assert "eProsima Fast DDS (1.15)" in js and "UNMATCHED 1 of 1 (type:" in js
    cp = next(line for line in str(err.value).splitlines()
              if line.split()[0] == _topic("measured_cp"))
    assert ": matched, " in cp
