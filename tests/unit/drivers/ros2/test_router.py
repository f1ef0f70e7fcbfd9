"""TopicRouter and TopicWatch against a fake transport: selection, QoS, quarantine, nothing
silent (unmatched publications, middleware loss, explicit topics that never delivered)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from drivers.ros2 import Ros2Options, TopicOptions
from drivers.ros2.cdr import CdrWriter
from drivers.ros2.options import QosOptions
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from drivers.ros2.router import TopicRouter
from drivers.ros2.transport import (
    Publication,
    RawBatch,
    ReaderRefused,
    ReaderSpec,
    ReaderStatus,
    TransportSink,
)
from drivers.ros2.watch import STATUS_INTERVAL_S
from gateway.driver import DriverContext

NS = 1_000_000_000
JS = "sensor_msgs/msg/JointState"


class FakeTransport:
    """Records readers; statuses are set by the test."""

    name = "fake"

    def __init__(self) -> None:
        self.specs: dict[str, ReaderSpec] = {}
        self.status: dict[str, ReaderStatus] = {}
        self.refuse: set[str] = set()

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Not used: the tests call the sink directly."""

    def open_reader(self, spec: ReaderSpec) -> None:
        """Record the reader (or refuse it)."""
        if spec.topic in self.refuse:
            raise ReaderRefused(f"no reader for {spec.topic}")
        self.specs[spec.topic] = spec

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """Return the status the test set, else 'matched one'."""
        if topic not in self.specs:
            return None
        return self.status.get(topic, ReaderStatus(1, 1, matched_keys=frozenset({f"k{topic}"})))

    def publications(self) -> list[Publication]:
        """None here."""
        return []


def _pub(topic: str, ros_type: str | None = JS, key: str | None = None,
         reliability: str = "reliable", alive: bool = True) -> Publication:
    return Publication(topic, ros_type, ros_type or "weird::Type", key or f"k{topic}",
                       "010f0000", vendor="eProsima Fast DDS (1.15)", reliability=reliability,
                       durability="volatile", alive=alive)


def _js(k: int, names: list[str]) -> bytes:
    w = CdrWriter()
    w.header(1_700_000_000 * NS + k * 10_000_000, "base")
    w.strings(names)
    w.float64s([float(k)] * len(names))
    w.float64s([])
    w.float64s([])
    return w.payload()


def _router(ctx: DriverContext, **options: Any) -> tuple[TopicRouter, FakeTransport]:
    options.setdefault("patterns", ["/arm/*"])
    transport = FakeTransport()
    pipelines: dict[str, TopicPipeline] = {}
    router = TopicRouter(ctx, Ros2Options(**options), transport, HealthStream(ctx), pipelines)
    return router, transport


def _ticks(router: TopicRouter, start_ns: int, seconds: float) -> int:
    """Tick from ``start_ns`` (0: now) every status interval for ``seconds``; return the end.

    Time runs ahead of the monotonic clock the router stamps discoveries with, never behind.
    """
    now = start_ns or time.monotonic_ns()
    for _ in range(int(seconds / STATUS_INTERVAL_S) + 1):
        router.tick(now)
        now += int(STATUS_INTERVAL_S * NS)
    return now


def _gauge(ctx: DriverContext, metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def test_selection_qos_and_unmapped(ctx: DriverContext) -> None:
    router, transport = _router(ctx, patterns=["/arm/*"], exclude=["/arm/skip"])
    router.publication(_pub("/arm/measured_js", reliability="best_effort"))
    router.publication(_pub("/arm/skip"))
    router.publication(_pub("/other/x"))
    router.publication(_pub("/arm/odom", "nav_msgs/msg/Odometry"))
    assert set(transport.specs) == {"/arm/measured_js"}
    assert transport.specs["/arm/measured_js"].qos.reliability == "best_effort"
    assert transport.specs["/arm/measured_js"].max_hold_ns is not None
    assert "/arm/odom" in router.unmapped


def test_one_topic_refused_by_the_stream_contract_is_quarantined_alone(
        ctx: DriverContext, caplog: pytest.LogCaptureFixture) -> None:
    router, transport = _router(ctx)
    for topic in ("/arm/good_js", "/arm/bad_js", "/arm/m,e=a"):
        router.publication(_pub(topic))
    assert "/arm/m,e=a" in router.quarantined and "/arm/m,e=a" not in transport.specs
    for k in range(10):
        router.samples("/arm/good_js", RawBatch([_js(k, ["j1"])], 1_700_000_000 * NS))
        router.samples("/arm/bad_js", RawBatch([_js(k, ["a.b", "a_b"]), _js(k, ["a.b", "a_b"])],
                                                1_700_000_000 * NS))
    assert router.pipelines["/arm/good_js"].received == 10
    assert set(router.quarantined) == {"/arm/bad_js", "/arm/m,e=a"}
    m = ctx.metrics
    assert _gauge(ctx, m.malformed, ctx.device, "stream_refused") == 2
    assert _gauge(ctx, m.malformed, ctx.device, "topic_quarantined") == 19
    assert sum("/arm/bad_js" in r.getMessage() for r in caplog.records
               if r.levelno >= logging.WARNING) == 1
    router.tick(0)
    assert "/arm/bad_js quarantined" in (ctx.state.last_error or "")


def test_a_pipeline_bug_costs_one_topic(ctx: DriverContext,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    router, _ = _router(ctx)
    router.publication(_pub("/arm/a_js"))
    router.publication(_pub("/arm/b_js"))

    def broken(*_args: Any, **_kw: Any) -> int:
        raise IndexError("a decoder bug")

    monkeypatch.setattr(router.pipelines["/arm/a_js"], "ingest", broken)
    router.samples("/arm/a_js", RawBatch([_js(0, ["j1"])], 1_700_000_000 * NS))
    router.samples("/arm/b_js", RawBatch([_js(0, ["j1"])], 1_700_000_000 * NS))
    assert router.quarantined["/arm/a_js"].startswith("topic_failed: IndexError")
    assert router.pipelines["/arm/b_js"].received == 1


def test_reader_refused_by_the_middleware_is_quarantined(ctx: DriverContext) -> None:
    router, transport = _router(ctx)
    transport.refuse.add("/arm/refused_js")
    router.publication(_pub("/arm/refused_js"))
    router.publication(_pub("/arm/fine_js"))
    assert router.quarantined["/arm/refused_js"].startswith("reader_refused")
    assert "/arm/fine_js" in transport.specs


def test_unmatched_publication_is_warned_once_counted_and_degrades(
        ctx: DriverContext, caplog: pytest.LogCaptureFixture) -> None:
    router, transport = _router(ctx, unmatched_after_s=2.0)
    router.tick(0)
    router.publication(_pub("/arm/measured_js", key="writer-1"))
    transport.status["/arm/measured_js"] = ReaderStatus(0, 0, matched_keys=frozenset())
    now = _ticks(router, 0, 1.0)
    metric = ctx.metrics.unmatched_publications
    assert _gauge(ctx, metric, ctx.device, "/arm/measured_js") == 0  # not yet: 2 s grace
    now = _ticks(router, now, 3.0)
    assert _gauge(ctx, metric, ctx.device, "/arm/measured_js") == 1
    warnings = [r.getMessage() for r in caplog.records if "did not match" in r.getMessage()]
    assert len(warnings) == 1
    assert "eProsima Fast DDS (1.15)" in warnings[0] and "likely reason: type" in warnings[0]
    assert "/arm/measured_js: 1 publication(s) unmatched" in (ctx.state.last_error or "")
    transport.status["/arm/measured_js"] = ReaderStatus(
        1, 1, matched_keys=frozenset({"writer-1"}))
    _ticks(router, now, 1.0)
    assert _gauge(ctx, metric, ctx.device, "/arm/measured_js") == 0
    assert ctx.state.last_error is None and ctx.state.connected


def test_unmatched_reasons_qos_and_type_conflict(ctx: DriverContext,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    explicit = TopicOptions(name="/arm/measured_cp", type="geometry_msgs/msg/PoseStamped")
    router, transport = _router(ctx, topics=[explicit], unmatched_after_s=0.5,
                                match_offered_reliability=False)
    router.tick(0)
    router.publication(_pub("/arm/measured_js", reliability="best_effort"))
    router.publication(_pub("/arm/measured_cp", "geometry_msgs/msg/TransformStamped"))
    transport.status["/arm/measured_js"] = ReaderStatus(
        0, 0, matched_keys=frozenset(), incompatible_qos=3, incompatible_policy="reliability")
    _ticks(router, 0, 2.0)
    error = ctx.state.last_error or ""
    assert "/arm/measured_js: 1 publication(s) unmatched" in error
    assert "/arm/measured_cp: 1 publication(s) unmatched" in error
    assert set(router.watch.unmatched) == {"/arm/measured_js", "/arm/measured_cp"}
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "likely reason: QoS: reliability incompatible (offered best_effort/volatile" in logged
    assert "likely reason: published as geometry_msgs/msg/TransformStamped, configured as " \
        "geometry_msgs/msg/PoseStamped" in logged


def test_count_only_status_still_finds_the_unmatched(ctx: DriverContext) -> None:
    router, transport = _router(ctx, unmatched_after_s=0.5)
    router.tick(0)
    router.publication(_pub("/arm/measured_js", key="w1"))
    router.publication(_pub("/arm/measured_js", key="w2"))
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1)  # no keys: counts only
    _ticks(router, 0, 2.0)
    assert _gauge(ctx, ctx.metrics.unmatched_publications, ctx.device, "/arm/measured_js") == 2
    router.publication(_pub("/arm/measured_js", key="w2", alive=False))
    _ticks(router, time.monotonic_ns() + 3 * NS, 1.0)
    assert _gauge(ctx, ctx.metrics.unmatched_publications, ctx.device, "/arm/measured_js") == 0


def test_middleware_loss_is_counted_as_a_gap(ctx: DriverContext) -> None:
    router, transport = _router(ctx, default_rate_hz=100.0)
    router.tick(0)
    router.publication(_pub("/arm/measured_js"))
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1, lost=0, rejected=0)
    now = _ticks(router, 0, 0.5)
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1, lost=12, rejected=3)
    _ticks(router, now, 0.5)
    m = ctx.metrics
    assert _gauge(ctx, m.middleware_lost, ctx.device, "/arm/measured_js", "lost") == 12
    assert _gauge(ctx, m.middleware_lost, ctx.device, "/arm/measured_js", "rejected") == 3
    assert _gauge(ctx, m.gap_seconds, ctx.device) == pytest.approx(0.15)
    health = router.health.ring.snapshot()
    assert health is not None and any("lost 12 samples" in t for t in health.text or ())


def test_explicit_topic_that_never_delivered_is_visible(ctx: DriverContext) -> None:
    topics = [TopicOptions(name="/arm/measured_js", type=JS, rate_hz=100),
              TopicOptions(name="/arm/operating_state", type="crtk_msgs/msg/OperatingState")]
    router, transport = _router(ctx, topics=topics, unmatched_after_s=1.0)
    router.tick(0)
    assert set(transport.specs) == {"/arm/measured_js", "/arm/operating_state"}
    now = _ticks(router, 0, 2.0)
    m = ctx.metrics.topic_silent
    assert _gauge(ctx, m, ctx.device, "/arm/measured_js") == 1
    assert _gauge(ctx, m, ctx.device, "/arm/operating_state") == 1
    error = ctx.state.last_error or ""
    assert "/arm/measured_js: no sample yet" in error
    assert "operating_state" not in error  # events may be rare: visible, not degrading
    router.samples("/arm/measured_js", RawBatch([_js(0, ["j1"])], 1_700_000_000 * NS))
    _ticks(router, now, 1.0)
    assert _gauge(ctx, m, ctx.device, "/arm/measured_js") == 0
    assert ctx.state.last_error is None


def test_reader_spec_of_event_topics_is_urgent(ctx: DriverContext) -> None:
    router, transport = _router(ctx, topics=[TopicOptions(
        name="/arm/operating_state", type="crtk_msgs/msg/OperatingState",
        qos=QosOptions(durability="transient_local", depth=1))])
    router.tick(0)
    spec = transport.specs["/arm/operating_state"]
    assert spec.urgent and spec.qos.durability == "transient_local"


def test_reader_history_full_is_reported(ctx: DriverContext) -> None:
    router, transport = _router(ctx)
    router.tick(0)
    router.publication(_pub("/arm/measured_js"))
    now = _ticks(router, 0, 0.5)
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1, history_full=2)
    _ticks(router, now, 0.5)
    m = ctx.metrics
    assert _gauge(ctx, m.middleware_lost, ctx.device, "/arm/measured_js",
                  "reader_history_full") == 2
    health = router.health.ring.snapshot()
    assert health is not None and any("history full" in t for t in health.text or ())


def test_a_new_session_clears_the_last_sessions_error(ctx: DriverContext) -> None:
    router, _ = _router(ctx)
    router.tick(0)
    _ticks(router, 0, 0.5)
    ctx.set_error("DeviceError: DDS session failed")  # what run() records when one ends
    router.reset()
    _ticks(router, 0, 0.5)
    assert ctx.state.last_error is None


def _feed(router: TopicRouter, ks: range | list[int]) -> None:
    for start in range(0, len(ks), 8):
        router.samples("/arm/measured_js", RawBatch([_js(k, ["j1"]) for k in ks[start:start + 8]],
                                                    1_700_000_000 * NS))


def _stamp_gap(ctx: DriverContext) -> float:
    return _gauge(ctx, ctx.metrics.middleware_lost, ctx.device, "/arm/measured_js", "stamp_gap")


def test_a_long_gap_after_the_drivers_own_stall_is_counted(ctx: DriverContext) -> None:
    router, _ = _router(ctx, default_rate_hz=100.0)  # 10 ms period, 100 ms stale limit
    router.tick(0)
    router.publication(_pub("/arm/measured_js"))
    _feed(router, range(60))
    router.tick(time.monotonic_ns() - 10 * NS)  # the last housekeeping was long ago: a stall
    _feed(router, [109, 110])  # 500 ms later on the grid: 49 overwritten before we took them
    _ticks(router, 0, 0.5)
    assert _stamp_gap(ctx) == 49


def test_a_long_gap_the_driver_watched_is_a_silence(ctx: DriverContext) -> None:
    router, _ = _router(ctx, default_rate_hz=100.0)
    router.tick(0)
    router.publication(_pub("/arm/measured_js"))
    _feed(router, range(60))
    router.tick(time.monotonic_ns())  # the driver is running: a paused publisher
    _feed(router, [109, 110])
    _ticks(router, 0, 0.5)
    assert _stamp_gap(ctx) == 0


def test_writer_sequence_numbers_replace_the_stamp_estimate(ctx: DriverContext) -> None:
    router, transport = _router(ctx, default_rate_hz=100.0)
    router.tick(0)
    router.publication(_pub("/arm/measured_js"))
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1, exact=True)
    now = _ticks(router, 0, 0.5)
    _feed(router, [*range(40), 43, 44])  # 2 missing by the stamps ...
    transport.status["/arm/measured_js"] = ReaderStatus(1, 1, seq_lost=2, exact=True)
    _ticks(router, now, 0.5)  # ... and by the sequence numbers: counted once, as seq_gap
    m = ctx.metrics
    assert _gauge(ctx, m.middleware_lost, ctx.device, "/arm/measured_js", "seq_gap") == 2
    assert _stamp_gap(ctx) == 0
    health = router.health.ring.snapshot()
    assert health is not None and any("sequence numbers" in t for t in health.text or ())
