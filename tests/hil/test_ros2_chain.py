"""HIL: robot simulator -> DDS -> ros2 driver -> ring -> MQTT -> ingest -> InfluxDB, exact."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.ros2 import dds
from gateway.model import Quality
from gateway.ops.services import MosquittoService
from gateway.ring import StreamRing
from simulators.surgical_robot import RobotSimulator, SimConfig, arms
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, unique_domain_id, wait_until

pytestmark = [pytest.mark.hil, pytest.mark.integration]

N = 400
RATE = 200.0
TOPICS = ["measured_js", "measured_cp", "body/measured_cf"]


@pytest.mark.parametrize("sim_transport", ["cyclonedds", "rclpy"])
@pytest.mark.parametrize("driver_transport", ["cyclonedds", "rclpy"])
def test_robot_to_influxdb_exact(mosquitto: MosquittoService, influxdb: InfluxTarget,
                                 sim_transport: str, driver_transport: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """{simulator on Cyclone, on rclpy/Fast DDS} x {driver transport cyclonedds, rclpy}."""
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # rclpy: never off-box
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    device = {"name": "davinci", "driver": "ros2", "options": {
        "domain_id": domain, "patterns": ["/PSM1/*", "/ECM/*"], "default_rate_hz": RATE,
        "stale_periods": 20, "transport": driver_transport, "qos": {"depth": 1000}}}
    loaded = chain_config(mosquitto, influxdb, [device])
    # a Cyclone 11 writer rejects Fast DDS's type objects for JointState as our reader does:
    # the simulator's Cyclone gets the same compatibility setting (dds.loopback_config)
    network: dict[str, Any] = (
        {"network": {"config_xml": dds.loopback_config()}} if sim_transport == "cyclonedds"
        else {})
    sim = RobotSimulator(SimConfig.model_validate(dict(
        arms=["PSM1", "ECM"], rate_hz=RATE, domain_id=domain, topics=TOPICS, max_samples=N,
        transport=sim_transport, qos={"depth": 2000}, **network))).open()
    # rclpy needs a type's Python package: crtk_msgs/OperatingState from the Cyclone
    # simulator is refused (quarantined, named in the device error) on the rclpy transport
    crtk_unreadable = driver_transport == "rclpy" and sim_transport == "cyclonedds"
    readable = [t for t in sim.topics()
                if not (crtk_unreadable and t.endswith("/operating_state"))]
    try:
        with Chain(loaded) as chain:
            assert sim.wait_for_subscribers(20.0, topics=readable), \
                "the gateway did not subscribe every topic"
            sim.start()
            store = chain.gateway.store

            def ring(topic: str) -> StreamRing:
                return store.ring(f"test-site/davinci/{topic.strip('/').replace('/', '.')}")

            def data_samples(topic: str) -> int:
                try:
                    batch = ring(topic).snapshot()
                except KeyError:
                    return 0
                return 0 if batch is None else int((batch.quality != Quality.STALE).sum())

            wait_until(lambda: all(data_samples(t) == N for t in sim.sampled_topics()), 30,
                       message="every sampled topic in the rings")
            sim.fault("PSM1", "instrument not recognized")
            def states() -> tuple[str, ...]:
                batch = ring("/PSM1/operating_state").snapshot()
                return () if batch is None or batch.text is None else batch.text

            if crtk_unreadable:
                ctx = chain.gateway.devices[0].ctx
                wait_until(lambda: "/PSM1/operating_state quarantined" in (
                    ctx.state.last_error or ""), 10, message="the refused topic named")
                assert "no type support for crtk_msgs/msg/OperatingState" in (
                    ctx.state.last_error or "")
            else:
                wait_until(lambda: "FAULT" in states(), 10, message="the FAULT event in the ring")
            # the sources went silent: each sampled topic ends with its STALE marker

            def ends_stale(topic: str) -> bool:
                batch = ring(topic).snapshot()
                return batch is not None and int(batch.quality[-1]) == Quality.STALE

            wait_until(lambda: all(ends_stale(t) for t in sim.sampled_topics()), 10,
                       message="stale markers after the simulator stopped")
            chain.stop()
        assert chain.all_acked
        assert chain.acked() == chain.produced()
    finally:
        sim.stop()

    psm1_js = "\"stream\"='PSM1.measured_js' AND \"device\"='davinci'"
    for joint in arms.PSM_JOINTS:  # one point per joint per sample (channel_tag=joint)
        where = f"{psm1_js} AND \"joint\"='{joint}'"
        assert influxdb.count("joint_state", where=where + " AND \"quality\"=0") == N
        # one marker when the simulator stopped (more only if the box stalled the stream)
        assert influxdb.count("joint_state", where=where + " AND \"quality\"=3") >= 1
        last = influxdb.query(f"SELECT quality FROM joint_state WHERE {where} "
                              "ORDER BY time DESC LIMIT 1")
        assert last[0]["quality"] == Quality.STALE
    for stream, measurement in (("PSM1.measured_cp", "pose"), ("ECM.measured_cp", "pose"),
                                ("PSM1.body.measured_cf", "wrench"),
                                ("ECM.measured_js", "joint_state")):
        where = f"\"stream\"='{stream}' AND \"quality\"=0"
        if measurement == "joint_state":
            where += " AND \"joint\"='outer_yaw'"
        assert influxdb.count(measurement, where=where) == N, stream

    # values and timestamps, recomputed from the simulator's motion model
    rows = influxdb.query("SELECT x, y, z, qw FROM pose WHERE \"stream\"='PSM1.measured_cp' "
                          "AND \"quality\"=0 ORDER BY time")
    assert len(rows) == N
    t = np.arange(N) / RATE
    psm = arms.arm_model("PSM1", 0)
    expected = arms.forward_kinematics(psm, arms.joint_positions(psm, t))
    got = np.array([[r["x"], r["y"], r["z"], r["qw"]] for r in rows])
    assert np.allclose(got, expected[:, [0, 1, 2, 6]], rtol=0, atol=1e-9)

    events = influxdb.query("SELECT * FROM robot_event "
                            "WHERE \"stream\"='PSM1.operating_state' ORDER BY time")
    if crtk_unreadable:
        assert events == []
    elif sim_transport == "cyclonedds":
        assert [r["text"] for r in events][-1] == "FAULT"
        assert events[-1]["state"] == 3.0  # crtk_msgs/OperatingState: the CRTK code
    else:  # crtk_msgs has no Python package: the rclpy simulator sends std_msgs/String
        assert [r["text"] for r in events][-1] == "FAULT"
        assert events[-1]["severity"] == 0.0
    errors = influxdb.query("SELECT severity, text FROM robot_event "
                            "WHERE \"stream\"='PSM1.error'")
    assert [(r["severity"], r["text"]) for r in errors] == [
        (2.0, "PSM1: instrument not recognized")]
    health = influxdb.query("SELECT stale, text FROM robot_event "
                            "WHERE \"stream\"='topic-health' AND \"device\"='davinci'")
    stale_topics = {r["text"].split(" ")[0] for r in health if r["stale"] == 1.0}
    assert stale_topics == set(sim.sampled_topics())
