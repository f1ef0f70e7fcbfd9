"""Open-RMF over real Cyclone DDS: a fleet adapter restart (seq numbering resets) and a robot
whose name the gateway refuses, each with exact counts."""

from __future__ import annotations

from typing import Any

from drivers.ros2 import dds
from gateway.driver import DriverContext
from simulators.rmf_fleet import RmfSimConfig, RmfSimulator, fleet

TOPICS = [{"name": "/fleet_states", "type": "rmf_fleet_msgs/msg/FleetState", "rate_hz": 50}]


def _sim(domain_id: int, **config: Any) -> RmfSimulator:
    return RmfSimulator(RmfSimConfig.model_validate(dict(
        domain_id=domain_id, rate_hz=50.0, network={"config_xml": dds.loopback_config()},
        doors=[], **config))).open()


def _count(ctx: DriverContext, stream: str) -> int:
    try:
        batch = ctx.store.ring(f"{ctx.site}/{ctx.device}/{stream}").snapshot()
    except KeyError:
        return 0
    return 0 if batch is None else len(batch.timestamps_ns)


def _texts(ctx: DriverContext, stream: str) -> tuple[str, ...]:
    batch = ctx.store.ring(f"{ctx.site}/{ctx.device}/{stream}").snapshot()
    return () if batch is None or batch.text is None else batch.text


def test_fleet_adapter_restart_is_a_reset_not_a_gap(domain_id: int, ctx: DriverContext,
                                                    start_driver: Any, helpers: Any) -> None:
    start_driver(domain_id=domain_id, topics=TOPICS)
    robots = [r.name for r in fleet.default_robots()]
    for run, drops in enumerate(([], [5])):
        sim = _sim(domain_id, ticks=20, drop_ticks=drops, faults=[])
        try:
            assert sim.wait_for_subscribers(20.0, topics=["/fleet_states"]), "not subscribed"
            sim.start()
            assert sim.done.wait(30)
            want = 20 + (20 - len(drops)) * run
            helpers.wait_for(lambda w=want: all(
                _count(ctx, f"fleet_states.tug.{r}") == w for r in robots), 20,
                f"{want} states per robot")
        finally:
            sim.stop()
    seq0 = {r.name: r.seq0 for r in fleet.default_robots()}
    registry = ctx.metrics.registry
    for r in robots:
        assert _texts(ctx, f"fleet_states.tug.{r}.source_gap") == (
            f"{r}: seq {seq0[r] + 5}..{seq0[r] + 5}: 1 lost at the source",)
        resets = [t for t in _texts(ctx, f"fleet_states.tug.{r}.events") if "restarted" in t]
        assert resets == [f"{r}: seq {seq0[r] + 19} -> {seq0[r]}: numbering restarted"]
        labels = {"device": ctx.device, "vehicle": f"tug/{r}"}
        assert registry.get_sample_value("medgw_source_gap_total", labels) == 1
        assert registry.get_sample_value("medgw_source_resets_total", labels) == 1


def test_a_refused_robot_name_leaves_the_others_flowing(domain_id: int, ctx: DriverContext,
                                                        start_driver: Any,
                                                        helpers: Any) -> None:
    start_driver(domain_id=domain_id, topics=TOPICS)
    plans = [fleet.RobotPlan(name="tug1", route=["ED", "lab"]),
             fleet.RobotPlan(name="tug,2", route=["lab", "ED"])]
    sim = _sim(domain_id, ticks=30, drop_ticks=[], faults=[], robots=plans)
    try:
        assert sim.wait_for_subscribers(20.0, topics=["/fleet_states"]), "not subscribed"
        sim.start()
        assert sim.done.wait(30)
        helpers.wait_for(lambda: _count(ctx, "fleet_states.tug.tug1") == 30, 20,
                         "30 states of tug1")
    finally:
        sim.stop()
    m = ctx.metrics
    assert m.malformed.labels(ctx.device, "bad_name")._value.get() == 1
    assert m.malformed.labels(ctx.device, "robot_refused")._value.get() == 30
    assert not any("tug,2" in r.stream.stream for r in ctx.store.rings())
    helpers.wait_for(lambda: "robot 'tug/tug,2' refused" in (ctx.state.last_error or ""), 5,
                     "the refusal in the device error")


def test_rclpy_transport_refuses_the_rmf_topic_naming_the_package(
        domain_id: int, ctx: DriverContext, start_driver: Any, helpers: Any,
        monkeypatch: Any) -> None:
    """rmf_fleet_msgs has no Python package: the rclpy transport quarantines that topic
    alone, and the device error says what to build (or to use transport: cyclonedds)."""
    import pytest

    pytest.importorskip("rclpy")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # never off-box
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    start_driver(domain_id=domain_id, transport="rclpy", topics=TOPICS)
    helpers.wait_for(lambda: "/fleet_states quarantined" in (ctx.state.last_error or ""), 20,
                     "the refused topic in the device error")
    error = ctx.state.last_error or ""
    assert "no type support for rmf_fleet_msgs/msg/FleetState" in error
    assert "build the ROS package rmf_fleet_msgs" in error and "transport: cyclonedds" in error
    assert ctx.metrics.malformed.labels(ctx.device, "reader_refused")._value.get() == 1
