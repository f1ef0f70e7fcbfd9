"""An Open-RMF fleet adapter, doors and a lift on Cyclone DDS, as a hospital would run them.

Publishes (ROS 2 conventions, XCDR1, written by cyclonedds from :mod:`msgs`):

    /fleet_states  rmf_fleet_msgs/FleetState  every tick: every robot, seq + 1 per tick
    /door_states   rmf_door_msgs/DoorState    every ``door_every`` ticks, per door
    /lift_states   rmf_lift_msgs/LiftState    every ``door_every`` ticks

Tick ``k`` is stamped ``start + k / rate_hz``. The FleetStates of ``drop_ticks`` are not
written although their seq numbers are used up (a message lost at the source: the
receiver must see the hole). Every message written is recorded (``published``).
The DDS domain is loopback-pinned by the surgical robot simulator's Cyclone setup
(``simulators.surgical_robot.dds``: one configuration per domain and process).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

from cyclonedds.core import DDSException
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic
from pydantic import BaseModel, ConfigDict, Field

from simulators.rmf_fleet import fleet, msgs
from simulators.surgical_robot import dds

log = logging.getLogger("medgw.sim.rmf")
NS = 1_000_000_000


class RmfSimConfig(BaseModel):
    """Simulator settings."""

    model_config = ConfigDict(extra="forbid")

    fleet_name: str = "tug"
    robots: list[fleet.RobotPlan] = Field(default_factory=fleet.default_robots)
    doors: list[str] = Field(default_factory=lambda: ["lab_door", "pharmacy_door"])
    lift: str = "lift_main"
    faults: list[fleet.Fault] = Field(default_factory=fleet.default_faults)
    drop_ticks: list[int] = Field(default_factory=lambda: [30, 31, 72],
                                  description="ticks whose FleetState is not written")
    rate_hz: float = Field(default=10.0, gt=0, le=200)
    door_every: int = Field(default=5, ge=1, description="door/lift state every N ticks")
    leg_ticks: int = Field(default=40, ge=2)
    dwell_ticks: int = Field(default=20, ge=1)
    ticks: int | None = Field(default=120, ge=1, description="stop after N ticks (None: run)")
    domain_id: int = Field(default=0, ge=0, le=dds.MAX_DOMAIN_ID)
    network: dds.NetworkOptions = Field(default_factory=dds.NetworkOptions)
    qos: dds.QosOptions = Field(default_factory=lambda: dds.QosOptions(depth=100))


class RmfSimulator:
    """Publishes the scripted fleet; ``open()``, ``start()``, ``stop()``."""

    def __init__(self, config: RmfSimConfig | None = None) -> None:
        self.config = config or RmfSimConfig()
        self._participant: Any = None
        self._writers: dict[str, DataWriter] = {}
        self._entities: list[Any] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.start_ns = 0
        self.published: dict[str, list[Any]] = {topic: [] for topic in msgs.TOPIC_TYPES}
        self.robots_published: dict[str, list[fleet.RobotSnap]] = {
            r.name: [] for r in self.config.robots}
        self.ticks_done = 0
        self.done = threading.Event()

    def open(self) -> RmfSimulator:
        """Create the participant and one writer per topic (reliable, volatile)."""
        self._participant = dds.open_participant(self.config.domain_id, self.config.network)
        qos = dds.make_qos(self.config.qos)
        for topic, kind in msgs.TOPIC_TYPES.items():
            dds_topic = Topic(self._participant, msgs.dds_topic(topic), kind, qos=qos)
            writer = DataWriter(self._participant, dds_topic, qos=qos)
            self._writers[topic] = writer
            self._entities[:0] = [writer, dds_topic]
        return self

    def wait_for_subscribers(self, timeout_s: float = 10.0, count: int = 1,
                             topics: list[str] | None = None) -> bool:
        """Wait until every (given) topic has ``count`` matched readers; False on timeout."""
        writers = [self._writers[t] for t in (topics or list(self._writers))]
        return dds.wait_until(lambda: all(
            len(w.get_matched_subscriptions()) >= count for w in writers), timeout_s)

    def start(self) -> None:
        """Publish from now on in a thread of its own."""
        self.start_ns = time.time_ns()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rmf-sim")
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing, wait for acks (bounded) and delete every DDS entity."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for topic, writer in self._writers.items():
            try:
                writer.wait_for_acks(NS)
            except DDSException as err:  # a writer without readers has nothing to ack
                log.debug("wait_for_acks on %s: %s", topic, err)
        dds.delete_entities(*self._entities, self._participant)
        self._writers, self._entities, self._participant = {}, [], None

    # -- publishing ----------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.config.rate_hz
        started = time.monotonic()
        k = 0
        while not self._stop.is_set() and (self.config.ticks is None or k < self.config.ticks):
            self.tick(k)
            k += 1
            delay = started + k * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        self.done.set()

    def stamp(self, k: int) -> int:
        """Return the stamp of tick ``k``."""
        return self.start_ns + round(k * NS / self.config.rate_hz)

    def tick(self, k: int) -> None:
        """Publish tick ``k``: the fleet (unless dropped), and doors and lift when due."""
        cfg, ts = self.config, self.stamp(k)
        snaps = [fleet.robot_at(p, i, k, cfg.leg_ticks, cfg.dwell_ticks, cfg.faults)
                 for i, p in enumerate(cfg.robots)]
        if k not in cfg.drop_ticks:
            self._write("/fleet_states", msgs.FleetState(
                cfg.fleet_name, [robot_state(s, ts) for s in snaps]))
            with self._lock:
                for snap in snaps:
                    self.robots_published[snap.name].append(snap)
        if k % cfg.door_every == 0:
            for i, door in enumerate(cfg.doors):
                self._write("/door_states", msgs.DoorState(
                    msgs.stamp(ts), door, msgs.DoorMode(fleet.door_at(door, i, k))))
            self._write("/lift_states", lift_state(cfg.lift, fleet.lift_at(k), ts))
        with self._lock:
            self.ticks_done = k + 1

    def _write(self, topic: str, message: Any) -> None:
        self._writers[topic].write(message)
        with self._lock:
            self.published[topic].append(message)

    def source_gaps(self, robot: str) -> list[tuple[int, int, int]]:
        """Return the holes in ``robot``'s published seq numbers: (from, to, missing)."""
        with self._lock:
            seqs = [s.seq for s in self.robots_published[robot]]
        return [(a + 1, b - 1, b - a - 1) for a, b in itertools.pairwise(seqs)
                if b - a > 1]


def location(x: float, y: float, yaw: float, level: str, index: int, ts: int) -> msgs.Location:
    """Return an rmf_fleet_msgs/Location (no approach speed limit)."""
    return msgs.Location(msgs.stamp(ts), x, y, yaw, False, 0.0, level, index)


def robot_state(s: fleet.RobotSnap, ts: int) -> msgs.RobotState:
    """Return the rmf_fleet_msgs/RobotState of a snapshot stamped ``ts``."""
    return msgs.RobotState(
        s.name, s.model, s.task_id, s.seq, msgs.RobotMode(s.mode, s.mode_request_id, ""),
        s.battery_percent, location(s.x, s.y, s.yaw, s.level_name, s.index, ts),
        [location(x, y, 0.0, level, index, ts) for x, y, level, index in s.path])


def lift_state(name: str, s: fleet.LiftSnap, ts: int) -> msgs.LiftState:
    """Return the rmf_lift_msgs/LiftState of a snapshot stamped ``ts``."""
    return msgs.LiftState(msgs.stamp(ts), name, list(fleet.LIFT_FLOORS), s.current_floor,
                          s.destination_floor, s.door_state, s.motion_state, [1, 2],
                          s.current_mode, "")
