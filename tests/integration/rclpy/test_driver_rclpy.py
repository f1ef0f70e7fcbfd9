"""Real ROS 2 nodes -> the ros2 driver with ``transport: rclpy`` -> rings, exact counts.

Publishers: rclpy nodes on Fast DDS in child processes (rclpy's own message types: every
mapped type with a Python package, and a two-arm robot), and a Cyclone DDS writer of
crtk_msgs/msg/OperatingState, a type with no Python package, which the rclpy transport
must refuse for that topic alone, naming the fix, while the others flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from drivers.ros2 import Ros2Driver, Ros2Options, dds, msgs, rclpy_transport
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import Quality
from gateway.ring import RingStore
from tests.helpers import wait_until
from tests.integration.rclpy.support import data_count, ring_snapshot

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FASTDDS = ROOT / "tests" / "integration" / "ros2" / "fastdds_publisher.py"
SITE, DEVICE = "test-site", "robot-1"
LOG = logging.getLogger("test.rclpy.driver")


def _fastdds_module() -> Any:
    """Import the ros2 tests' every-type Fast DDS publisher (its expected values)."""
    sys.path.insert(0, str(FASTDDS.parent))
    try:
        import fastdds_publisher
    finally:
        sys.path.remove(str(FASTDDS.parent))
    return fastdds_publisher


fdp = _fastdds_module()


@pytest.fixture
def ctx() -> DriverContext:
    """Return a DriverContext over a fresh RingStore."""
    return DriverContext(SITE, DEVICE, RingStore(8192), GatewayMetrics(), LOG,
                         ring_capacity=8192)


@pytest.fixture
def start_driver(ctx: DriverContext) -> Iterator[Callable[..., Ros2Driver]]:
    """Run Ros2Driver(transport rclpy).run() in an event loop thread; cancelled at teardown."""
    running: list[tuple[asyncio.AbstractEventLoop, threading.Thread, list[Any]]] = []

    def start(**options: Any) -> Ros2Driver:
        options.setdefault("transport", "rclpy")
        driver = Ros2Driver(ctx, Ros2Options(**options))
        loop = asyncio.new_event_loop()
        holder: list[Any] = []

        def main() -> None:
            task = loop.create_task(driver.run())
            holder.append(task)
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()
        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        running.append((loop, thread, holder))
        return driver

    yield start
    for loop, thread, holder in running:
        if holder and not loop.is_closed():
            loop.call_soon_threadsafe(holder[0].cancel)
        thread.join(timeout=15)
        assert not thread.is_alive(), "driver did not stop"


def test_every_mapped_type_from_fast_dds_through_rclpy(domain_id: int, start_driver: Any,
                                                        ctx: DriverContext) -> None:
    prefix, n = "/FD", 60
    driver = start_driver(domain_id=domain_id, patterns=[f"{prefix}/*", f"{prefix}/*/*"],
                          qos=dds.QosOptions(depth=1000), default_rate_hz=100.0)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, str(FASTDDS), prefix, str(n), "100", "30"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert [child.stdout.readline().strip() for _ in range(2)] == ["READY", "DONE"]
        topics = {f"{prefix}/{name}": ros_type for name, ros_type in fdp.TOPICS.items()}
        wait_until(lambda: all(data_count(ctx, t) == n for t in topics), 30,
                   message="every Fast DDS topic to deliver all messages through rclpy")
        for topic, ros_type in topics.items():
            batch = ring_snapshot(ctx, topic)
            good = batch.quality != Quality.STALE
            if ros_type.endswith("String"):
                assert set(batch.text) == {f"fault {i}" for i in range(n)}
                continue
            want = np.array([fdp.expected(ros_type, i) for i in range(n)])
            assert np.array_equal(batch.values[good], want), topic
            if "Stamped" in ros_type or ros_type.endswith("JointState"):
                assert batch.timestamps_ns[good].tolist() == [fdp.stamp_ns(i) for i in range(n)]
        assert driver.transport.name == "rclpy"
        assert {p.vendor for p in driver.transport.publications()} == {"eProsima Fast DDS (1.15)"}
        wait_until(lambda: ctx.state.last_error is None and ctx.state.connected, 5,
                   message="the device connected without error")
        m = ctx.metrics
        assert all(m.unmatched_publications.labels(DEVICE, t)._value.get() == 0 for t in topics)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=20)


@pytest.mark.parametrize("executor", ["events", "single"])
def test_two_arm_robot_exact_counts(domain_id: int, start_publisher: Any, start_driver: Any,
                                    ctx: DriverContext, executor: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rclpy_transport.EXECUTOR_ENV, executor)
    n, rate = 400, 400.0
    driver = start_driver(domain_id=domain_id, patterns=["/PSM1/*", "/PSM2/*"],
                          default_rate_hz=rate, qos=dds.QosOptions(depth=1000))
    result = start_publisher("--arms", "PSM1,PSM2", "--rate", str(rate), "--count",
                             str(n)).result(90)
    assert result["acked"] is True
    published = result["published"]
    assert published == {f"/{arm}/{t}": (n // 10 if t == "error" else n)
                         for arm in ("PSM1", "PSM2") for t in ("measured_js", "measured_cp",
                                                               "error")}
    wait_until(lambda: {t: data_count(ctx, t) for t in published} == published, 30,
               message=f"exactly {published}")
    stamps = [result["start_ns"] + i * result["period_ns"] for i in range(n)]
    for arm in ("PSM1", "PSM2"):
        js = ring_snapshot(ctx, f"/{arm}/measured_js")
        good = js.quality != Quality.STALE
        assert js.timestamps_ns[good].tolist() == stamps
        assert np.array_equal(js.values[good][:, 0], np.arange(n, dtype=np.float64))
    assert driver.transport.executor_kind == (
        "EventsExecutor" if executor == "events" else "SingleThreadedExecutor")
    m = ctx.metrics
    lost = [m.middleware_lost.labels(DEVICE, t, "lost")._value.get() for t in published]
    assert lost == [0.0] * len(published)


def test_type_without_python_package_is_quarantined_alone(domain_id: int,
                                                          start_publisher: Any,
                                                          start_driver: Any,
                                                          ctx: DriverContext) -> None:
    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.ROS_DEFAULT_QOS)
    state_type = msgs.idl_type("crtk_msgs/msg/OperatingState")
    topic = Topic(participant, msgs.dds_topic_name("/PSM1/operating_state"), state_type, qos=qos)
    writer = DataWriter(participant, topic, qos=qos)
    try:
        driver = start_driver(domain_id=domain_id, patterns=["/PSM1/*"],
                              qos=dds.QosOptions(depth=1000))
        wait_until(lambda: "/PSM1/operating_state" in driver.router.quarantined, 20,
                   message="the crtk_msgs topic to be refused")
        why = driver.router.quarantined["/PSM1/operating_state"]
        assert "reader_refused" in why and "crtk_msgs" in why
        assert "transport: cyclonedds" in why
        n = 50
        result = start_publisher("--arms", "PSM1", "--rate", "100", "--count", str(n)).result(60)
        assert result["published"]["/PSM1/measured_js"] == n
        wait_until(lambda: data_count(ctx, "/PSM1/measured_js") == n, 20,
                   message="the other topics to flow")
        assert data_count(ctx, "/PSM1/operating_state") == 0
        assert ctx.state.last_error is not None and "/PSM1/operating_state" in (
            ctx.state.last_error)
    finally:
        dds.delete_entities(writer, topic, participant)
