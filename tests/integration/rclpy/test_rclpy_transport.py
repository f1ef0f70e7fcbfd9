"""A real rclpy publisher node (Fast DDS) -> the rclpy transport -> the ros2 decode pipeline.

The sink here is the smallest driver: it opens a reader for every wanted publication the
ROS graph reports and feeds the transport's raw CDR to the driver's TopicPipeline, so
counts and values are the pipeline's own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from drivers.ros2.mapping import type_mapping
from drivers.ros2.options import Ros2Options, topic_selected, topic_settings
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from drivers.ros2.rclpy_transport import RclpyTransport, message_type
from drivers.ros2.transport import Publication, RawBatch, ReaderRefused, ReaderSpec
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import Quality
from gateway.ring import RingStore
from tests.helpers import wait_until
from tests.integration.rclpy.support import data_count, ring_snapshot

pytestmark = pytest.mark.integration
LOG = logging.getLogger("test.rclpy")
SITE, DEVICE = "test-site", "robot-1"


class PipelineSink:
    """Opens a reader per wanted, mapped publication; decodes with TopicPipeline."""

    def __init__(self, transport: RclpyTransport, ctx: DriverContext) -> None:
        self.transport = transport
        self.ctx = ctx
        self.options = transport.options
        self.health = HealthStream(ctx)
        self.pipelines: dict[str, TopicPipeline] = {}
        self.seen: list[Publication] = []
        self.refused: dict[str, str] = {}
        self.ticks = 0

    def publication(self, pub: Publication) -> None:
        """Open a reader for a wanted publication of a mapped type."""
        self.seen.append(pub)
        mapping = type_mapping(pub.ros_type or "")
        if (not pub.alive or mapping is None or pub.topic in self.pipelines
                or not topic_selected(self.options, pub.topic)):
            return
        settings = topic_settings(self.options, pub.topic, mapping.ros_type)
        spec = ReaderSpec(pub.topic, mapping.ros_type, self.options.qos, settings.rate_hz,
                          urgent=mapping.is_event)
        try:
            self.transport.open_reader(spec)
        except ReaderRefused as err:
            self.refused[pub.topic] = str(err)
            return
        self.pipelines[pub.topic] = TopicPipeline(self.ctx, settings, mapping, self.health)

    def samples(self, topic: str, batch: RawBatch) -> None:
        """Decode one batch into the rings."""
        self.pipelines[topic].ingest(batch.payloads, batch.receive_ns, time.monotonic_ns())

    def tick(self, now_mono_ns: int) -> None:
        """Count ticks (the transport must call it every poll_ms)."""
        self.ticks += 1


@pytest.fixture
def ctx() -> DriverContext:
    """Return a DriverContext over a fresh RingStore."""
    return DriverContext(SITE, DEVICE, RingStore(8192), GatewayMetrics(), LOG,
                         ring_capacity=8192)


@pytest.fixture
def run_transport(ctx: DriverContext) -> Iterator[Callable[..., tuple[RclpyTransport,
                                                                      PipelineSink]]]:
    """Run RclpyTransport.run() in a thread with a PipelineSink; stopped at teardown."""
    running: list[tuple[threading.Thread, threading.Event]] = []
    errors: list[BaseException] = []

    def start(**options: Any) -> tuple[RclpyTransport, PipelineSink]:
        transport = RclpyTransport(Ros2Options(transport="rclpy", **options), LOG)
        sink = PipelineSink(transport, ctx)
        stop = threading.Event()

        def main() -> None:
            try:
                transport.run(sink, stop)
            except BaseException as err:  # re-raised at teardown
                errors.append(err)
        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        running.append((thread, stop))
        return transport, sink

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "rclpy transport did not stop"
    if errors:
        raise errors[0]


def test_rclpy_publisher_to_pipeline_exact(domain_id: int, start_publisher: Any,
                                           run_transport: Any, ctx: DriverContext) -> None:
    n = 200
    transport, sink = run_transport(domain_id=domain_id, patterns=["/PSM1/*"])
    pub = start_publisher("--arms", "PSM1", "--rate", "200", "--count", str(n))
    result = pub.result(60)
    assert result["acked"] is True
    published = result["published"]
    assert published == {"/PSM1/measured_js": n, "/PSM1/measured_cp": n, "/PSM1/error": n // 10}
    wait_until(lambda: all(data_count(ctx, t) == c for t, c in published.items()), 20,
               message=f"every topic to deliver {published}")
    stamps = [result["start_ns"] + i * result["period_ns"] for i in range(n)]
    i = np.arange(n, dtype=np.float64)
    js = ring_snapshot(ctx, "/PSM1/measured_js")
    good = js.quality != Quality.STALE
    assert js.timestamps_ns[good].tolist() == stamps
    assert js.stream.fields[:3] == ("outer_yaw.position", "outer_yaw.velocity",
                                    "outer_yaw.effort")
    values = js.values[good]
    for k in range(7):
        assert np.array_equal(values[:, 3 * k], i + k / 10)
        assert np.array_equal(values[:, 3 * k + 1], -i)
        assert np.array_equal(values[:, 3 * k + 2], 2 * i)
    cp = ring_snapshot(ctx, "/PSM1/measured_cp")
    assert cp.timestamps_ns[cp.quality != Quality.STALE].tolist() == stamps
    assert np.array_equal(cp.values[cp.quality != Quality.STALE][:, :3],
                          np.stack([i, 2 * i, 3 * i], axis=1))
    errors = ring_snapshot(ctx, "/PSM1/error")
    assert list(errors.text) == [f"fault {k}" for k in range(0, n, 10)]
    # the graph told who published: the node name, the offered QoS, the vendor from the GUID
    js_pub = next(p for p in sink.seen if p.topic == "/PSM1/measured_js")
    assert js_pub.node == "/medgw_test_robot"
    assert js_pub.ros_type == "sensor_msgs/msg/JointState"
    assert (js_pub.reliability, js_pub.durability) == ("reliable", "volatile")
    assert js_pub.vendor == "eProsima Fast DDS (1.15)"
    status = transport.reader_status("/PSM1/measured_js")
    assert status is not None
    assert (status.matched, status.matched_total, status.lost) == (1, 1, 0)
    assert (status.exact, status.seq_lost) == (True, 0)  # MessageInfo numbered every sample
    assert sink.ticks > 0
    pub.stop()
    wait_until(lambda: any(not p.alive and p.topic == "/PSM1/measured_js" for p in sink.seen), 10,
               message="the publisher's departure in the graph")
    wait_until(lambda: transport.reader_status("/PSM1/measured_js").matched == 0, 10,
               message="the reader to report no match")


def test_type_without_python_package_is_refused_with_the_fix(domain_id: int,
                                                              run_transport: Any) -> None:
    with pytest.raises(ReaderRefused, match=r"crtk_msgs.*transport: cyclonedds"):
        message_type("crtk_msgs/msg/OperatingState")
    transport, _sink = run_transport(domain_id=domain_id, patterns=["/PSM1/*"])
    wait_until(lambda: transport._session is not None, 10, message="the session")
    spec = ReaderSpec("/PSM1/operating_state", "crtk_msgs/msg/OperatingState",
                      Ros2Options(patterns=["/x"]).qos, 10.0, urgent=True)
    with pytest.raises(ReaderRefused, match="install or build the ROS package crtk_msgs"):
        transport.open_reader(spec)
    assert transport.reader_status("/PSM1/operating_state") is None


def test_qos_and_vendor_helpers() -> None:
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from drivers.ros2.options import QosOptions
    from drivers.ros2.rclpy_support import policy_name, qos_profile, vendor_of

    best = qos_profile(QosOptions(reliability="best_effort", durability="transient_local",
                                  depth=7))
    assert (best.reliability, best.durability, best.depth) == (
        ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL, 7)
    assert qos_profile(QosOptions()).reliability == ReliabilityPolicy.RELIABLE
    assert vendor_of(bytes([1, 15]) + bytes(14)) == "eProsima Fast DDS (1.15)"
    assert vendor_of(bytes([1, 16]) + bytes(14)) == "Eclipse Cyclone DDS (1.16)"
    assert vendor_of(bytes([0xAB, 0xCD]) + bytes(14)) is None  # a prefix that names no vendor
    assert vendor_of(b"") is None
    from rclpy.qos import QoSPolicyKind

    assert policy_name(QoSPolicyKind.RELIABILITY) == "reliability"


def test_without_domain_id_the_system_ros_domain_id_applies(domain_id: int,
                                                            start_publisher: Any,
                                                            run_transport: Any,
                                                            ctx: DriverContext) -> None:
    """No domain_id in the config: the private node joins ROS_DOMAIN_ID (the fixture's)."""
    assert os.environ["ROS_DOMAIN_ID"] == str(domain_id)
    _transport, sink = run_transport(patterns=["/PSM1/*"])
    result = start_publisher("--arms", "PSM1", "--rate", "100", "--count", "20").result(60)
    assert result["published"]["/PSM1/measured_js"] == 20
    wait_until(lambda: data_count(ctx, "/PSM1/measured_js") == 20, 20,
               message="20 samples on ROS_DOMAIN_ID")
    assert sink.refused == {}


def test_a_stalled_sink_counts_what_the_queue_drops(domain_id: int, start_publisher: Any,
                                                    ctx: DriverContext,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing silent: received + counted as lost == published, however slow the sink."""
    from drivers.ros2 import rclpy_transport
    from drivers.ros2.options import QosOptions

    monkeypatch.setattr(rclpy_transport, "QUEUE_FACTOR", 0)  # a queue of max_take samples
    transport = RclpyTransport(Ros2Options(transport="rclpy", domain_id=domain_id,
                                           patterns=["/PSM1/*"], max_take=10,
                                           qos=QosOptions(depth=1000)), LOG)
    gate = threading.Event()

    class StalledSink(PipelineSink):
        def samples(self, topic: str, batch: RawBatch) -> None:
            gate.wait(60)  # the sink is stuck until the publisher is done
            super().samples(topic, batch)

    sink = StalledSink(transport, ctx)
    stop = threading.Event()
    thread = threading.Thread(target=transport.run, args=(sink, stop), daemon=True)
    thread.start()
    try:
        n = 100
        result = start_publisher("--arms", "PSM1", "--rate", "200", "--count", str(n)).result(60)
        assert result["acked"] is True
        gate.set()
        topic = "/PSM1/measured_js"

        def accounted() -> bool:
            status = transport.reader_status(topic)
            return status is not None and data_count(ctx, topic) + status.lost == n
        wait_until(accounted, 20, message=f"received + lost == {n}")
        status = transport.reader_status(topic)
        assert status is not None and status.lost > 0  # the queue did overflow
        assert (status.exact, status.seq_lost) == (True, 0)  # our drop: no hole, no count twice
        assert data_count(ctx, topic) <= 2 * 10 + 1  # what one stalled batch and the queue held
    finally:
        gate.set()
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
