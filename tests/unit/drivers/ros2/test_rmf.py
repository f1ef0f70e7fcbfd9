"""Open-RMF through the ros2 driver: fan-out per robot, seq source gaps, events, refusals."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from drivers.ros2 import msgs
from drivers.ros2.mapping import TYPE_TABLE
from drivers.ros2.options import Ros2Options, topic_settings
from drivers.ros2.pipeline import HEALTH_STREAM, HealthStream
from drivers.ros2.rmf_pipeline import RmfPipeline
from drivers.ros2.rmf_streams import ROBOT_FIELDS
from drivers.ros2.router import TopicRouter
from drivers.ros2.transport import Publication, RawBatch
from drivers.vda5050.fleet import FleetMetrics
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics, shared_counter
from gateway.model import Quality
from gateway.ring import RingStore

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
FLEET_TYPE = "rmf_fleet_msgs/msg/FleetState"


def robot(name: str, seq: int, mode: int = 2, k: int = 0, level: str = "L1",
          task: str = "t1", stamp_ns: int | None = None) -> msgs.RobotState:
    """A RobotState whose values follow from k."""
    ts = T0 + k * NS // 10 if stamp_ns is None else stamp_ns
    loc = msgs.Location(msgs.Time(ts // NS, ts % NS), 1.5 + k, 2.25, 0.5, True, 1.25, level, 3)
    return msgs.RobotState(name, "tug", task, seq, msgs.RobotMode(mode, 7, ""), 80.0 - k, loc,
                           [msgs.Location(), msgs.Location()])


def fleet(*robots: msgs.RobotState, name: str = "tug") -> bytes:
    """A serialized FleetState."""
    return msgs.FleetState(name, list(robots)).serialize()


def rmf_pipeline(ctx: DriverContext, ros_type: str = FLEET_TYPE, topic: str = "/fleet_states",
                 **options: object) -> RmfPipeline:
    """An RmfPipeline for ``topic`` with the driver's defaults."""
    opts = Ros2Options.model_validate({"patterns": ["/*"], **options})
    return RmfPipeline(ctx, topic_settings(opts, topic, ros_type), TYPE_TABLE[ros_type],
                       HealthStream(ctx), max_entities=opts.max_robots,
                       max_source_gap=opts.max_source_gap)


def snapshot(ctx: DriverContext, stream: str) -> Any:
    """The ring snapshot of one of the device's streams."""
    return ctx.store.ring(f"{ctx.site}/{ctx.device}/{stream}").snapshot()


def test_fleet_state_fans_out_one_stream_per_robot(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    payloads = [fleet(robot("tug1", k, k=k), robot("tug2", 100 + k, k=k)) for k in range(5)]
    assert p.ingest(payloads, T0 + 5 * NS) == 10
    for name, seq0 in (("tug1", 0), ("tug2", 100)):
        batch = snapshot(ctx, f"fleet_states.tug.{name}")
        assert batch.values.shape == (5, len(ROBOT_FIELDS))
        assert batch.timestamps_ns.tolist() == [T0 + k * NS // 10 for k in range(5)]
        row = dict(zip(ROBOT_FIELDS, batch.values[2].tolist(), strict=True))
        assert row == {"x": 3.5, "y": 2.25, "yaw": 0.5, "level": 0.0, "waypoint": 3.0,
                       "battery": 78.0, "mode": 2.0, "mode_request_id": 7.0,
                       "path_length": 2.0, "source_seq": seq0 + 2.0, "obey_speed_limit": 1.0,
                       "speed_limit": 1.25}
        assert (batch.quality == Quality.GOOD).all()
        spec = ctx.store.ring(f"site-a/robot-1/fleet_states.tug.{name}").stream
        assert spec.measurement == "rmf_robot"
    assert p.received == 5 and p.stats.samples == 10


def test_seq_holes_are_source_gaps_resets_and_duplicates_are_not(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    seqs = [0, 1, 2, 5, 6, 6, 0, 1]
    p.ingest([fleet(robot("tug1", s, k=k)) for k, s in enumerate(seqs)], T0)
    gaps = snapshot(ctx, "fleet_states.tug.tug1.source_gap")
    assert gaps.values.tolist() == [[3.0, 4.0, 2.0]]
    assert gaps.text == ("tug1: seq 3..4: 2 lost at the source",)
    assert p.stats.duplicates == 1 and p.stats.resets == 1 and p.stats.missing == 2
    registry = ctx.metrics.registry
    assert registry.get_sample_value("medgw_source_gap_total",
                                     {"device": "robot-1", "vehicle": "tug/tug1"}) == 2
    assert registry.get_sample_value("medgw_source_resets_total",
                                     {"device": "robot-1", "vehicle": "tug/tug1"}) == 1
    events = snapshot(ctx, "fleet_states.tug.tug1.events")
    assert "tug1: seq 6 -> 0: numbering restarted" in events.text
    assert snapshot(ctx, "fleet_states.tug.tug1").values.shape[0] == 7  # the duplicate dropped
    p.rebase()  # medgw's own session came back: the next seq starts a new run
    p.ingest([fleet(robot("tug1", 40, k=9))], T0)
    assert snapshot(ctx, "fleet_states.tug.tug1.source_gap").values.shape[0] == 1


def test_mode_changes_emergency_and_adapter_error_are_events(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    modes = [0, 2, 5, 5, 0, 8, 2]
    p.ingest([fleet(robot("tug1", k, mode=m, k=k)) for k, m in enumerate(modes)], T0)
    events = snapshot(ctx, "fleet_states.tug.tug1.events")
    assert events.text == ("tug1: mode IDLE (first state)", "tug1: mode IDLE -> MOVING",
                           "tug1: mode MOVING -> EMERGENCY", "tug1: mode EMERGENCY -> IDLE",
                           "tug1: mode IDLE -> ADAPTER_ERROR",
                           "tug1: mode ADAPTER_ERROR -> MOVING")
    assert events.values[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 2.0, 0.0]  # code
    assert events.values[:, 1:].tolist() == [[0, -1], [2, 0], [5, 2], [0, 5], [8, 0], [2, 8]]
    spec = ctx.store.ring("site-a/robot-1/fleet_states.tug.tug1.events").stream
    assert spec.is_event and ("EMERGENCY", 1.0) in spec.labels


def test_level_and_task_changes(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    p.ingest([fleet(robot("tug1", 0, level="L1", task="a")),
              fleet(robot("tug1", 1, k=1, level="L3", task="b"))], T0)
    assert snapshot(ctx, "fleet_states.tug.tug1.events").text[1:] == (
        "tug1: level L1 -> L3", "tug1: task a -> b")
    assert snapshot(ctx, "fleet_states.tug.tug1").values[:, 3].tolist() == [0.0, 1.0]


def test_bad_robot_name_is_refused_alone(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    for k in range(3):
        p.ingest([fleet(robot("tug 1", k, k=k), robot("tug2", k, k=k))], T0)
    assert snapshot(ctx, "fleet_states.tug.tug2").values.shape[0] == 3
    m = ctx.metrics
    assert m.malformed.labels("robot-1", "bad_name")._value.get() == 1  # counted once
    assert m.malformed.labels("robot-1", "robot_refused")._value.get() == 3
    health = snapshot(ctx, HEALTH_STREAM)
    assert len(health.text) == 1 and "robot 'tug/tug 1' refused" in health.text[0]


def test_max_robots_caps_the_streams_with_a_log_line(ctx: DriverContext,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    p = rmf_pipeline(ctx, max_robots=2)
    with caplog.at_level(logging.WARNING):
        p.ingest([fleet(*(robot(f"tug{i}", 0) for i in range(4)))], T0)
        p.ingest([fleet(*(robot(f"tug{i}", 1, k=1) for i in range(4)))], T0)
    streams = {r.stream.stream for r in ctx.store.rings()}
    assert {"fleet_states.tug.tug0", "fleet_states.tug.tug1"} <= streams
    assert not any(s.startswith(("fleet_states.tug.tug2", "fleet_states.tug.tug3"))
                   for s in streams)
    assert ctx.metrics.malformed.labels("robot-1", "too_many_robots")._value.get() == 2
    lines = [r.getMessage() for r in caplog.records if "max_robots (2) reached" in
             r.getMessage()]
    assert len(lines) == 2  # once per refused robot, not per message


def test_one_robots_bad_stamp_drops_that_robot_only(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    bad = robot("tug1", 0)
    bad.location.t = msgs.Time(5, 2_000_000_000)
    assert p.ingest([fleet(bad, robot("tug2", 0))], T0) == 1
    assert ctx.metrics.malformed.labels("robot-1", "bad_stamp")._value.get() == 1
    assert p.received == 1 and p.quarantined == 0
    p.ingest([fleet(robot("tug1", 1, k=1))], T0)  # its seq was received: not a source gap
    assert snapshot(ctx, "fleet_states.tug.tug1").values.shape[0] == 1
    assert snapshot(ctx, "fleet_states.tug.tug1.source_gap") is None


def test_unset_stamp_uses_receive_time_uncertain(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    p.ingest([fleet(robot("tug1", 0, stamp_ns=0))], T0 + 123)
    batch = snapshot(ctx, "fleet_states.tug.tug1")
    assert batch.timestamps_ns.tolist() == [T0 + 123]
    assert batch.quality.tolist() == [Quality.UNCERTAIN]


def test_truncated_or_garbage_is_quarantined(ctx: DriverContext) -> None:
    p = rmf_pipeline(ctx)
    good = fleet(robot("tug1", 0))
    assert p.ingest([good[:40], b"\x00\x01\x00\x00junk", good], T0) == 1
    assert p.quarantined == 2 and p.received == 1
    assert ctx.metrics.malformed.labels("robot-1", "decode")._value.get() == 2


def test_doors_and_lifts_state_and_change_events(ctx: DriverContext) -> None:
    doors = rmf_pipeline(ctx, "rmf_door_msgs/msg/DoorState", "/door_states")
    door = [msgs.DoorState(msgs.Time(1_700_000_000 + k, 0), "lab_door", msgs.DoorMode(m))
            for k, m in enumerate([0, 0, 1, 2, 2, 0])]
    assert doors.ingest([d.serialize() for d in door], T0) == 6
    events = snapshot(ctx, "door_states.lab_door.events")
    assert events.text == ("lab_door: CLOSED (first state)", "lab_door: CLOSED -> MOVING",
                           "lab_door: MOVING -> OPEN", "lab_door: OPEN -> CLOSED")
    assert snapshot(ctx, "door_states.lab_door").values[:, 0].tolist() == [0, 0, 1, 2, 2, 0]
    lifts = rmf_pipeline(ctx, "rmf_lift_msgs/msg/LiftState", "/lift_states")
    states = [("L1", 2, 0), ("L1", 0, 1), ("L3", 2, 0)]
    payloads = [msgs.LiftState(msgs.Time(1_700_000_000 + k, 0), "lift_main", ["L1", "L3"],
                               floor, "L3", door_state, motion, [1, 2], 2, "").serialize()
                for k, (floor, door_state, motion) in enumerate(states)]
    assert lifts.ingest(payloads, T0) == 3
    assert snapshot(ctx, "lift_states.lift_main.events").text == (
        "lift_main: at L1, door OPEN, mode AGV (first state)", "lift_main: door OPEN -> CLOSED",
        "lift_main: motion STOPPED -> UP", "lift_main: floor L1 -> L3",
        "lift_main: door CLOSED -> OPEN", "lift_main: motion UP -> STOPPED")
    assert snapshot(ctx, "lift_states.lift_main").values[:, 0].tolist() == [0.0, 0.0, 1.0]


class _Transport:
    name = "fake"

    def run(self, sink: object, stop: object) -> None:
        """Unused."""

    def open_reader(self, spec: object) -> None:
        """Accept every reader."""

    def reader_status(self, topic: str) -> None:
        """No status."""

    def publications(self) -> list[Publication]:
        """None."""
        return []


def test_router_reads_rmf_types_through_the_fan_out_and_rebases(ctx: DriverContext) -> None:
    pipelines: dict[str, Any] = {}
    router = TopicRouter(ctx, Ros2Options(patterns=["/fleet_states"]), _Transport(),
                         HealthStream(ctx), pipelines)
    router.publication(Publication("/fleet_states", FLEET_TYPE, FLEET_TYPE, "k", "p"))
    assert isinstance(pipelines["/fleet_states"], RmfPipeline)
    router.samples("/fleet_states", RawBatch([fleet(robot("tug1", 0))], T0))
    router.reset()  # a new session: what it missed is medgw's gap, not the source's
    router.samples("/fleet_states", RawBatch([fleet(robot("tug1", 9, k=1))], T0))
    assert snapshot(ctx, "fleet_states.tug.tug1.source_gap") is None
    assert snapshot(ctx, "fleet_states.tug.tug1").values.shape[0] == 2


@pytest.mark.parametrize("vda_first", [True, False])
def test_source_gap_metric_shared_with_vda5050_in_either_order(vda_first: bool) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    ctx = DriverContext("s", "d", RingStore(64), metrics, logging.getLogger("t"))
    if vda_first:
        FleetMetrics(metrics.registry)
    rmf_pipeline(ctx)
    if not vda_first:
        FleetMetrics(metrics.registry)
    counter = shared_counter(metrics.registry, "medgw_source_gap", "", ("device", "vehicle"))
    counter.labels("d", "v").inc(2)
    assert metrics.registry.get_sample_value("medgw_source_gap_total",
                                             {"device": "d", "vehicle": "v"}) == 2
    with pytest.raises(ValueError, match="another type or labels"):
        shared_counter(metrics.registry, "medgw_source_gap", "", ("device",))


def test_rclpy_transport_refuses_rmf_types_naming_the_package() -> None:
    """No Python package of rmf_fleet_msgs on PyPI: the refusal says what to build."""
    pytest.importorskip("rclpy")
    from drivers.ros2.rclpy_support import message_type
    from drivers.ros2.transport import ReaderRefused

    for ros_type, pkg in ((FLEET_TYPE, "rmf_fleet_msgs"),
                          ("rmf_door_msgs/msg/DoorState", "rmf_door_msgs"),
                          ("rmf_lift_msgs/msg/LiftState", "rmf_lift_msgs")):
        with pytest.raises(ReaderRefused) as err:
            message_type(ros_type)
        text = str(err.value)
        assert f"no type support for {ros_type}" in text
        assert f"build the ROS package {pkg}" in text and "transport: cyclonedds" in text


def test_sample_rmf_config_loads() -> None:
    """drivers/ros2/sample-rmf.yaml (the README's snippet) is a valid gateway config."""
    from pathlib import Path

    from gateway.config import load_config

    path = Path(__file__).resolve().parents[4] / "drivers" / "ros2" / "sample-rmf.yaml"
    device = load_config(path).config.devices[0]
    options = Ros2Options.model_validate(device.options)
    assert [t.type for t in options.topics] == [FLEET_TYPE, "rmf_door_msgs/msg/DoorState",
                                               "rmf_lift_msgs/msg/LiftState"]
    assert options.transport == "cyclonedds" and options.max_robots == 64


def test_refused_robot_degrades_the_device_error(ctx: DriverContext) -> None:
    """A refused robot is listed in the device error (so /health says degraded)."""
    pipelines: dict[str, Any] = {}
    router = TopicRouter(ctx, Ros2Options(patterns=["/fleet_states"]), _Transport(),
                         HealthStream(ctx), pipelines)
    router.publication(Publication("/fleet_states", FLEET_TYPE, FLEET_TYPE, "k", "p"))
    router.samples("/fleet_states", RawBatch([fleet(robot("tug 1", 0), robot("tug2", 0))], T0))
    router.watch.refresh_error()
    error = ctx.state.last_error or ""
    assert error.startswith("/fleet_states: robot 'tug/tug 1' refused")
    assert snapshot(ctx, "fleet_states.tug.tug2").values.shape[0] == 1


@settings(max_examples=60, deadline=None, derandomize=True)
@given(steps=st.lists(st.integers(1, 6), min_size=1, max_size=40),
       seq0=st.integers(0, 2**40))
def test_property_every_hole_is_one_exact_source_gap(steps: list[int], seq0: int) -> None:
    """Increasing seq numbers with holes anywhere: each hole is one gap point, exactly."""
    ctx = DriverContext("s", "d", RingStore(4096), GatewayMetrics(), logging.getLogger("t"),
                        ring_capacity=4096)
    p = rmf_pipeline(ctx)
    seqs = [seq0]
    for step in steps:
        seqs.append(seqs[-1] + step)
    p.ingest([fleet(robot("tug1", s, k=k)) for k, s in enumerate(seqs)], T0)
    holes = [(a + 1, b - 1, b - a - 1) for a, b in itertools.pairwise(seqs) if b - a > 1]
    gaps = ctx.store.ring("s/d/fleet_states.tug.tug1.source_gap").snapshot()
    got = [] if gaps is None else [tuple(int(v) for v in row) for row in gaps.values]
    assert got == holes
    assert snapshot(ctx, "fleet_states.tug.tug1").values.shape[0] == len(seqs)
    assert p.stats.missing == sum(h[2] for h in holes) and p.stats.resets == 0
