"""A dVRK-like surgical robot that publishes CRTK topics with ROS 2 conventions.

The simulator is the device: it owns a participant (Cyclone DDS, its own IdlStruct types)
or a real rclpy node (the system's RMW, rclpy's own message types) and publishes, per arm,

    /<arm>/measured_js, setpoint_js, jaw/measured_js   sensor_msgs/JointState
    /<arm>/measured_cp, setpoint_cp                    geometry_msgs/TransformStamped
    /<arm>/measured_cv                                 geometry_msgs/TwistStamped
    /<arm>/body/measured_cf                            geometry_msgs/WrenchStamped
    /<arm>/operating_state                             crtk_msgs/OperatingState (on change)
    /<arm>/error, warning, status                      std_msgs/String (on events)

Header stamps are exact: sample k of every sampled topic is stamped start + k / rate.
Faults are scripted through methods (see :mod:`simulators.surgical_robot.faults`); every
message written is counted per topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulators.surgical_robot import arms, dds
from simulators.surgical_robot.arms import ArmModel, FloatArray
from simulators.surgical_robot.faults import FaultScript
from simulators.surgical_robot.topics import (
    EVENT_TOPICS,
    SAMPLED_TOPICS,
    TopicPublisher,
    TopicSpec,
    arm_topics,
)

log = logging.getLogger("medgw.sim.robot")
NS = 1_000_000_000

__all__ = ["EVENT_TOPICS", "SAMPLED_TOPICS", "RobotSimulator", "SimConfig"]


def _own_model(model: type[BaseModel], value: Any) -> Any:
    """Accept another library's options object with the same fields (e.g. a driver's QoS)."""
    if isinstance(value, BaseModel) and not isinstance(value, model):
        return value.model_dump(include=set(model.model_fields))
    return value


class SimConfig(BaseModel):
    """Simulator settings."""

    model_config = ConfigDict(extra="forbid")

    arms: list[str] = Field(default_factory=lambda: ["PSM1", "PSM2", "PSM3", "ECM"])
    rate_hz: float = Field(default=100.0, gt=0, le=1000)
    domain_id: int = Field(default=0, ge=0, le=dds.MAX_DOMAIN_ID)
    transport: Literal["cyclonedds", "rclpy"] = Field(
        default="cyclonedds", description="cyclonedds (own IdlStructs) or rclpy (system RMW)")
    network: dds.NetworkOptions = Field(
        default_factory=dds.NetworkOptions,
        description="Cyclone DDS only (rclpy uses the RMW's own configuration)")
    topics: list[str] | None = Field(default=None, description="sampled suffixes; None = all")
    events: bool = True
    max_samples: int | None = Field(default=None, ge=1, description="stop after N per topic")
    cycle_s: float = Field(default=60.0, gt=0, description="length of one procedure cycle")
    tick_ms: float = Field(default=5.0, gt=0)
    qos: dds.QosOptions = Field(default_factory=dds.QosOptions)
    node_name: str = Field(default="robot_sim", description="rclpy node name")

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(SAMPLED_TOPICS))
            if unknown:
                raise ValueError(f"unknown topics {unknown}; known: {sorted(SAMPLED_TOPICS)}")
        return value

    @field_validator("qos", mode="before")
    @classmethod
    def _qos(cls, value: Any) -> Any:
        return _own_model(dds.QosOptions, value)

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: Any) -> Any:
        return _own_model(dds.NetworkOptions, value)


@dataclass
class _TopicWriter:
    spec: TopicSpec
    published: int = 0
    stalled: bool = False

    @property
    def topic(self) -> str:
        return self.spec.topic


@dataclass
class _ArmState:
    model: ArmModel
    state: str = "ENABLED"
    homed: bool = True
    busy: bool = False
    frozen_at: float | None = None  # sim time at which motion froze (fault, e-stop)
    limit: dict[int, tuple[float, float]] = field(default_factory=dict)  # joint -> (value, until)
    phase: str = ""
    tool: str = ""
    writers: list[_TopicWriter] = field(default_factory=list)  # its sampled topics


def make_publisher(config: SimConfig, specs: list[TopicSpec]) -> TopicPublisher:
    """Return the transport of ``config`` (rclpy imported only when asked for)."""
    if config.transport == "rclpy":
        from simulators.surgical_robot.rclpy_node import RclpyPublisher

        return RclpyPublisher(config.domain_id, specs, config.qos, config.node_name)
    from simulators.surgical_robot.cyclone import CyclonePublisher

    return CyclonePublisher(config.domain_id, specs, config.network, config.qos)


class RobotSimulator(FaultScript):
    """Publishes one robot's arms; thread-safe fault-scripting API for tests."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._up = False
        self.arms = [_ArmState(arms.arm_model(name, i)) for i, name in enumerate(self.config.arms)]
        self.writers: dict[str, _TopicWriter] = {}
        self.events: list[tuple[str, str]] = []  # (topic, text) of every event published
        self.emitted = 0  # sample index reached by the publishing loop
        self.restarts = 0
        self._start_ns = 0
        self._start_mono = 0.0
        self.clock: Callable[[], float] = time.monotonic  # the sample clock (tests drive it)
        self._build_writers()
        self.publisher = make_publisher(self.config, [w.spec for w in self.writers.values()])

    def _build_writers(self) -> None:
        suffixes = self.config.topics if self.config.topics is not None else list(SAMPLED_TOPICS)
        for arm in self.arms:
            for spec in arm_topics(arm.model, suffixes, self.config.events):
                w = self.writers[spec.topic] = _TopicWriter(spec)
                if spec.sampled:
                    arm.writers.append(w)

    def topics(self) -> list[str]:
        """Return every ROS topic this simulator publishes."""
        return list(self.writers)

    def sampled_topics(self) -> list[str]:
        """Return the periodic topics."""
        return [t for t, w in self.writers.items() if w.spec.sampled]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RobotSimulator:
        """Open the participant and writers and start publishing in a thread."""
        with self._lock:
            self._open()
            self._start_ns = time.time_ns()
            self._start_mono = self.clock()
        self._thread = threading.Thread(target=self._loop, name="robot-sim", daemon=True)
        self._thread.start()
        return self

    def open(self) -> RobotSimulator:
        """Open participant and writers without publishing yet (call :meth:`start` later)."""
        with self._lock:
            self._open()
        return self

    def stop(self) -> None:
        """Stop publishing and delete the participant (or node)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._close()

    def __enter__(self) -> RobotSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> None:
        if not self._up:
            self.publisher.open()
            self._up = True

    def _close(self, ack_timeout_s: float = 1.0) -> None:
        if self._up:
            self._up = False
            self.publisher.close(ack_timeout_s)

    def wait_for_subscribers(self, timeout_s: float = 10.0, topics: list[str] | None = None,
                             count: int = 1) -> bool:
        """Wait until every (given) topic has ``count`` matched readers; False on timeout."""
        names = topics if topics is not None else list(self.writers)

        def matched() -> bool:
            with self._lock:
                return self._up and all(
                    self.publisher.matched(self.writers[t].spec) >= count for t in names)

        return dds.wait_until(matched, timeout_s)

    def published(self, topic: str | None = None) -> int:
        """Return the messages written on ``topic`` (or on all topics)."""
        with self._lock:
            if topic is not None:
                return self.writers[topic].published
            return sum(w.published for w in self.writers.values())

    def start_ns(self) -> int:
        """Return the wall-clock stamp of sample 0."""
        return self._start_ns

    @property
    def period_ns(self) -> int:
        """Return the sample period; sample k is stamped ``start_ns() + k * period_ns``."""
        return round(NS / self.config.rate_hz)

    # -- publishing loop -------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            with self._lock:
                self._announce_all()
            while not self._stop.is_set():
                with self._lock:
                    self._tick()
                if self._done():
                    break
                self._stop.wait(self.config.tick_ms / 1000.0)
        except Exception:  # the thread must not die silently
            log.exception("robot simulator: publishing loop failed; publishing stopped")

    def _done(self) -> bool:
        limit = self.config.max_samples
        return limit is not None and self.emitted >= limit

    def _tick(self) -> None:
        rate = self.config.rate_hz
        due = int((self.clock() - self._start_mono) * rate) + 1
        if self.config.max_samples is not None:
            due = min(due, self.config.max_samples)
        if due <= self.emitted:
            return
        k = np.arange(self.emitted, due, dtype=np.int64)
        self.emitted = due
        t = k / rate
        stamps = self._start_ns + k * self.period_ns
        for arm in self.arms:
            self._arm_events(arm, float(t[-1]))
            if not self._up:
                continue
            live = [w for w in arm.writers if not w.stalled]
            if not live:
                continue
            values = self._arm_values(arm, t)
            for w in live:
                w.published += self.publisher.write_samples(w.spec, stamps, values[w.spec.suffix])

    def _motion_time(self, arm: _ArmState, t: FloatArray) -> FloatArray:
        return t if arm.frozen_at is None else np.full_like(t, arm.frozen_at)

    def _arm_values(self, arm: _ArmState, t: FloatArray) -> dict[str, tuple[FloatArray, ...]]:
        """Return the value columns of every sampled topic of ``arm`` at times ``t``."""
        m, cyc = arm.model, self.config.cycle_s
        tm = self._motion_time(arm, t)
        still = arm.frozen_at is not None
        q = self._apply_limits(arm, arms.joint_positions(m, tm, cyc), float(t[-1]))
        qd = np.zeros_like(q) if still else arms.joint_velocities(m, tm, cyc)
        period = 1.0 / self.config.rate_hz
        q_set = q if still else self._apply_limits(
            arm, arms.joint_positions(m, tm + period, cyc), float(t[-1]))
        out: dict[str, tuple[FloatArray, ...]] = {
            "measured_js": (q, qd, arms.joint_efforts(m, q, qd)),
            "setpoint_js": (q_set, qd, np.zeros_like(q)),
            "measured_cp": (arms.forward_kinematics(m, q),),
            "setpoint_cp": (arms.forward_kinematics(m, q_set),),
            "measured_cv": (np.zeros((t.shape[0], 6)) if still else arms.tip_twist(m, tm, cyc),),
            "body/measured_cf": (arms.tip_wrench(m, tm, cyc),),
        }
        if m.jaw:
            jaw = arms.jaw_positions(m, tm, cyc)
            jaw_v = np.zeros_like(jaw) if still else (
                arms.jaw_positions(m, tm + 1e-4, cyc) - arms.jaw_positions(m, tm - 1e-4, cyc)
            ) / 2e-4
            out["jaw/measured_js"] = (jaw, jaw_v, 0.2 * jaw)
        return out

    def _apply_limits(self, arm: _ArmState, q: FloatArray, now: float) -> FloatArray:
        for joint, (value, until) in list(arm.limit.items()):
            if now <= until:
                q[:, joint] = value
            else:
                del arm.limit[joint]
        return q

    def _arm_events(self, arm: _ArmState, t: float) -> None:
        phase, _ = arms.phase_at(t, self.config.cycle_s, arm.model)
        if phase != arm.phase:
            arm.phase = phase
            arm.busy = phase == "tool_change"
            self._status(arm, f"{arm.model.name}: procedure phase {phase}")
            self._publish_state(arm)
        if arm.model.jaw:
            tool = arms.tool_at(t, self.config.cycle_s, arm.model)
            if tool != arm.tool:
                old, arm.tool = arm.tool, tool
                if old:
                    self._status(arm, f"{arm.model.name}: tool change {old} -> {tool}")

    # -- events ----------------------------------------------------------------------------

    def _event_writer(self, arm: _ArmState, suffix: str) -> _TopicWriter | None:
        w = self.writers.get(f"/{arm.model.name}/{suffix}")
        return None if w is None or not self._up or w.stalled else w

    def _status(self, arm: _ArmState, text: str, suffix: str = "status") -> None:
        w = self._event_writer(arm, suffix)
        if w is not None:
            self.publisher.write_text(w.spec, text)
            w.published += 1
            self.events.append((w.topic, text))

    def _publish_state(self, arm: _ArmState) -> None:
        w = self._event_writer(arm, "operating_state")
        if w is not None:
            self.publisher.write_state(w.spec, time.time_ns(), arm.state, arm.homed, arm.busy)
            w.published += 1
            self.events.append((w.topic, arm.state))

    def _announce_all(self) -> None:
        for arm in self.arms:
            self._publish_state(arm)

    def _arm(self, name: str) -> _ArmState:
        for arm in self.arms:
            if arm.model.name == name:
                return arm
        raise KeyError(f"no arm {name!r}; arms: {[a.model.name for a in self.arms]}")

    def _sim_time(self) -> float:
        return self.emitted / self.config.rate_hz
