"""Simulator -> Cyclone DDS (loopback) -> ros2 driver -> rings, with exact counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from drivers.ros2 import dds, msgs
from drivers.ros2.cdr import CdrWriter
from drivers.ros2.pipeline import HEALTH_STREAM
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind
from simulators.surgical_robot import arms

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
NS = 1_000_000_000


def test_simulator_to_rings_exact(make_sim: Any, start_driver: Any, ctx: DriverContext,
                                  domain_id: int, helpers: Any) -> None:
    n, rate = 150, 200.0
    sim = make_sim(arms=["PSM1", "ECM"], rate_hz=rate, max_samples=n)
    start_driver(domain_id=domain_id, patterns=["/PSM1/*", "/ECM/*"], default_rate_hz=rate)
    assert sim.wait_for_subscribers(15.0), "driver did not subscribe to every topic"
    sim.start()
    sampled = sim.sampled_topics()
    helpers.wait_for(lambda: all(helpers.data_count(ctx, t) == n for t in sampled), 20,
                     "every sampled topic to deliver all samples")
    stamps = sim.start_ns() + np.arange(n, dtype=np.int64) * sim.period_ns
    t = np.arange(n, dtype=np.int64) / rate
    for topic in sampled:
        batch = helpers.ring_for(ctx, topic).snapshot()
        good = batch.quality != Quality.STALE
        assert sim.published(topic) == n
        assert batch.timestamps_ns[good].tolist() == stamps.tolist(), topic
    psm = arms.arm_model("PSM1", 0)
    js = helpers.ring_for(ctx, "/PSM1/measured_js").snapshot()
    assert js.stream.channel_tag == "joint"
    assert js.stream.fields[:3] == ("outer_yaw.position", "outer_yaw.velocity",
                                    "outer_yaw.effort")
    position = js.values[js.quality != Quality.STALE][:, 0::3]  # a loaded box may mark stale
    assert np.allclose(position, arms.joint_positions(psm, t), rtol=0, atol=1e-12)
    assert np.all(position >= psm.lower_arr) and np.all(position <= psm.upper_arr)
    cp = helpers.ring_for(ctx, "/ECM/measured_cp").snapshot()
    ecm = arms.arm_model("ECM", 1)
    assert cp.stream.measurement == "pose"
    assert np.allclose(cp.values[cp.quality != Quality.STALE],
                       arms.forward_kinematics(ecm, arms.joint_positions(ecm, t)),
                       rtol=0, atol=1e-12)
    state = helpers.ring_for(ctx, "/PSM1/operating_state")
    helpers.wait_for(lambda: state.write_seq == sim.published("/PSM1/operating_state"), 5,
                     "operating_state events")
    assert state.stream.kind is StreamKind.EVENT
    assert set(state.snapshot().text) == {"ENABLED"}
    assert ctx.metrics.connected.labels("robot-1")._value.get() == 1


def test_rosbags_bytes_on_the_wire(domain_id: int, start_driver: Any, ctx: DriverContext,
                                   helpers: Any) -> None:
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(msgs.CRTK_OPERATING_STATE_MSG,
                                      "crtk_msgs/msg/OperatingState"))
    T = store.types
    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.ROS_DEFAULT_QOS.model_copy(update={"depth": 1000}))
    topics = {"/arm/measured_js": "sensor_msgs/msg/JointState",
              "/arm/measured_cp": "geometry_msgs/msg/TransformStamped",
              "/arm/operating_state": "crtk_msgs/msg/OperatingState"}
    writers = {}
    for topic, ros_type in topics.items():
        dds_topic = Topic(participant, msgs.dds_topic_name(topic), msgs.idl_type(ros_type),
                          qos=qos)
        writers[topic] = (dds_topic, DataWriter(participant, dds_topic, qos=qos))
    try:
        start_driver(domain_id=domain_id, topics=[
            {"name": topic, "type": ros_type} for topic, ros_type in topics.items()])
        assert dds.wait_until(lambda: all(w.get_matched_subscriptions()
                                          for _, w in writers.values()), 15)

        def header(k: int) -> Any:
            return T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=1_700_000_000 + k, nanosec=k * 1000),
                frame_id="base")

        joint_msgs: list[Any] = [T["sensor_msgs/msg/JointState"](
            header=header(k), name=["j1", "j2"], position=np.array([k, -k], dtype=float),
            velocity=np.array([0.5 * k, 0.25], dtype=float), effort=np.zeros(0))
            for k in range(40)]
        pose_msgs = [T["geometry_msgs/msg/TransformStamped"](
            header=header(k), child_frame_id="tool", transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=k, y=1.0, z=2.0),
                rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
            for k in range(40)]
        state_msgs = [T["crtk_msgs/msg/OperatingState"](header=header(k), state=s,
                                                        is_homed=True, is_busy=False)
                      for k, s in enumerate(["ENABLED", "FAULT"])]

        def put(topic: str, message: Any) -> None:
            payload = bytes(store.serialize_cdr(message, topics[topic]))
            dds.write_raw(writers[topic][1], payload)

        for k in range(40):
            put("/arm/measured_js", joint_msgs[k])
            put("/arm/measured_cp", pose_msgs[k])
            if k == 20:  # valid CDR, invalid ROS: quarantined, the topic goes on
                dds.write_raw(writers["/arm/measured_js"][1], _bad_utf8_joint_state())
                bad = T["sensor_msgs/msg/JointState"](
                    header=header(99), name=["j1", "j2"], position=np.array([1.0]),
                    velocity=np.zeros(0), effort=np.zeros(0))
                put("/arm/measured_js", bad)
                bad_stamp = T["sensor_msgs/msg/JointState"](
                    header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                        sec=5, nanosec=2 * NS), frame_id="base"),
                    name=["j1", "j2"], position=np.array([1.0, 2.0]),
                    velocity=np.array([1.0, 2.0]), effort=np.zeros(0))
                put("/arm/measured_js", bad_stamp)
        for message in state_msgs:
            put("/arm/operating_state", message)
        helpers.wait_for(lambda: helpers.data_count(ctx, "/arm/measured_js") == 40
                         and helpers.data_count(ctx, "/arm/measured_cp") == 40
                         and helpers.data_count(ctx, "/arm/operating_state") == 2, 15,
                         "rosbags-serialized messages")
        js = helpers.ring_for(ctx, "/arm/measured_js").snapshot()
        assert js.stream.fields == ("j1.position", "j1.velocity", "j2.position", "j2.velocity")
        expected = [[m.position[0], m.velocity[0], m.position[1], m.velocity[1]]
                    for m in joint_msgs]
        good = js.quality != Quality.STALE
        assert js.values[good].tolist() == expected
        assert js.timestamps_ns[good].tolist() == [
            m.header.stamp.sec * NS + m.header.stamp.nanosec for m in joint_msgs]
        cp = helpers.ring_for(ctx, "/arm/measured_cp").snapshot()
        assert cp.values[cp.quality != Quality.STALE][:, 0].tolist() == list(range(40))
        states = helpers.ring_for(ctx, "/arm/operating_state").snapshot()
        assert states.text == ("ENABLED", "FAULT")
        reasons = {s.labels["reason"]: s.value for s in next(iter(ctx.metrics.malformed.collect()))
                   .samples if s.name.endswith("_total")}
        assert reasons == {"decode": 1.0, "array_length": 1.0, "bad_stamp": 1.0}
    finally:
        entities = [w for _, w in writers.values()] + [t for t, _ in writers.values()]
        dds.delete_entities(*entities, participant)


def _bad_utf8_joint_state() -> bytes:
    """A JointState that is valid CDR (Cyclone accepts it) but has a non-UTF-8 joint name."""
    w = CdrWriter()
    w.header(1_700_000_000 * NS, "base")
    w.uint32(2)
    w.uint32(3)
    w.buf.extend(b"\xff\xfe\x00")
    w.string("j2")
    w.float64s([1.0, 2.0])
    w.float64s([])
    w.float64s([])
    return w.payload()


def test_stale_detection_and_recovery(make_sim: Any, start_driver: Any, ctx: DriverContext,
                                      domain_id: int, helpers: Any) -> None:
    sim = make_sim(arms=["PSM1"], rate_hz=100.0, topics=["measured_js", "measured_cp"])
    start_driver(domain_id=domain_id, patterns=["/PSM1/*"], default_rate_hz=100.0,
                 stale_periods=20)  # 200 ms: no spurious stale on a loaded box
    assert sim.wait_for_subscribers(15.0)
    sim.start()
    helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM1/measured_js") >= 20, 10, "data")
    assert sim.stall("/PSM1/measured_js") == ["/PSM1/measured_js"]
    health_key = f"test-site/robot-1/{HEALTH_STREAM}"

    def health_texts() -> tuple[str, ...]:
        try:
            batch = ctx.store.ring(health_key).snapshot()
        except KeyError:
            return ()
        return () if batch is None or batch.text is None else batch.text

    helpers.wait_for(lambda: any("/PSM1/measured_js stale" in t for t in health_texts()), 10,
                     "a stale event for the stalled topic")
    js_ring = helpers.ring_for(ctx, "/PSM1/measured_js")
    assert ctx.metrics.stale.labels(js_ring.stream.key)._value.get() == 1
    batch = js_ring.snapshot()
    assert batch.quality[-1] == Quality.STALE
    assert batch.values[-1].tolist() == batch.values[-2].tolist()
    assert not any("/PSM1/measured_cp" in t for t in health_texts())  # still flowing
    sim.resume("/PSM1/measured_js")
    helpers.wait_for(lambda: any("/PSM1/measured_js recovered" in t for t in health_texts()),
                     10, "a recovery event")
    assert ctx.metrics.stale.labels(js_ring.stream.key)._value.get() == 0
    after = js_ring.snapshot()
    assert after.quality[-1] != Quality.STALE
    stale_at = int(np.flatnonzero(after.quality == Quality.STALE)[0])
    assert np.all(np.diff(after.timestamps_ns[stale_at + 1:]) > 0)


def test_publisher_restart(make_sim: Any, start_driver: Any, ctx: DriverContext,
                           domain_id: int, helpers: Any) -> None:
    sim = make_sim(arms=["PSM2"], rate_hz=100.0, topics=["measured_js", "measured_cv"])
    start_driver(domain_id=domain_id, patterns=["/PSM2/*"], default_rate_hz=100.0)
    assert sim.wait_for_subscribers(15.0)
    sim.start()
    topic = "/PSM2/measured_js"
    helpers.wait_for(lambda: helpers.data_count(ctx, topic) >= 30, 10, "data before restart")
    sim.restart_publisher(down_s=0.3)
    assert sim.wait_for_subscribers(15.0), "driver did not match the new participant"
    before = helpers.data_count(ctx, topic)
    helpers.wait_for(lambda: helpers.data_count(ctx, topic) >= before + 30, 10,
                     "data after restart")
    sim.stop()
    helpers.wait_for(lambda: all(helpers.data_count(ctx, t) == sim.published(t)
                                 for t in sim.sampled_topics()), 10,
                     "every published sample (before and after the restart)")
    assert sim.restarts == 1
    helpers.wait_for(lambda: ctx.metrics.reconnects.labels("robot-1")._value.get() >= 1, 5,
                     "the restart to be reported as a gap")
    stamps = helpers.ring_for(ctx, topic).snapshot()
    good = stamps.timestamps_ns[stamps.quality != Quality.STALE]
    assert np.all(np.diff(good) > 0)
    gaps = np.diff(good) // sim.period_ns
    assert gaps.max() >= 25  # the 0.3 s the publisher was down is a visible hole


def test_faults_and_events(make_sim: Any, start_driver: Any, ctx: DriverContext,
                           domain_id: int, helpers: Any) -> None:
    sim = make_sim(arms=["PSM1", "PSM2"], rate_hz=100.0, topics=["measured_js"])
    start_driver(domain_id=domain_id, patterns=["/PSM*/*"])
    assert sim.wait_for_subscribers(15.0)
    sim.start()
    helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM1/measured_js") >= 10, 10, "data")
    sim.fault("PSM1", "encoder mismatch on outer_roll")
    sim.joint_limit_warning("PSM2", "outer_yaw", hold_s=5.0)
    sim.estop()

    def texts(topic: str) -> tuple[str, ...]:
        ring = helpers.ring_for(ctx, topic)
        batch = None if ring is None else ring.snapshot()
        return () if batch is None or batch.text is None else batch.text

    helpers.wait_for(lambda: "FAULT" in texts("/PSM1/operating_state")
                     and "DISABLED" in texts("/PSM2/operating_state")
                     and texts("/PSM2/warning") and len(texts("/PSM1/error")) == 2, 10,
                     "fault, e-stop and warning events")
    assert texts("/PSM1/error")[0] == "PSM1: encoder mismatch on outer_roll"
    assert "emergency stop" in texts("/PSM1/error")[1]
    assert texts("/PSM2/warning") == ("PSM2: joint outer_yaw at upper limit 1.5",)
    errors = helpers.ring_for(ctx, "/PSM1/error").snapshot()
    assert errors.values[:, 0].tolist() == [2.0, 2.0]  # ERROR severity
    states = helpers.ring_for(ctx, "/PSM1/operating_state").snapshot()
    assert states.values[list(states.text).index("FAULT"), 0] == 3.0
    yaw = arms.arm_model("PSM2", 1).upper[0]
    helpers.wait_for(lambda: helpers.ring_for(ctx, "/PSM2/measured_js").snapshot()
                     .values[-1, 0] == yaw, 5, "PSM2 outer_yaw to sit on its limit")
    # the driver never created a writer: every publication on the domain is the simulator's
    probe = dds.open_participant(domain_id)
    reader = BuiltinDataReader(probe, BuiltinTopicDcpsPublication)
    try:
        wanted = set(sim.topics())
        seen: list[Any] = []
        def all_seen() -> bool:
            seen.extend(reader.take(N=256))
            return len(seen) >= len(wanted)

        dds.wait_until(all_seen, 5)
        time.sleep(0.2)  # anything extra (a driver writer) would show up now
        seen.extend(reader.take(N=256))
        published_topics = {msgs.ros_topic_name(e.topic_name) for e in seen}
        assert published_topics == wanted
        assert len(seen) == len(wanted)
    finally:
        dds.delete_entities(reader, probe)


def test_simulator_subprocess(domain_id: int, start_driver: Any, ctx: DriverContext,
                              helpers: Any) -> None:
    topics = ["/PSM3/measured_js", "/PSM3/measured_cp", "/PSM3/body/measured_cf"]
    start_driver(domain_id=domain_id, topics=[{"name": t} for t in topics])
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.surgical_robot.cli", "--arms", "PSM3", "--rate",
         "250", "--domain", str(domain_id), "--count", "200", "--no-events", "--topics",
         "measured_js,measured_cp,body/measured_cf", "--wait-subscribers", "20",
         "--history-depth", "2000", "--stats"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["published"] == {t: 200 for t in topics}
    helpers.wait_for(lambda: all(helpers.data_count(ctx, t) == 200 for t in topics), 10,
                     "all 200 samples of every topic from the subprocess")
    stamps = stats["start_ns"] + np.arange(200, dtype=np.int64) * stats["period_ns"]
    for topic in topics:
        batch = helpers.ring_for(ctx, topic).snapshot()
        assert batch.timestamps_ns[batch.quality != Quality.STALE].tolist() == stamps.tolist()


def test_trigger_wait_reports_only_readers_with_data(domain_id: int) -> None:
    """dds.TriggerWait names the readers that hold data (relies on the binding's attach)."""
    from cyclonedds.core import ReadCondition, WaitSet
    from cyclonedds.sub import DataReader

    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.ROS_DEFAULT_QOS.model_copy(update={"depth": 100}))
    idl = msgs.idl_type("geometry_msgs/msg/TwistStamped")
    waitset = WaitSet(participant)
    waiter = dds.TriggerWait(waitset)
    entities: list[Any] = []
    readers, conditions = {}, {}
    for name in [f"/arm{i}/measured_cv" for i in range(12)]:  # more than the initial buffer
        topic = Topic(participant, msgs.dds_topic_name(name), idl, qos=qos)
        readers[name] = DataReader(participant, topic, qos=qos)
        conditions[name] = ReadCondition(readers[name], dds.ANY_STATE)
        waiter.attach(conditions[name], name)
        entities += [conditions[name], readers[name], topic]
    writers = {name: DataWriter(participant, readers[name].topic, qos=qos)
               for name in ("/arm3/measured_cv", "/arm11/measured_cv")}
    payload = _twist_payload()
    try:
        assert waiter.wait(0) == []
        for writer in writers.values():
            for _ in range(3):
                dds.write_raw(writer, payload)
        assert dds.wait_until(lambda: all(conditions[n].triggered for n in writers), 10)
        assert sorted(waiter.wait(0) or ["unknown"]) == sorted(writers)
        assert len(dds.take_raw(readers["/arm3/measured_cv"], 256)) == 3
        assert waiter.wait(0) == ["/arm11/measured_cv"]
        assert len(dds.take_raw(readers["/arm11/measured_cv"], 256)) == 3
        assert waiter.wait(0) == []
        waiter.detach(conditions["/arm3/measured_cv"])
        dds.write_raw(writers["/arm3/measured_cv"], payload)
        assert dds.wait_until(lambda: conditions["/arm3/measured_cv"].triggered, 10)
        assert waiter.wait(0) == []  # detached: no longer reported
    finally:
        for name in conditions:
            waiter.detach(conditions[name])
        dds.delete_entities(*writers.values(), *entities, waitset, participant)


def _twist_payload() -> bytes:
    w = CdrWriter()
    w.int32(1_700_000_000)
    w.uint32(0)
    w.string("base")
    for _ in range(6):
        w.float64(0.5)
    return w.payload()


def test_silent_topics_are_never_taken_from(make_sim: Any, start_driver: Any,
                                            ctx: DriverContext, domain_id: int, helpers: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Data on one of many subscribed topics all arrives; the silent readers are not taken."""
    n, rate = 120, 200.0
    sim = make_sim(arms=["PSM1"], rate_hz=rate, topics=["measured_js"], events=False,
                   max_samples=n)
    taken: dict[str, int] = {}
    take_raw = dds.take_raw

    def counting_take(reader: Any, max_samples: int) -> list[bytes]:
        name = msgs.ros_topic_name(reader.topic.get_name()) or "?"
        taken[name] = taken.get(name, 0) + 1
        return take_raw(reader, max_samples)

    monkeypatch.setattr(dds, "take_raw", counting_take)
    suffixes = ["measured_js", "setpoint_js", "measured_cp", "measured_cv"]
    topics = [f"/{arm}/{suffix}" for arm in ("PSM1", "PSM2", "PSM3", "ECM") for suffix in suffixes]
    types = {"measured_js": "sensor_msgs/msg/JointState",
             "setpoint_js": "sensor_msgs/msg/JointState",
             "measured_cp": "geometry_msgs/msg/TransformStamped",
             "measured_cv": "geometry_msgs/msg/TwistStamped"}
    driver = start_driver(domain_id=domain_id, default_rate_hz=rate, topics=[
        {"name": t, "type": types[t.rsplit("/", 1)[1]]} for t in topics])
    assert sim.wait_for_subscribers(15.0)
    helpers.wait_for(lambda: len(driver.pipelines) == len(topics), 10, "every subscription")
    sim.start()
    helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM1/measured_js") == n, 20,
                     "every sample of the one published topic")
    assert sim.published("/PSM1/measured_js") == n
    assert set(taken) == {"/PSM1/measured_js"}
    assert {t: p.received for t, p in driver.pipelines.items()} == {
        t: n if t == "/PSM1/measured_js" else 0 for t in topics}
