"""The simulator as a real rclpy node (system RMW: Fast DDS from the wheels), read by rclpy.

The subscriber is a plain rclpy node with rclpy's own message types, no medgw code: what
it receives is counted exactly and its values checked against the motion model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulators.surgical_robot import QosOptions, RobotSimulator, SimConfig, arms

rclpy = pytest.importorskip("rclpy", reason="the rclpy mode needs ROS 2's Python wheels")
from geometry_msgs.msg import TransformStamped, TwistStamped, WrenchStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from tests.helpers import unique_domain_id  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[4]
TYPES = {"measured_js": JointState, "jaw/measured_js": JointState,
         "measured_cp": TransformStamped, "measured_cv": TwistStamped,
         "body/measured_cf": WrenchStamped}
RATE, N = 200.0, 120


class Listener:
    """An rclpy node in its own Context that records every message per topic."""

    def __init__(self, domain_id: int, topics: dict[str, Any]) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("listener", context=self.context)
        self.got: dict[str, list[Any]] = defaultdict(list)
        profile = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
        for topic, kind in topics.items():
            self.node.create_subscription(kind, topic, self._record(topic), profile)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _record(self, topic: str) -> Callable[[Any], None]:
        return lambda message: self.got[topic].append(message)

    def spin_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Spin (bounded in time) until ``done()``; return whether it became true."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def local_only(monkeypatch: pytest.MonkeyPatch) -> int:
    """Keep ROS 2 discovery on this machine; return a fresh domain id."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return unique_domain_id()


@pytest.fixture
def listener(local_only: int) -> Iterator[Callable[[dict[str, Any]], Listener]]:
    """Build listeners on the test's domain; closed at teardown."""
    made: list[Listener] = []

    def make(topics: dict[str, Any]) -> Listener:
        made.append(Listener(local_only, topics))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _stamp(message: Any) -> int:
    return int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)


def test_rclpy_node_delivers_exact_counts_and_values(local_only: int, listener: Any) -> None:
    sim = RobotSimulator(SimConfig(transport="rclpy", arms=["PSM1"], rate_hz=RATE,
                                   domain_id=local_only, topics=list(TYPES), max_samples=N,
                                   qos=QosOptions(depth=5000))).open()
    try:
        topics = {t: TYPES.get(t.split("/", 2)[2], String) for t in sim.topics()}
        ears = listener(topics)
        assert sim.wait_for_subscribers(30.0), "the rclpy listener never matched"
        sim.start()
        sampled = sim.sampled_topics()
        assert ears.spin_until(lambda: all(len(ears.got[t]) >= N for t in sampled) and
                               ears.got["/PSM1/operating_state"], 30.0), dict(ears.got)
        sim.fault("PSM1", "instrument not recognized")
        assert ears.spin_until(lambda: len(ears.got["/PSM1/error"]) == 1 and any(
            m.data == "FAULT" for m in ears.got["/PSM1/operating_state"]), 10.0)
        ears.spin_until(lambda: False, 0.3)  # nothing more may arrive
    finally:
        sim.stop()
    for topic in sim.topics():
        assert len(ears.got[topic]) == sim.published(topic), topic
    assert all(len(ears.got[t]) == N for t in sampled)
    states = [m.data for m in ears.got["/PSM1/operating_state"]]
    assert states == [text for topic, text in sim.events if topic == "/PSM1/operating_state"]
    assert states[0] == "ENABLED" and states[-1] == "FAULT"
    assert ears.got["/PSM1/error"][0].data == "PSM1: instrument not recognized"
    js = ears.got["/PSM1/measured_js"]
    assert [_stamp(m) for m in js] == [sim.start_ns() + k * sim.period_ns for k in range(N)]
    assert list(js[0].name) == list(arms.PSM_JOINTS)
    model, t = arms.arm_model("PSM1", 0), np.arange(N) / RATE
    np.testing.assert_allclose([list(m.position) for m in js], arms.joint_positions(model, t),
                               rtol=1e-12, atol=1e-15)
    cp = ears.got["/PSM1/measured_cp"][-1]
    assert (cp.header.frame_id, cp.child_frame_id) == ("PSM1_base", "PSM1")


def test_rclpy_node_restart_and_stall(local_only: int, listener: Any) -> None:
    """restart_publisher destroys the node and its Context and makes new ones; stall stops."""
    sim = RobotSimulator(SimConfig(transport="rclpy", arms=["PSM3"], rate_hz=RATE,
                                   domain_id=local_only, topics=["measured_js", "measured_cv"],
                                   events=False, qos=QosOptions(depth=5000))).open()
    js, cv = "/PSM3/measured_js", "/PSM3/measured_cv"
    ears = listener({js: JointState, cv: TwistStamped})
    try:
        assert sim.wait_for_subscribers(30.0), "the rclpy listener never matched"
        sim.start()
        assert ears.spin_until(lambda: len(ears.got[js]) >= 20, 30.0)
        sim.restart_publisher(down_s=0.2)
        assert sim.restarts == 1 and sim.wait_for_subscribers(30.0)
        before = len(ears.got[js])
        assert ears.spin_until(lambda: len(ears.got[js]) >= before + 20, 30.0), \
            "nothing arrived from the restarted node"
        assert sim.stall(cv) == [cv]
        written = sim.published(cv)
        grow = len(ears.got[js])
        assert ears.spin_until(lambda: len(ears.got[js]) >= grow + 20, 30.0)
    finally:
        sim.stop()
    assert sim.published(cv) == written  # nothing written while stalled
    assert len(ears.got[cv]) <= written and len(ears.got[js]) <= sim.published(js)


def test_cyclone_simulator_reaches_a_fast_dds_subscriber(local_only: int,
                                                         listener: Any) -> None:
    """The default (Cyclone) simulator matches rclpy's Fast DDS readers by type name."""
    n, topics = 60, {"/PSM2/measured_js": JointState, "/PSM2/measured_cp": TransformStamped,
                     "/PSM2/status": String}
    ears = listener(topics)
    sim = RobotSimulator(SimConfig(arms=["PSM2"], rate_hz=RATE, domain_id=local_only,
                                   topics=["measured_js", "measured_cp"], max_samples=n,
                                   qos=QosOptions(depth=5000))).open()
    try:
        assert sim.wait_for_subscribers(30.0, topics=list(topics)), "Fast DDS never matched"
        sim.start()
        sampled = sim.sampled_topics()
        ears.spin_until(lambda: all(len(ears.got[t]) >= n for t in sampled) and
                        len(ears.got["/PSM2/status"]) >= 1, 30.0)
        ears.spin_until(lambda: False, 0.3)  # nothing more may arrive
    finally:
        sim.stop()
    assert {t: len(ears.got[t]) for t in topics} == {t: sim.published(t) for t in topics}
    assert len(ears.got["/PSM2/measured_js"]) == n
    assert list(ears.got["/PSM2/measured_js"][0].name) == list(arms.PSM_JOINTS)


def test_cli_transport_rclpy(local_only: int, listener: Any) -> None:
    """`medgw sim robot --transport rclpy` as its own process, counted by an rclpy node."""
    n, topics = 80, {"/ECM/measured_js": JointState, "/ECM/measured_cv": TwistStamped}
    ears = listener(topics)
    cmd = [sys.executable, "-m", "simulators.surgical_robot.cli", "--transport", "rclpy",
           "--arms", "ECM", "--rate", "200", "--domain", str(local_only), "--count", str(n),
           "--topics", "measured_js,measured_cv", "--no-events", "--wait-subscribers", "30",
           "--history-depth", "5000", "--stats"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ears.spin_until(lambda: all(len(ears.got[t]) >= n for t in topics), 60.0)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["published"] == {t: n for t in topics}
    assert {t: len(ears.got[t]) for t in topics} == {t: n for t in topics}
