"""TopicPipeline's short paths (plain-Python small batches, numpy uniform batches) against the
general path: same ring contents, counters, metrics and quarantine counts for any batch."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ros2 import msgs
from drivers.ros2 import pipeline as pipeline_mod
from drivers.ros2.mapping import TYPE_TABLE
from drivers.ros2.pipeline import SMALL_BATCH, HealthStream, TopicPipeline, TopicSettings
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
JOINTS = ["outer_yaw", "outer_pitch", "outer_insertion", "outer_roll"]

any_float = st.one_of(st.floats(width=64), st.just(float("nan")), st.just(float("inf")),
                      st.just(-0.0), st.just(1e308))
# header stamps: valid ones in any order (sec 0 with nanosec > 0 is valid and set), unset
# (receive time, UNCERTAIN), and out of range (quarantined): nanosec >= 1e9, negative sec
valid_stamps = st.one_of(
    st.tuples(st.integers(1_700_000_000, 1_700_000_003), st.integers(0, NS - 1)),
    st.tuples(st.just(0), st.integers(1, 3)), st.just((0, 0)))
bad_stamps = st.sampled_from([(5, NS), (5, 2**32 - 1), (-1, 0), (-(2**31), 5)])
# what happens to a payload: another frame id (same length: the scalar path, still good),
# garbage of the same length, truncated
damage = st.sampled_from(["frame", "garbage", "truncated"])

def make_ctx() -> DriverContext:
    return DriverContext("site-a", "robot-1", RingStore(4096), GatewayMetrics(),
                         logging.getLogger("test.ros2.fast"), ring_capacity=4096)


def make_pipeline(ctx: DriverContext, ros_type: str, general_only: bool) -> TopicPipeline:
    topic = "/PSM1/x"
    p = TopicPipeline(ctx, TopicSettings(topic, ros_type, "PSM1.x", 100.0, 5.0,
                                         frozenset({"outer_insertion"})),
                      TYPE_TABLE[ros_type], HealthStream(ctx))
    if general_only:  # the short paths decline every batch
        p._append_small = lambda *_: None  # type: ignore[method-assign]
        p._append_uniform = lambda *_: None  # type: ignore[method-assign]
    return p


def stamped_header(stamp: tuple[int, int], frame: str) -> msgs.Header:
    sec, nanosec = stamp
    return msgs.Header(msgs.Time(max(sec, 0), min(nanosec, NS - 1)), frame)


def set_stamp(payload: bytes, stamp: tuple[int, int]) -> bytes:
    """Write the stamp raw (also out of range); header.stamp is at offset 4 when present."""
    raw = bytearray(payload)
    raw[4:12] = struct.pack("<iI", *stamp)
    return bytes(raw)


def joint_state(values: list[float], stamp: tuple[int, int], frame: str) -> msgs.JointState:
    n = len(JOINTS)
    return msgs.JointState(header=stamped_header(stamp, frame), name=JOINTS,
                           position=values[:n], velocity=values[n:2 * n],
                           effort=values[2 * n:3 * n])


def transform(values: list[float], stamp: tuple[int, int],
              frame: str) -> msgs.TransformStamped:
    return msgs.TransformStamped(
        header=stamped_header(stamp, frame), child_frame_id="tool",
        transform=msgs.Transform(msgs.Vector3(*values[:3]), msgs.Quaternion(*values[3:7])))


def twist(values: list[float], stamp: tuple[int, int], frame: str) -> msgs.Twist:
    return msgs.Twist(msgs.Vector3(*values[:3]), msgs.Vector3(*values[3:6]))


BUILDERS: dict[str, tuple[Callable[[list[float], tuple[int, int], str], Any], int]] = {
    "sensor_msgs/msg/JointState": (joint_state, 3 * len(JOINTS)),
    "geometry_msgs/msg/TransformStamped": (transform, 7),
    "geometry_msgs/msg/Twist": (twist, 6),
}
STAMPED = {"sensor_msgs/msg/JointState", "geometry_msgs/msg/TransformStamped"}


def payload_of(ros_type: str, values: list[float], stamp: tuple[int, int],
               frame: str = "PSM1_base") -> bytes:
    build, _ = BUILDERS[ros_type]
    payload = build(values, stamp, frame).serialize()
    return set_stamp(payload, stamp) if ros_type in STAMPED else payload


def outcome(ctx: DriverContext, p: TopicPipeline) -> dict[str, Any]:
    """Everything a batch path can change, in comparable form."""
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None and batch.receive_ns is not None
    key = batch.stream.key
    malformed = {s.labels["reason"]: s.value for s in
                 next(iter(ctx.metrics.malformed.collect())).samples
                 if s.name.endswith("_total")}
    return {
        "ts": batch.timestamps_ns.tolist(), "rx": batch.receive_ns.tolist(),
        "values": batch.values.tobytes(),  # bit for bit: NaN payloads, -0.0
        "quality": batch.quality.tolist(), "seq": batch.first_seq,
        "received": p.received, "quarantined": p.quarantined,
        "rows": p.fast_rows + p.slow_rows,
        "last_stamp": p.last_stamp_ns, "first": p.first_stamp_ns, "max": p.max_stamp_ns,
        "last_values": None if p.last_values is None else p.last_values.tobytes(),
        "m_received": ctx.metrics.received.labels(key)._value.get(),
        "m_last_seen": ctx.metrics.last_seen.labels(key)._value.get(),
        "m_offset": ctx.metrics.clock_offset.labels(key)._value.get(),
        "malformed": malformed,
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[bytes], list[int], bool]:
    """A ros type, payloads, batch sizes and whether receive times are an array.

    Half the cases are clean (every payload matches the layout, stamps valid or unset), so
    the short paths take whole batches; the others mix in damaged payloads and bad stamps.
    """
    ros_type = draw(st.sampled_from(sorted(BUILDERS)))
    width = BUILDERS[ros_type][1]
    clean = draw(st.booleans())
    total = draw(st.integers(1, 40))
    payloads = []
    for _ in range(total):
        values = draw(st.lists(any_float, min_size=width, max_size=width))
        hurt = None if clean or draw(st.integers(0, 9)) < 7 else draw(damage)
        stamp = draw(valid_stamps if clean or draw(st.integers(0, 9)) < 8 else bad_stamps)
        payload = payload_of(ros_type, values, stamp,
                             "PSM1_othr" if hurt == "frame" else "PSM1_base")
        if hurt == "garbage":
            payload = b"\x00\x01\x00\x00" + bytes(len(payload) - 4)
        elif hurt == "truncated":
            payload = payload[:-9]
        payloads.append(payload)
    sizes = []
    left = total
    while left:
        size = draw(st.sampled_from([1, 2, 3, SMALL_BATCH, SMALL_BATCH + 1, 20]))
        sizes.append(min(size, left))
        left -= sizes[-1]
    return ros_type, payloads, sizes, draw(st.booleans())


def prime(ros_type: str) -> bytes:
    return payload_of(ros_type, [0.5] * BUILDERS[ros_type][1], (1_700_000_000, 0))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=batches())
def test_short_paths_match_general_path(case: tuple[str, list[bytes], list[int], bool]) -> None:
    ros_type, payloads, sizes, rx_array = case
    results = []
    for general_only in (False, True):
        ctx = make_ctx()
        p = make_pipeline(ctx, ros_type, general_only)
        assert p.ingest([prime(ros_type)], T0) == 1  # registers the stream and the layout
        start = 0
        for size in sizes:
            chunk = payloads[start:start + size]
            rx: int | np.ndarray = T0 + start
            if rx_array:
                rx = np.arange(start, start + size, dtype=np.int64) * 1000 + T0
            p.ingest(chunk, rx)
            start += size
        results.append(outcome(ctx, p))
    assert results[0] == results[1]


@pytest.mark.parametrize("n", [1, 2, SMALL_BATCH, SMALL_BATCH + 1, 20])
@pytest.mark.parametrize("ros_type", sorted(BUILDERS))
def test_clean_batches_take_the_short_paths(n: int, ros_type: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    width = BUILDERS[ros_type][1]
    payloads = [payload_of(ros_type, [k + 0.25 * j for j in range(width)],
                           (1_700_000_001, 1000 * k)) for k in range(n)]
    results = []
    for general_only in (False, True):
        ctx = make_ctx()
        p = make_pipeline(ctx, ros_type, general_only)
        p.ingest([prime(ros_type)], T0)
        if not general_only:  # the general path must not run
            monkeypatch.setattr(p, "_ingest_sampled", None)
        assert p.ingest(payloads, T0 + NS) == n
        assert p.fast_rows == n + 1 and p.slow_rows == 0  # + the first message
        results.append(outcome(ctx, p))
    assert results[0] == results[1]
    assert len(results[0]["ts"]) == n + 1


def test_small_batch_values_in_field_order() -> None:
    ctx = make_ctx()
    p = make_pipeline(ctx, "sensor_msgs/msg/JointState", False)
    values = [float(i) for i in range(3 * len(JOINTS))]
    p.ingest([payload_of("sensor_msgs/msg/JointState", values, (1_700_000_001, 1000))], T0)
    p.ingest([payload_of("sensor_msgs/msg/JointState", values, (0, 0))], T0 + 5)
    assert p.fast_rows == 2
    batch = p.ring.snapshot() if p.ring else None
    assert batch is not None
    n = len(JOINTS)
    expected = [v for j in range(n) for v in (values[j], values[n + j], values[2 * n + j])]
    assert batch.values.tolist() == [expected, expected]
    assert batch.timestamps_ns.tolist() == [(1_700_000_001) * NS + 1000, T0 + 5]
    assert batch.quality.tolist() == [0, 1]
    assert pipeline_mod.SMALL_BATCH >= 2
