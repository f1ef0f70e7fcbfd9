"""The simulator's fault script over a recording publisher (no DDS): what goes out, when."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulators.surgical_robot import RobotSimulator, SimConfig, arms
from simulators.surgical_robot.topics import FloatArray, IntArray, TopicSpec


class Recorder:
    """A TopicPublisher that keeps every message it is asked to write."""

    name = "recorder"

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[int, tuple[FloatArray, ...]]]] = {}
        self.texts: list[tuple[str, str]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def close(self, ack_timeout_s: float = 1.0) -> None:
        self.closed += 1

    def write_samples(self, spec: TopicSpec, stamps_ns: IntArray,
                      columns: tuple[FloatArray, ...]) -> int:
        rows = self.samples.setdefault(spec.topic, [])
        for k, stamp in enumerate(stamps_ns.tolist()):
            rows.append((stamp, tuple(c[k].copy() for c in columns)))
        return len(stamps_ns)

    def write_state(self, spec: TopicSpec, stamp_ns: int, state: str, homed: bool,
                    busy: bool) -> None:
        self.texts.append((spec.topic, state))

    def write_text(self, spec: TopicSpec, text: str) -> None:
        self.texts.append((spec.topic, text))

    def write_serialized(self, spec: TopicSpec, payload: bytes) -> None:
        self.raw.append((spec.topic, payload))

    def matched(self, spec: TopicSpec) -> int:
        return 1


class Clock:
    """A sample clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sim(**config: Any) -> tuple[RobotSimulator, Recorder]:
    """Return an opened simulator on a hand-driven clock, recording what it writes."""
    sim = RobotSimulator(SimConfig(**config))
    recorder = Recorder()
    sim.publisher = recorder
    sim.clock = Clock()
    sim.open()
    sim._start_ns, sim._start_mono = 1_000_000_000, sim.clock()
    return sim, recorder


def _run(sim: RobotSimulator, until: int) -> None:
    """Run one tick of the publishing loop with the clock at sample ``until - 1``."""
    assert isinstance(sim.clock, Clock)
    sim.clock.now = sim._start_mono + (until - 1 + 0.5) / sim.config.rate_hz
    sim._tick()


def test_topics_per_arm_follow_the_model() -> None:
    sim = RobotSimulator(SimConfig(arms=["PSM1", "ECM"]))
    assert "/PSM1/jaw/measured_js" in sim.topics() and "/ECM/jaw/measured_js" not in sim.topics()
    assert len(sim.sampled_topics()) == 7 + 6
    assert len(sim.topics()) == 7 + 6 + 2 * 4


def test_fault_freezes_motion_and_says_so() -> None:
    sim, rec = _sim(arms=["PSM1"], rate_hz=100.0, topics=["measured_js"])
    _run(sim, 10)
    sim.fault("PSM1", "motor power fault")
    _run(sim, 20)
    rows = rec.samples["/PSM1/measured_js"]
    assert [s for s, _ in rows] == [1_000_000_000 + k * 10_000_000 for k in range(20)]
    frozen = np.array([cols[0] for _, cols in rows[10:]])
    assert np.all(frozen == frozen[0]) and np.all(np.array([c[1] for _, c in rows[10:]]) == 0)
    model = arms.arm_model("PSM1")
    np.testing.assert_allclose(rows[3][1][0], arms.joint_positions(model, np.array([0.03]))[0])
    assert ("/PSM1/error", "PSM1: motor power fault") in rec.texts
    assert ("/PSM1/operating_state", "FAULT") in rec.texts
    assert sim.published("/PSM1/measured_js") == 20
    assert sim.published("/PSM1/error") == 1


def test_stall_resume_estop_limits_and_raw() -> None:
    sim, rec = _sim(arms=["PSM1", "PSM2"], rate_hz=100.0, topics=["measured_js", "measured_cp"])
    _run(sim, 5)
    assert sim.stall("/PSM2/*") == [t for t in sim.topics() if t.startswith("/PSM2/")]
    _run(sim, 10)
    assert sim.published("/PSM2/measured_js") == 5 and sim.published("/PSM1/measured_js") == 10
    assert sorted(sim.resume("/PSM2/measured_*")) == ["/PSM2/measured_cp", "/PSM2/measured_js"]
    sim.joint_limit_warning("PSM1", "outer_pitch", hold_s=10.0)
    _run(sim, 12)
    last = rec.samples["/PSM1/measured_js"][-1][1][0]
    assert last[1] == arms.PSM_UPPER[1]
    assert sim.published("/PSM2/measured_js") == 7  # resumed: the two new samples only
    sim.estop()
    assert [t for t in rec.texts if t[1] == "DISABLED"] == [
        ("/PSM1/operating_state", "DISABLED")]  # PSM2's event topics are still stalled
    sim.inject_raw("/PSM1/status", b"\x00\x01\x00\x00garbage")
    assert rec.raw == [("/PSM1/status", b"\x00\x01\x00\x00garbage")]
    sim.restart_publisher()
    assert (rec.opened, rec.closed, sim.restarts) == (2, 1, 1)
