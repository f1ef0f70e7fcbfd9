"""One bad ROS publisher never stalls the device (issue 13 #5): it is quarantined alone.

Raw Cyclone DDS writers on the test's domain publish a good JointState topic, a JointState
whose joint names collide after sanitizing (["a.b", "a_b"] -> one channel "a_b") and a
topic whose name the ingest would refuse (``rt/PSM5/m,e=a``). The good topic delivers
every sample, each bad topic is counted through ctx.quarantine once, logged once and
listed in the device's error, and the DDS session is never restarted.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from drivers.ros2 import dds, msgs
from drivers.ros2.cdr import CdrWriter
from gateway.driver import DriverContext

pytestmark = pytest.mark.integration
NS = 1_000_000_000
N = 50
JS = "sensor_msgs/msg/JointState"


def _joint_state(k: int, names: list[str]) -> bytes:
    w = CdrWriter()
    w.header(1_700_000_000 * NS + k * 10_000_000, "base")
    w.strings(names)
    w.float64s([float(k)] * len(names))
    w.float64s([])
    w.float64s([])
    return w.payload()


def test_bad_topics_are_quarantined_alone(domain_id: int, start_driver: Any,
                                          ctx: DriverContext, helpers: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.ros2")
    driver = start_driver(domain_id=domain_id, patterns=["/PSM5/*"],
                          qos=dds.QosOptions(depth=1000))
    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.QosOptions(depth=1000))
    writers: dict[str, Any] = {}
    entities: list[Any] = []
    try:
        for topic in ("/PSM5/measured_js", "/PSM5/colliding_js", "/PSM5/m,e=a"):
            dds_topic = Topic(participant, msgs.dds_topic_name(topic), msgs.idl_type(JS), qos=qos)
            writers[topic] = DataWriter(participant, dds_topic, qos=qos)
            entities += [writers[topic], dds_topic]
        helpers.wait_for(lambda: all(w.get_publication_matched_status().current_count
                                     for t, w in writers.items() if t != "/PSM5/m,e=a"), 15,
                         "the driver's readers of the two readable topics")
        for k in range(N):
            dds.write_raw(writers["/PSM5/measured_js"], _joint_state(k, ["j1", "j2"]))
            dds.write_raw(writers["/PSM5/colliding_js"], _joint_state(k, ["a.b", "a_b"]))
            dds.write_raw(writers["/PSM5/m,e=a"], _joint_state(k, ["j1"]))
        helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM5/measured_js") == N, 15,
                         "every sample of the good topic")
        router = driver.router
        helpers.wait_for(lambda: "/PSM5/colliding_js" in router.quarantined
                         and "/PSM5/m,e=a" in router.quarantined, 10, "both bad topics")
        helpers.wait_for(lambda: _malformed(ctx, "topic_quarantined") == N - 1, 10,
                         "every later sample of the colliding topic counted")
    finally:
        dds.delete_entities(*entities, participant)
    assert _malformed(ctx, "stream_refused") == 2  # one per bad topic, through ctx.quarantine
    assert helpers.ring_for(ctx, "/PSM5/colliding_js") is None
    assert driver.sessions == 1 and driver.transport.sessions == 1
    error = ctx.state.last_error or ""
    assert "/PSM5/colliding_js quarantined" in error and "/PSM5/m,e=a quarantined" in error
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert sum("/PSM5/colliding_js" in m for m in logged) == 1, logged
    assert sum("/PSM5/m,e=a" in m for m in logged) == 1, logged
    assert "duplicate field names" in router.quarantined["/PSM5/colliding_js"]


def _malformed(ctx: DriverContext, reason: str) -> float:
    return float(ctx.metrics.malformed.labels(ctx.device, reason)._value.get())


def test_an_overrun_reader_history_is_reported(domain_id: int, start_driver: Any,
                                               ctx: DriverContext, helpers: Any) -> None:
    """Keep-last readers overwrite silently in DDS; the driver says when it may have."""
    start_driver(domain_id=domain_id, topics=[{"name": "/PSM6/measured_js", "type": JS}],
                 qos=dds.QosOptions(depth=5), batch_window_ms=20.0)
    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.QosOptions(depth=5000))
    dds_topic = Topic(participant, "rt/PSM6/measured_js", msgs.idl_type(JS), qos=qos)
    writer = DataWriter(participant, dds_topic, qos=qos)
    try:
        helpers.wait_for(lambda: writer.get_publication_matched_status().current_count, 15,
                         "the driver's reader")
        dds.write_raw(writer, _joint_state(0, ["j1"]))
        helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM6/measured_js") == 1, 10,
                         "the first sample")
        metric = ctx.metrics.middleware_lost.labels(ctx.device, "/PSM6/measured_js",
                                                    "reader_history_full")
        for k in range(1, 2001):  # far faster than 5 samples per 20 ms batch window
            dds.write_raw(writer, _joint_state(k, ["j1"]))
        helpers.wait_for(lambda: metric._value.get() >= 1, 10, "the overrun reported")
    finally:
        dds.delete_entities(writer, dds_topic, participant)
    assert helpers.data_count(ctx, "/PSM6/measured_js") < 2001  # samples were overwritten


def test_samples_missing_between_stamps_are_counted(domain_id: int, start_driver: Any,
                                                    ctx: DriverContext, helpers: Any) -> None:
    """What DDS drops without a SAMPLE_LOST shows as a gap: estimated from the stamps."""
    start_driver(domain_id=domain_id, topics=[{"name": "/PSM7/measured_js", "type": JS,
                                               "rate_hz": 100}], qos=dds.QosOptions(depth=1000))
    participant = dds.open_participant(domain_id)
    qos = dds.make_qos(dds.QosOptions(depth=5000))
    dds_topic = Topic(participant, "rt/PSM7/measured_js", msgs.idl_type(JS), qos=qos)
    writer = DataWriter(participant, dds_topic, qos=qos)
    dropped = {50, 51, 52, 80, 120}  # as a lossy network or a keep-last writer would
    sent = [k for k in range(200) if k not in dropped]
    try:
        helpers.wait_for(lambda: writer.get_publication_matched_status().current_count, 15,
                         "the driver's reader")
        for k in sent:
            dds.write_raw(writer, _joint_state(k, ["j1"]))
        helpers.wait_for(lambda: helpers.data_count(ctx, "/PSM7/measured_js") == len(sent), 10,
                         "every sample sent")
        metric = ctx.metrics.middleware_lost.labels(ctx.device, "/PSM7/measured_js",
                                                    "stamp_gap")
        helpers.wait_for(lambda: metric._value.get() == len(dropped), 5, "the gap counted")
    finally:
        dds.delete_entities(writer, dds_topic, participant)
    assert ctx.metrics.gap_seconds.labels(ctx.device)._value.get() == pytest.approx(0.05)
