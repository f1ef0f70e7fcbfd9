"""The matrix: {simulator on Cyclone DDS, on rclpy/Fast DDS} x {driver transport cyclonedds,
rclpy}, exact counts per topic and values recomputed from the simulator's motion model.
(Sampled topics: crtk_msgs/OperatingState has no Python package for rclpy; the events are
covered on Cyclone DDS in test_driver_dds.)

rclpy participants are kept on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on
the test's own ROS_DOMAIN_ID; Cyclone participants are pinned to loopback as everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.ros2 import dds
from gateway.driver import DriverContext
from gateway.model import Quality
from simulators.surgical_robot import arms

pytestmark = pytest.mark.integration
N, RATE = 120, 200.0


@pytest.mark.parametrize("sim_transport", ["cyclonedds", "rclpy"])
@pytest.mark.parametrize("driver_transport", ["cyclonedds", "rclpy"])
def test_simulator_to_rings_exact(make_sim: Any, start_driver: Any, ctx: DriverContext,
                                  domain_id: int, helpers: Any, sim_transport: str,
                                  driver_transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    extra: dict[str, Any] = {}
    if sim_transport == "cyclonedds":
        # a Cyclone 11 writer needs the same compatibility setting as our reader to match a
        # Fast DDS reader of JointState: it too rejects Fast DDS's type objects
        extra["network"] = {"config_xml": dds.loopback_config()}
    sim = make_sim(arms=["PSM1", "ECM"], rate_hz=RATE, max_samples=N, transport=sim_transport,
                   topics=["measured_js", "measured_cp", "body/measured_cf"], events=False,
                   **extra)
    driver = start_driver(domain_id=domain_id, patterns=["/PSM1/*", "/ECM/*"],
                          default_rate_hz=RATE, transport=driver_transport,
                          qos=dds.QosOptions(depth=1000))
    assert driver.transport.name == driver_transport
    assert sim.wait_for_subscribers(20.0), "driver did not subscribe to every topic"
    sim.start()
    sampled = sim.sampled_topics()
    helpers.wait_for(lambda: all(helpers.data_count(ctx, t) == N for t in sampled), 30,
                     "every sampled topic to deliver all samples")
    assert {t: helpers.data_count(ctx, t) for t in sampled} == dict.fromkeys(sampled, N)
    assert all(sim.published(t) == N for t in sampled)
    stamps = (sim.start_ns() + np.arange(N, dtype=np.int64) * sim.period_ns).tolist()
    for topic in sampled:
        batch = helpers.ring_for(ctx, topic).snapshot()
        assert batch.timestamps_ns[batch.quality != Quality.STALE].tolist() == stamps, topic
    t = np.arange(N, dtype=np.int64) / RATE
    psm = arms.arm_model("PSM1", 0)
    js = helpers.ring_for(ctx, "/PSM1/measured_js").snapshot()
    position = js.values[js.quality != Quality.STALE][:, 0::3]
    assert np.allclose(position, arms.joint_positions(psm, t), rtol=0, atol=1e-12)
    ecm = arms.arm_model("ECM", 1)
    cp = helpers.ring_for(ctx, "/ECM/measured_cp").snapshot()
    assert np.allclose(cp.values[cp.quality != Quality.STALE],
                       arms.forward_kinematics(ecm, arms.joint_positions(ecm, t)),
                       rtol=0, atol=1e-12)
    helpers.wait_for(lambda: ctx.state.connected and ctx.state.last_error is None, 5,
                     "a connected device without errors")
    lost = ctx.metrics.middleware_lost
    assert [lost.labels(ctx.device, t, "stamp_gap")._value.get() for t in sampled] == [
        0.0] * len(sampled)  # exact delivery: no gap estimated
