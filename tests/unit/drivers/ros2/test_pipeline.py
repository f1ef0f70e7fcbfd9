"""TopicPipeline: batch decoding into rings, quarantine, stamps, events and staleness."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ros2 import msgs
from drivers.ros2.mapping import TYPE_TABLE
from drivers.ros2.pipeline import HEALTH_STREAM, HealthStream, TopicPipeline, TopicSettings
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind
from tests.unit.drivers.ros2.strategies import finite

NS = 1_000_000_000
_TOPIC_IDS = itertools.count()
JOINTS = ["outer_yaw", "outer_pitch", "outer_insertion"]


def joint_state(k: int, stamp_ns: int, names: list[str] | None = None,
                frame: str = "PSM1_base") -> msgs.JointState:
    """A JointState whose values are a simple function of k."""
    names = names or JOINTS
    n = len(names)
    return msgs.JointState(
        header=msgs.Header(msgs.Time(stamp_ns // NS, stamp_ns % NS), frame), name=names,
        position=[k + 0.1 * j for j in range(n)], velocity=[-k - 0.1 * j for j in range(n)],
        effort=[0.5 * k + j for j in range(n)])


def pipeline(ctx: DriverContext, ros_type: str = "sensor_msgs/msg/JointState",
             topic: str = "/PSM1/measured_js", stale: float | None = None,
             rate: float = 100.0) -> TopicPipeline:
    settings_ = TopicSettings(topic, ros_type, topic.strip("/").replace("/", "."), rate, stale,
                              frozenset({"outer_insertion"}))
    return TopicPipeline(ctx, settings_, TYPE_TABLE[ros_type], HealthStream(ctx))


def expected_row(m: msgs.JointState) -> list[float]:
    return [v for j in range(len(m.name)) for v in (m.position[j], m.velocity[j], m.effort[j])]


def test_joint_state_batch_vectorized(ctx: DriverContext, ros_cdr: Any) -> None:
    t0 = 1_700_000_000 * NS
    messages = [joint_state(k, t0 + k * 10_000_000) for k in range(50)]
    p = pipeline(ctx)
    assert p.ingest([ros_cdr(m) for m in messages], receive_ns=t0 + NS) == 50
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None and len(batch) == 50
    spec = batch.stream
    assert spec.channel_tag == "joint" and spec.measurement == "joint_state"
    assert spec.fields[:3] == ("outer_yaw.position", "outer_yaw.velocity", "outer_yaw.effort")
    assert spec.units[6:9] == ("m", "m/s", "N")
    assert batch.timestamps_ns.tolist() == [t0 + k * 10_000_000 for k in range(50)]
    assert batch.values.tolist() == [expected_row(m) for m in messages]
    assert batch.quality.tolist() == [Quality.GOOD] * 50
    assert batch.receive_ns is not None and set(batch.receive_ns.tolist()) == {t0 + NS}
    assert p.fast_rows == 50 and p.slow_rows == 0
    assert ctx.metrics.received.labels(spec.key)._value.get() == 50
    offset = ctx.metrics.clock_offset.labels(spec.key)._value.get()
    assert offset == pytest.approx((t0 + NS - (t0 + 49 * 10_000_000)) / 1e9)


def test_mixed_batch_keeps_order_and_quarantines(ctx: DriverContext, ros_cdr: Any,
                                                 typestore: Any) -> None:
    t0 = 1_700_000_000 * NS
    good = [joint_state(k, t0 + k) for k in range(6)]
    other_frame = joint_state(6, t0 + 6, frame="another_frame")  # scalar path, still good
    renamed = joint_state(7, t0 + 7, names=["a", "b", "c"])  # layout change
    bad_len = typestore.serialize_cdr(typestore.types["sensor_msgs/msg/JointState"](
        header=typestore.types["std_msgs/msg/Header"](
            stamp=typestore.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
            frame_id="PSM1_base"),
        name=JOINTS, position=np.zeros(3), velocity=np.zeros(2), effort=np.zeros(0)),
        "sensor_msgs/msg/JointState")
    bad_stamp = bytearray(ros_cdr(good[0]))
    bad_stamp[8:12] = (2 * NS).to_bytes(4, "little")  # nanosec >= 1e9, same layout
    payloads = [ros_cdr(good[0]), b"\x00\x01\x00\x00garbage", ros_cdr(good[1]),
                bytes(bad_len), ros_cdr(good[2]), bytes(bad_stamp), ros_cdr(renamed),
                ros_cdr(other_frame), ros_cdr(good[3]), b"", ros_cdr(good[4])]
    p = pipeline(ctx)
    appended = p.ingest(payloads, receive_ns=t0)
    kept = [good[0], good[1], good[2], other_frame, good[3], good[4]]
    assert appended == len(kept)
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None
    assert batch.values.tolist() == [expected_row(m) for m in kept]
    assert batch.timestamps_ns.tolist() == [
        m.header.stamp.sec * NS + m.header.stamp.nanosec for m in kept]
    assert p.quarantined == 5
    reasons = {s.labels["reason"]: s.value for s in
               next(iter(ctx.metrics.malformed.collect())).samples if s.name.endswith("_total")}
    assert reasons == {"decode": 2.0, "array_length": 1.0, "bad_stamp": 1.0,
                       "layout_changed": 1.0}


def test_first_payloads_garbage_then_good(ctx: DriverContext, ros_cdr: Any) -> None:
    p = pipeline(ctx)
    assert p.ingest([b"junk", b"\x00\x01\x00\x00\xff"], receive_ns=5) == 0
    assert p.ring is None and p.quarantined == 2
    assert p.ingest([ros_cdr(joint_state(1, 10 * NS))], receive_ns=5) == 1


def test_unset_stamp_uses_receive_time_and_nan_is_bad(ctx: DriverContext,
                                                      ros_cdr: Any) -> None:
    unset = joint_state(1, 0)
    nan = joint_state(2, 3 * NS)
    nan.position[1] = float("nan")
    p = pipeline(ctx)
    p.ingest([ros_cdr(unset), ros_cdr(nan)], receive_ns=np.array([77, 88]))
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None
    assert batch.timestamps_ns.tolist() == [77, 3 * NS]
    assert batch.quality.tolist() == [Quality.UNCERTAIN, Quality.BAD]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.lists(finite, min_size=6, max_size=6), min_size=1, max_size=20))
def test_unstamped_twist_uses_receive_time(ctx: DriverContext, ros_cdr: Any,
                                           values: list[list[float]]) -> None:
    messages = [msgs.Twist(msgs.Vector3(*v[:3]), msgs.Vector3(*v[3:])) for v in values]
    p = pipeline(ctx, "geometry_msgs/msg/Twist", topic=f"/twist{next(_TOPIC_IDS)}")
    rx = np.arange(len(values), dtype=np.int64) * 1000 + 5
    assert p.ingest([ros_cdr(m) for m in messages], receive_ns=rx) == len(values)
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None
    assert batch.timestamps_ns.tolist() == rx.tolist()
    assert batch.values.tolist() == values
    assert batch.stream.measurement == "twist"


def test_events_appended_one_by_one_with_text(ctx: DriverContext, ros_cdr: Any) -> None:
    states = ["ENABLED", "FAULT", "DISABLED", "whatever"]
    messages = [msgs.OperatingState(msgs.Header(msgs.Time(100 + i, 0), ""), s, True, i == 1)
                for i, s in enumerate(states)]
    p = pipeline(ctx, "crtk_msgs/msg/OperatingState", topic="/PSM1/operating_state")
    seen: list[int] = []
    ctx.store.add_listener(lambda spec: seen.append(1))
    assert p.ingest([ros_cdr(m) for m in messages], receive_ns=1) == 4
    assert len(seen) == 4  # one append (and one wake-up of the publisher) per event
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None
    assert batch.stream.kind is StreamKind.EVENT and batch.stream.measurement == "robot_event"
    assert batch.text == tuple(states)
    assert batch.values[:, 0].tolist() == [1.0, 3.0, 0.0, -1.0]
    assert batch.values[:, 2].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert dict(batch.stream.labels)["FAULT"] == 3.0
    assert batch.timestamps_ns.tolist() == [(100 + i) * NS for i in range(4)]


def test_stale_and_recovery(ctx: DriverContext, ros_cdr: Any) -> None:
    p = pipeline(ctx, stale=5, rate=100)
    t0 = 1_700_000_000 * NS
    mono = 10 * NS
    p.ingest([ros_cdr(joint_state(k, t0 + k * 10_000_000)) for k in range(3)], t0, mono)
    assert not p.check_stale(mono + 40_000_000)
    assert p.check_stale(mono + 60_000_000)
    assert not p.check_stale(mono + 90_000_000)  # reported once
    key = p.ring.stream.key if p.ring else ""
    assert ctx.metrics.stale.labels(key)._value.get() == 1
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None and len(batch) == 4
    assert batch.quality[-1] == Quality.STALE
    assert batch.values[-1].tolist() == batch.values[-2].tolist()
    assert batch.timestamps_ns[-1] == t0 + 2 * 10_000_000 + 60_000_000
    p.ingest([ros_cdr(joint_state(9, t0 + NS))], t0 + NS, mono + NS)
    assert ctx.metrics.stale.labels(key)._value.get() == 0
    health = ctx.store.ring(f"site-a/robot-1/{HEALTH_STREAM}").snapshot()
    assert health is not None and health.text is not None
    assert health.values[:, 0].tolist() == [1.0, 0.0]
    assert "/PSM1/measured_js stale" in health.text[0]
    assert "recovered" in health.text[1]
    assert health.stream.kind is StreamKind.EVENT


def test_no_stale_check_without_clock_or_data(ctx: DriverContext) -> None:
    assert not pipeline(ctx, stale=None).check_stale(10**12)
    assert not pipeline(ctx, topic="/b", stale=5).check_stale(10**12)  # nothing seen yet


def test_health_events_never_share_a_timestamp(ctx: DriverContext) -> None:
    health = HealthStream(ctx)
    # two time bases interleaved: a topic stamp, the wall clock, the same stamp again
    for ts in (1_000, 5_000, 1_000, 1_000, 5_000, 1_001):
        health.emit(ts, "LOST", "x")
    snap = health.ring.snapshot()
    assert snap is not None
    stamps = snap.timestamps_ns.tolist()
    assert sorted(stamps) == [1_000, 1_001, 1_002, 1_003, 5_000, 5_001]
