"""A dVRK-like surgical robot that publishes CRTK topics over DDS with ROS 2 conventions.

The simulator is the device: it owns a participant and writers and publishes, per arm,

    /<arm>/measured_js, setpoint_js, jaw/measured_js   sensor_msgs/JointState
    /<arm>/measured_cp, setpoint_cp                    geometry_msgs/TransformStamped
    /<arm>/measured_cv                                 geometry_msgs/TwistStamped
    /<arm>/body/measured_cf                            geometry_msgs/WrenchStamped
    /<arm>/operating_state                             crtk_msgs/OperatingState (on change)
    /<arm>/error, warning, status                      std_msgs/String (on events)

Header stamps are exact: sample k of every sampled topic is stamped start + k / rate.
Faults are scripted through methods (fault, estop, joint_limit_warning, stall,
restart_publisher, inject_raw); every payload written is counted per topic.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.ros2 import dds
from drivers.ros2.msgs import dds_topic_name, idl_type
from simulators.surgical_robot import arms, encode
from simulators.surgical_robot.arms import ArmModel, FloatArray

log = logging.getLogger("medgw.sim.robot")
NS = 1_000_000_000

JS, TS = "sensor_msgs/msg/JointState", "geometry_msgs/msg/TransformStamped"
SAMPLED_TOPICS: dict[str, str] = {
    "measured_js": JS, "setpoint_js": JS, "jaw/measured_js": JS,
    "measured_cp": TS, "setpoint_cp": TS,
    "measured_cv": "geometry_msgs/msg/TwistStamped",
    "body/measured_cf": "geometry_msgs/msg/WrenchStamped",
}
"""Periodic topics of every arm (ECMs have no jaw), suffix -> ROS type."""
EVENT_TOPICS: dict[str, str] = {
    "operating_state": "crtk_msgs/msg/OperatingState", "error": "std_msgs/msg/String",
    "warning": "std_msgs/msg/String", "status": "std_msgs/msg/String",
}
"""Event topics of every arm, suffix -> ROS type."""


class SimConfig(BaseModel):
    """Simulator settings."""

    model_config = ConfigDict(extra="forbid")

    arms: list[str] = Field(default_factory=lambda: ["PSM1", "PSM2", "PSM3", "ECM"])
    rate_hz: float = Field(default=100.0, gt=0, le=1000)
    domain_id: int = Field(default=0, ge=0, le=dds.MAX_DOMAIN_ID)
    network: dds.NetworkOptions = Field(default_factory=dds.NetworkOptions)
    topics: list[str] | None = Field(default=None, description="sampled suffixes; None = all")
    events: bool = True
    max_samples: int | None = Field(default=None, ge=1, description="stop after N per topic")
    cycle_s: float = Field(default=60.0, gt=0, description="length of one procedure cycle")
    tick_ms: float = Field(default=5.0, gt=0)
    qos: dds.QosOptions = Field(default_factory=dds.QosOptions)

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(SAMPLED_TOPICS))
            if unknown:
                raise ValueError(f"unknown topics {unknown}; known: {sorted(SAMPLED_TOPICS)}")
        return value


@dataclass
class _TopicWriter:
    arm: ArmModel
    suffix: str
    ros_type: str
    topic: str  # ROS name
    encoder: encode.BatchEncoder | None
    writer: Any = None
    dds_topic: Any = None
    published: int = 0
    stalled: bool = False


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


class RobotSimulator:
    """Publishes one robot's arms; thread-safe fault-scripting API for tests."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._participant: Any = None
        self._up = False
        self.arms = [_ArmState(arms.arm_model(name, i)) for i, name in enumerate(self.config.arms)]
        self.writers: dict[str, _TopicWriter] = {}
        self.events: list[tuple[str, str]] = []  # (topic, text) of every event published
        self.emitted = 0  # sample index reached by the publishing loop
        self.restarts = 0
        self._start_ns = 0
        self._start_mono = 0.0
        self._build_writers()

    # -- topology --------------------------------------------------------------------------

    def _build_writers(self) -> None:
        suffixes = self.config.topics if self.config.topics is not None else list(SAMPLED_TOPICS)
        for arm in self.arms:
            model = arm.model
            for suffix in suffixes:
                if suffix.startswith("jaw/") and not model.jaw:
                    continue
                ros_type = SAMPLED_TOPICS[suffix]
                topic = f"/{model.name}/{suffix}"
                proto = self._prototype(model, suffix, ros_type)
                self.writers[topic] = _TopicWriter(model, suffix, ros_type, topic,
                                                   encode.BatchEncoder(ros_type, proto, topic))
            if self.config.events:
                for suffix, ros_type in EVENT_TOPICS.items():
                    topic = f"/{model.name}/{suffix}"
                    self.writers[topic] = _TopicWriter(model, suffix, ros_type, topic, None)

    @staticmethod
    def _prototype(model: ArmModel, suffix: str, ros_type: str) -> bytes:
        if ros_type == JS:
            names = ("jaw",) if suffix.startswith("jaw/") else model.joints
            zeros = np.zeros(len(names))
            return encode.joint_state(0, "", names, zeros, zeros, zeros)
        if ros_type == TS:
            return encode.transform_stamped(0, f"{model.name}_base", model.name, np.zeros(7))
        return encode.six_stamped(0, model.name, np.zeros(6))

    def topics(self) -> list[str]:
        """Return every ROS topic this simulator publishes."""
        return list(self.writers)

    def sampled_topics(self) -> list[str]:
        """Return the periodic topics."""
        return [t for t, w in self.writers.items() if w.encoder is not None]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RobotSimulator:
        """Open the participant and writers and start publishing in a thread."""
        with self._lock:
            self._open()
            self._start_ns = time.time_ns()
            self._start_mono = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="robot-sim", daemon=True)
        self._thread.start()
        return self

    def open(self) -> RobotSimulator:
        """Open participant and writers without publishing yet (call :meth:`start` later)."""
        with self._lock:
            self._open()
        return self

    def stop(self) -> None:
        """Stop publishing and delete the participant."""
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
        if self._up:
            return
        self._participant = dds.open_participant(self.config.domain_id, self.config.network)
        qos = dds.make_qos(self.config.qos)
        for w in self.writers.values():
            w.dds_topic = Topic(self._participant, dds_topic_name(w.topic), idl_type(w.ros_type),
                                qos=qos)
            w.writer = DataWriter(self._participant, w.dds_topic, qos=qos)
        self._up = True

    def _close(self, ack_timeout_s: float = 1.0) -> None:
        if not self._up:
            return
        self._up = False
        for w in self.writers.values():
            try:
                w.writer.wait_for_acks(int(ack_timeout_s * NS))
            except Exception as err:  # a writer without readers has nothing to ack
                log.debug("wait_for_acks on %s: %s", w.topic, err)
        entities = [w.writer for w in self.writers.values()]
        entities += [w.dds_topic for w in self.writers.values()]
        dds.delete_entities(*entities, self._participant)
        for w in self.writers.values():
            w.writer = w.dds_topic = None
        self._participant = None

    def wait_for_subscribers(self, timeout_s: float = 10.0, topics: list[str] | None = None,
                             count: int = 1) -> bool:
        """Wait until every (given) topic has ``count`` matched readers; False on timeout."""
        names = topics if topics is not None else list(self.writers)

        def matched() -> bool:
            with self._lock:
                if not self._up:
                    return False
                return all(len(self.writers[t].writer.get_matched_subscriptions()) >= count
                           for t in names)

        return dds.wait_until(matched, timeout_s)

    def published(self, topic: str | None = None) -> int:
        """Return the payloads written on ``topic`` (or on all topics)."""
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
        with self._lock:
            self._announce_all()
        while not self._stop.is_set():
            with self._lock:
                self._tick()
            if self._done():
                break
            self._stop.wait(self.config.tick_ms / 1000.0)

    def _done(self) -> bool:
        limit = self.config.max_samples
        return limit is not None and self.emitted >= limit

    def _tick(self) -> None:
        rate = self.config.rate_hz
        due = int((time.monotonic() - self._start_mono) * rate) + 1
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
            values = self._arm_values(arm, t)
            for w in self.writers.values():
                if w.arm is arm.model and w.encoder is not None and not w.stalled:
                    self._write_batch(w, stamps, values[w.suffix])

    def _write_batch(self, w: _TopicWriter, stamps: np.ndarray, values: FloatArray) -> None:
        assert w.encoder is not None
        for payload in w.encoder.encode(stamps, values):
            dds.write_raw(w.writer, payload)
            w.published += 1

    def _motion_time(self, arm: _ArmState, t: FloatArray) -> FloatArray:
        return t if arm.frozen_at is None else np.full_like(t, arm.frozen_at)

    def _arm_values(self, arm: _ArmState, t: FloatArray) -> dict[str, FloatArray]:
        """Return the stream-ordered values of every sampled topic of ``arm`` at times ``t``."""
        m, cyc = arm.model, self.config.cycle_s
        tm = self._motion_time(arm, t)
        still = arm.frozen_at is not None
        q = self._apply_limits(arm, arms.joint_positions(m, tm, cyc), float(t[-1]))
        qd = np.zeros_like(q) if still else arms.joint_velocities(m, tm, cyc)
        period = 1.0 / self.config.rate_hz
        q_set = q if still else self._apply_limits(
            arm, arms.joint_positions(m, tm + period, cyc), float(t[-1]))
        out = {
            "measured_js": _interleave(q, qd, arms.joint_efforts(m, q, qd)),
            "setpoint_js": _interleave(q_set, qd, np.zeros_like(q)),
            "measured_cp": arms.forward_kinematics(m, q),
            "setpoint_cp": arms.forward_kinematics(m, q_set),
            "measured_cv": np.zeros((t.shape[0], 6)) if still else arms.tip_twist(m, tm, cyc),
            "body/measured_cf": arms.tip_wrench(m, tm, cyc),
        }
        if m.jaw:
            jaw = arms.jaw_positions(m, tm, cyc)
            jaw_v = np.zeros_like(jaw) if still else (
                arms.jaw_positions(m, tm + 1e-4, cyc) - arms.jaw_positions(m, tm - 1e-4, cyc)
            ) / 2e-4
            out["jaw/measured_js"] = _interleave(jaw, jaw_v, 0.2 * jaw)
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

    def _event(self, arm: _ArmState, suffix: str, payload_fn: Callable[[], bytes],
               text: str) -> None:
        topic = f"/{arm.model.name}/{suffix}"
        w = self.writers.get(topic)
        if w is None or not self._up or w.stalled:
            return
        dds.write_raw(w.writer, payload_fn())
        w.published += 1
        self.events.append((topic, text))

    def _status(self, arm: _ArmState, text: str, suffix: str = "status") -> None:
        self._event(arm, suffix, lambda: encode.string(text), text)

    def _publish_state(self, arm: _ArmState) -> None:
        self._event(arm, "operating_state",
                    lambda: encode.operating_state(time.time_ns(), arm.state, arm.homed,
                                                   arm.busy), arm.state)

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

    # -- fault scripting API ---------------------------------------------------------------

    def fault(self, arm: str, message: str = "motor power fault") -> None:
        """Put an arm in FAULT: motion freezes, an error String and the new state go out."""
        with self._lock:
            a = self._arm(arm)
            a.state, a.frozen_at = "FAULT", self._sim_time()
            self._status(a, f"{arm}: {message}", "error")
            self._publish_state(a)

    def clear_fault(self, arm: str) -> None:
        """Return an arm to ENABLED and resume motion."""
        with self._lock:
            a = self._arm(arm)
            a.state, a.frozen_at = "ENABLED", None
            self._status(a, f"{arm}: fault cleared")
            self._publish_state(a)

    def estop(self, message: str = "emergency stop pressed") -> None:
        """Emergency stop: every arm DISABLED (powered off), frozen, with an error String."""
        with self._lock:
            for a in self.arms:
                a.state, a.frozen_at = "DISABLED", self._sim_time()
                self._status(a, f"{a.model.name}: {message}", "error")
                self._publish_state(a)

    def release_estop(self) -> None:
        """Release the emergency stop: arms ENABLED again."""
        with self._lock:
            for a in self.arms:
                a.state, a.frozen_at = "ENABLED", None
                self._status(a, f"{a.model.name}: e-stop released")
                self._publish_state(a)

    def joint_limit_warning(self, arm: str, joint: str, hold_s: float = 1.0) -> None:
        """Drive ``joint`` onto its upper limit for ``hold_s`` and publish a warning String."""
        with self._lock:
            a = self._arm(arm)
            k = a.model.joints.index(joint)
            value = a.model.upper[k]
            a.limit[k] = (value, self._sim_time() + hold_s)
            self._status(a, f"{arm}: joint {joint} at upper limit {value:g}", "warning")

    def stall(self, pattern: str) -> list[str]:
        """Stop publishing every topic matching the glob ``pattern``; return them."""
        with self._lock:
            hit = [t for t in self.writers if fnmatch.fnmatchcase(t, pattern)]
            for t in hit:
                self.writers[t].stalled = True
            return hit

    def resume(self, pattern: str = "*") -> list[str]:
        """Resume stalled topics matching ``pattern``; return them."""
        with self._lock:
            hit = [t for t, w in self.writers.items() if w.stalled and
                   fnmatch.fnmatchcase(t, pattern)]
            for t in hit:
                self.writers[t].stalled = False
            return hit

    def restart_publisher(self, down_s: float = 0.0) -> None:
        """Destroy the participant (after acks) and create a new one, as a node restart does."""
        with self._lock:
            self._close()
        time.sleep(down_s)
        with self._lock:
            self._open()
            self.restarts += 1
            self._announce_all()

    def inject_raw(self, topic: str, payload: bytes) -> None:
        """Write an arbitrary payload on ``topic`` (garbage for robustness tests); counted."""
        with self._lock:
            w = self.writers[topic]
            dds.write_raw(w.writer, payload)
            w.published += 1


def _interleave(*columns: FloatArray) -> FloatArray:
    """Return (n, joints * k) in stream order j0.a, j0.b, ..., j1.a ... from k (n, joints)."""
    return np.stack(columns, axis=2).reshape(columns[0].shape[0], -1)
