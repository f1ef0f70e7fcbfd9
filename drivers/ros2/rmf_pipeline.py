"""Open-RMF topics fanned out: one FleetState feeds streams per robot, doors and lifts theirs.

Per robot (stream ``<topic stream>.<fleet>.<robot>``, e.g. ``fleet_states.tug.tug1``):

- the sampled stream (``rmf_robot``): ROBOT_FIELDS, time = ``location.t`` (unset: the
  receive time, quality UNCERTAIN);
- ``.events`` (``rmf_robot_event``): the first state, every mode change (code EMERGENCY or
  ADAPTER_ERROR when the robot enters those modes, else MODE), level and task changes, a
  restarted seq numbering (SEQ_RESET);
- ``.source_gap`` (``medgw_source_gap``, as the VDA 5050 driver's): RobotState.seq numbers
  the fleet adapter sent but nobody received, ``medgw_source_gap_total{device,vehicle}``.

Doors (``<topic stream>.<door>``, ``rmf_door``) and lifts (``<topic stream>.<lift>``,
``rmf_lift``) get a state stream and ``.events`` on every change. A robot, door or lift
whose name the stream rule refuses, that collides with another, or beyond ``max_robots``
is refused alone (counted, logged once, a QUARANTINED topic-health event); the rest flow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivers.ros2 import rmf
from drivers.ros2.cdr import CdrError
from drivers.ros2.mapping import Family, IntArray, TypeMapping
from drivers.ros2.pipeline import NS, HealthStream, TopicPipeline, TopicSettings
from drivers.ros2.rmf_streams import LIFT_EVENTS, MAX_LEVELS, ROBOT_EVENTS, stream_specs
from gateway.driver import DriverContext
from gateway.errors import StreamSpecError
from gateway.metrics import shared_counter
from gateway.model import Quality
from gateway.ring import StreamRing

_EV = {name: code for name, code in ROBOT_EVENTS}
_LIFT_EV = {name: code for name, code in LIFT_EVENTS}


@dataclass
class RmfStats:
    """Counters of one RMF topic (tests and logs read them)."""

    messages: int = 0
    samples: int = 0
    events: int = 0
    gaps: int = 0
    missing: int = 0
    resets: int = 0
    duplicates: int = 0
    refused: int = 0


@dataclass
class _Entity:
    """A robot, door or lift: its streams and what it said last."""

    name: str  # "fleet/robot", door or lift name (log lines)
    state: StreamRing
    events: StreamRing
    gap: StreamRing | None = None
    tracker: rmf.SeqTracker | None = None
    last: object | None = None
    last_ts: int = -1


class RmfPipeline(TopicPipeline):
    """Decodes one Open-RMF topic (FleetState, DoorState or LiftState) into many streams."""

    def __init__(self, ctx: DriverContext, settings: TopicSettings, mapping: TypeMapping,
                 health: HealthStream | None = None, *, max_entities: int = 64,
                 max_source_gap: int = 100_000) -> None:
        super().__init__(ctx, settings, mapping, health)
        self.gaps = None  # seq numbers say what is missing, not stamps
        self.max_entities = max_entities
        self.max_source_gap = max_source_gap
        self.entities: dict[tuple[str, str], _Entity] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self.refused_detail: list[str] = []  # for the device error (/health: degraded)
        self.names: set[str] = set()
        self.levels: dict[str, int] = {}
        self.stats = RmfStats()
        self.appended: dict[str, int] = {}  # stream key -> samples appended
        registry = ctx.metrics.registry
        self.source_gap = shared_counter(
            registry, "medgw_source_gap", "Messages a source numbered (VDA 5050 headerId, "
            "RobotState.seq) but nobody received: lost at the source, not in medgw",
            ("device", "vehicle"))
        self.source_resets = shared_counter(
            registry, "medgw_source_resets", "Source numbering restarted (vehicle or fleet "
            "adapter restart): not counted as loss", ("device", "vehicle"))

    # -- the TopicPipeline interface ---------------------------------------------------

    def ingest(self, payloads: Sequence[bytes], receive_ns: int | IntArray,
               now_mono_ns: int | None = None) -> int:
        """Decode and fan out a batch in arrival order; return how many samples went in."""
        rx = ([receive_ns] * len(payloads) if isinstance(receive_ns, int)
              else [int(t) for t in np.asarray(receive_ns, dtype=np.int64)])
        appended = sum(self._one(p, t) for p, t in zip(payloads, rx, strict=True))
        if appended:
            self._mark_seen(now_mono_ns)
        return appended

    def refusals(self) -> list[str]:
        """Return why each refused robot, door or lift is not read (oldest first)."""
        return list(self.refused_detail)

    def appended_by_stream(self) -> dict[str, int]:
        """Return the samples appended so far per stream key (state and event streams)."""
        return dict(self.appended)

    def rebase(self) -> None:
        """A new transport session: seq numbers after it start new runs (medgw's own gap)."""
        for entity in self.entities.values():
            if entity.tracker is not None:
                entity.tracker.rebase()

    def check_stale(self, now_mono_ns: int | None = None) -> bool:
        """A silent topic: mark every stream of it stale (gauge) and emit one health event."""
        if self.clock is None or not self.entities:
            return False
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        silent = self.clock.check(now)
        if silent is None:
            return False
        self._set_stale(1)
        if self.health is not None:
            self.health.emit(self.last_stamp_ns + silent, "STALE",
                             f"{self.settings.topic} stale: silent for {silent / 1e9:.3f} s "
                             f"(> {self.clock.periods:g} periods at "
                             f"{self.settings.rate_hz:g} Hz)")
        return True

    def _mark_seen(self, now_mono_ns: int | None) -> None:
        if self.clock is None:
            return
        silent = self.clock.seen(time.monotonic_ns() if now_mono_ns is None else now_mono_ns)
        if silent is not None:
            self._set_stale(0)
            if self.health is not None:
                self.health.emit(self.last_stamp_ns, "FRESH", f"{self.settings.topic} "
                                 f"recovered after {silent / 1e9:.3f} s of silence")

    def _set_stale(self, value: int) -> None:
        m = self.ctx.metrics
        for entity in self.entities.values():
            m.child(m.stale, entity.state.stream.key).set(value)

    # -- one message -------------------------------------------------------------------

    def _one(self, payload: bytes, rx: int) -> int:
        decoded = self._decode(payload)
        if decoded is None:
            return 0
        self.stats.messages += 1
        if isinstance(decoded, rmf.FleetState):  # one robot's bad stamp drops that robot only
            self.received += 1
            return sum(self._robot(decoded.name, r, rx) for r in decoded.robots)
        if isinstance(decoded, rmf.DoorState):
            return self._door(decoded, rx)
        return self._lift(decoded, rx)

    def _decode(self, payload: bytes) -> rmf.FleetState | rmf.DoorState | rmf.LiftState | None:
        """Decode one payload of the topic's type; quarantine (and None) what does not fit."""
        family = self.mapping.family
        try:
            if family is Family.RMF_FLEET:
                return rmf.decode_fleet_state(payload)
            if family is Family.RMF_DOOR:
                return rmf.decode_door_state(payload)
            return rmf.decode_lift_state(payload)
        except CdrError as err:
            self._quarantine("decode", str(err))
        except (ValueError, IndexError, OverflowError) as err:
            self._quarantine("decode", f"undecodable {self.mapping.ros_type}: {err}")
        return None

    def _time(self, sec: int, nanosec: int, rx: int, what: str) -> tuple[int, int] | None:
        """Return (sample time, quality) of a stamp; None (counted, logged) if invalid.

        A robot's bad stamp drops that robot's state (the message was received); a door's
        or lift's drops the message (the caller counts it received only when it is good).
        """
        if sec == 0 and nanosec == 0:
            return rx, Quality.UNCERTAIN
        if sec < 0 or nanosec >= NS:
            detail = f"{what}: stamp {sec}.{nanosec:09d}"
            if what.startswith("robot"):
                self.ctx.quarantine("bad_stamp", f"{self.settings.topic}: {detail}")
            else:
                self._quarantine("bad_stamp", detail)
            return None
        return sec * NS + nanosec, Quality.GOOD

    def _append(self, entity: _Entity, ts: int, row: list[float], quality: int,
                rx: int) -> None:
        if ts <= entity.last_ts:  # InfluxDB would merge two points of one series and time
            ts = entity.last_ts + 1
        entity.last_ts = ts
        self.ctx.append_one(entity.state, ts, np.asarray(row, dtype=np.float64), quality,
                            None, rx)
        self.stats.samples += 1
        key = entity.state.stream.key
        self.appended[key] = self.appended.get(key, 0) + 1
        self.last_stamp_ns = ts
        self._track_range(ts, ts)

    def _event(self, ring: StreamRing, ts: int, values: tuple[float, ...], text: str,
               rx: int) -> None:
        self.ctx.append_one(ring, ts, values, Quality.GOOD, text[:500], rx)
        self.stats.events += 1
        self.appended[ring.stream.key] = self.appended.get(ring.stream.key, 0) + 1

    # -- robots ------------------------------------------------------------------------

    def _robot(self, fleet: str, robot: rmf.RobotState, rx: int) -> int:
        entity = self._entity(("robot", f"{fleet}\0{robot.name}"), f"{fleet}/{robot.name}",
                              f"{fleet}.{robot.name}", "robot")
        if entity is None:
            return 0
        stamp = self._time(robot.location.sec, robot.location.nanosec, rx,
                           f"robot {entity.name}")
        if stamp is None:  # dropped (counted), but its seq was received: no hole here
            self._sequence(entity, robot, rx, rx)
            return 0
        ts, quality = stamp
        if not self._sequence(entity, robot, ts, rx):
            return 0
        loc = robot.location
        row = [loc.x, loc.y, loc.yaw, float(self._level(loc.level_name)), float(loc.index),
               robot.battery_percent, float(robot.mode), float(robot.mode_request_id),
               float(robot.path_length), float(robot.seq), float(loc.obey_approach_speed_limit),
               loc.approach_speed_limit]
        if not all(np.isfinite(row)):
            quality = Quality.BAD
        self._append(entity, ts, row, quality, rx)
        self._robot_events(entity, robot, ts, rx)
        entity.last = robot
        return 1

    def _sequence(self, entity: _Entity, robot: rmf.RobotState, ts: int, rx: int) -> bool:
        """Follow RobotState.seq; record a source gap or a reset; False for a duplicate."""
        assert entity.tracker is not None and entity.gap is not None
        outcome, previous, missing = entity.tracker.observe(robot.seq)
        label = entity.name
        if outcome is rmf.SeqOutcome.DUPLICATE:
            self.stats.duplicates += 1
            m = self.ctx.metrics
            m.child(m.dropped, entity.state.stream.key, "duplicate_seq").inc()
            return False
        if outcome is rmf.SeqOutcome.GAP:
            self.stats.gaps += 1
            self.stats.missing += missing
            self.source_gap.labels(self.ctx.device, label).inc(missing)
            text = f"{robot.name}: seq {previous + 1}..{robot.seq - 1}: {missing} lost at the " \
                   "source"
            self.ctx.log.warning("ros2 %s: %s %s", self.ctx.device, self.settings.topic, text)
            self._event(entity.gap, ts, (float(previous + 1), float(robot.seq - 1),
                                         float(missing)), text, rx)
        elif outcome is rmf.SeqOutcome.RESET:
            self.stats.resets += 1
            self.source_resets.labels(self.ctx.device, label).inc()
            text = f"{robot.name}: seq {previous} -> {robot.seq}: numbering restarted"
            self.ctx.log.info("ros2 %s: %s %s", self.ctx.device, self.settings.topic, text)
            self._event(entity.events, ts, (_EV["SEQ_RESET"], float(robot.mode),
                                            float(robot.mode)), text, rx)
        return True

    def _robot_events(self, entity: _Entity, robot: rmf.RobotState, ts: int, rx: int) -> None:
        prev = entity.last if isinstance(entity.last, rmf.RobotState) else None
        name, mode = robot.name, rmf.mode_name(robot.mode)
        code = (_EV["EMERGENCY"] if robot.mode == rmf.MODE_EMERGENCY else
                _EV["ADAPTER_ERROR"] if robot.mode == rmf.MODE_ADAPTER_ERROR else _EV["MODE"])
        if prev is None:
            self._event(entity.events, ts, (code, float(robot.mode), -1.0),
                        f"{name}: mode {mode} (first state)", rx)
            return
        if prev.mode != robot.mode:
            self._event(entity.events, ts, (code, float(robot.mode), float(prev.mode)),
                        f"{name}: mode {rmf.mode_name(prev.mode)} -> {mode}", rx)
        level, before = robot.location.level_name, prev.location.level_name
        if level != before:
            self._event(entity.events, ts, (_EV["LEVEL"], float(self._level(level)),
                                            float(self._level(before))),
                        f"{name}: level {before or '(none)'} -> {level or '(none)'}", rx)
        if robot.task_id != prev.task_id:
            self._event(entity.events, ts, (_EV["TASK"], float(robot.mode), float(prev.mode)),
                        f"{name}: task {prev.task_id or '(none)'} -> "
                        f"{robot.task_id or '(none)'}", rx)

    def _level(self, level: str) -> int:
        """Return a level name's index (in order of first sight, bounded; -1: none/too many)."""
        if not level:
            return -1
        found = self.levels.get(level)
        if found is None:
            if len(self.levels) >= MAX_LEVELS:
                return -1
            found = self.levels[level] = len(self.levels)
        return found

    # -- doors and lifts ---------------------------------------------------------------

    def _door(self, door: rmf.DoorState, rx: int) -> int:
        entity = self._entity(("door", door.door_name), door.door_name, door.door_name, "door")
        if entity is None:
            self.received += 1  # received, dropped and counted as refused
            return 0
        stamp = self._time(door.sec, door.nanosec, rx, f"door {door.door_name}")
        if stamp is None:
            return 0
        self.received += 1
        ts, quality = stamp
        self._append(entity, ts, [float(door.mode)], quality, rx)
        prev = entity.last if isinstance(entity.last, rmf.DoorState) else None
        mode = rmf.door_mode_name(door.mode)
        if prev is None:
            self._event(entity.events, ts, (float(door.mode), -1.0),
                        f"{door.door_name}: {mode} (first state)", rx)
        elif prev.mode != door.mode:
            self._event(entity.events, ts, (float(door.mode), float(prev.mode)),
                        f"{door.door_name}: {rmf.door_mode_name(prev.mode)} -> {mode}", rx)
        entity.last = door
        return 1

    def _lift(self, lift: rmf.LiftState, rx: int) -> int:
        entity = self._entity(("lift", lift.lift_name), lift.lift_name, lift.lift_name, "lift")
        if entity is None:
            self.received += 1
            return 0
        stamp = self._time(lift.sec, lift.nanosec, rx, f"lift {lift.lift_name}")
        if stamp is None:
            return 0
        self.received += 1
        ts, quality = stamp
        floor = lift.floor_index(lift.current_floor)
        row = [float(floor), float(lift.floor_index(lift.destination_floor)),
               float(lift.door_state), float(lift.motion_state), float(lift.current_mode),
               float(len(lift.available_floors))]
        self._append(entity, ts, row, quality, rx)
        prev = entity.last if isinstance(entity.last, rmf.LiftState) else None
        name = lift.lift_name
        if prev is None:
            self._event(entity.events, ts, (_LIFT_EV["FLOOR"], float(floor), -1.0),
                        f"{name}: at {lift.current_floor or '(none)'}, door "
                        f"{rmf.lift_name_of(rmf.LIFT_DOOR_STATES, lift.door_state)}, mode "
                        f"{rmf.lift_name_of(rmf.LIFT_MODES, lift.current_mode)} (first state)",
                        rx)
        else:
            self._lift_changes(entity, prev, lift, ts, rx)
        entity.last = lift
        return 1

    def _lift_changes(self, entity: _Entity, prev: rmf.LiftState, lift: rmf.LiftState,
                      ts: int, rx: int) -> None:
        name = lift.lift_name
        if prev.current_floor != lift.current_floor:
            self._event(entity.events, ts, (_LIFT_EV["FLOOR"],
                                            float(lift.floor_index(lift.current_floor)),
                                            float(prev.floor_index(prev.current_floor))),
                        f"{name}: floor {prev.current_floor or '(none)'} -> "
                        f"{lift.current_floor or '(none)'}", rx)
        for label, table, old, new in (
                ("DOOR", rmf.LIFT_DOOR_STATES, prev.door_state, lift.door_state),
                ("MOTION", rmf.LIFT_MOTION_STATES, prev.motion_state, lift.motion_state),
                ("MODE", rmf.LIFT_MODES, prev.current_mode, lift.current_mode)):
            if old != new:
                self._event(entity.events, ts, (_LIFT_EV[label], float(new), float(old)),
                            f"{name}: {label.lower()} {rmf.lift_name_of(table, old)} -> "
                            f"{rmf.lift_name_of(table, new)}", rx)

    # -- entities ----------------------------------------------------------------------

    def _entity(self, key: tuple[str, str], label: str, suffix: str,
                kind: str) -> _Entity | None:
        found = self.entities.get(key)
        if found is not None:
            return found
        reason = self.refused.get(key)
        if reason is None:
            reason = self._admit(key, label, f"{self.settings.stream}.{suffix}", kind)
            if reason is None:
                return self.entities[key]
        self.stats.refused += 1
        m = self.ctx.metrics
        m.child(m.malformed, self.ctx.device, f"{kind}_refused").inc()
        return None

    def _admit(self, key: tuple[str, str], label: str, stream: str, kind: str) -> str | None:
        """Create an entity's streams, or refuse it (once: logged, counted, an event)."""
        reason, detail = None, ""
        if len(self.entities) >= self.max_entities:
            reason = "too_many_robots"
            detail = (f"max_robots ({self.max_entities}) reached on this topic: {kind} "
                      f"{label[:120]!r} is not read (raise max_robots)")
        else:
            try:
                specs = stream_specs(self.ctx, kind, stream, self.settings.rate_hz)
            except StreamSpecError as err:
                reason, detail = "bad_name", f"{kind} {label[:120]!r} refused: {err}"
            else:
                if any(s.stream in self.names for s in specs):
                    reason = "name_collision"
                    detail = f"{kind} {label[:120]!r}: stream {stream} is taken by another"
        if reason is not None:
            self.refused[key] = reason
            self.refused_detail.append(detail)
            self.ctx.quarantine(reason, f"{self.settings.topic}: {detail}; the others flow")
            if self.health is not None:
                self.health.emit(time.time_ns(), "QUARANTINED",
                                 f"{self.settings.topic}: {detail}")
            return reason
        rings = [self.ctx.add_stream(s) for s in specs]
        self.names.update(s.stream for s in specs)
        tracker = rmf.SeqTracker(self.max_source_gap) if kind == "robot" else None
        self.entities[key] = _Entity(label, rings[0], rings[1],
                                     rings[2] if kind == "robot" else None, tracker)
        self.ctx.log.info("ros2 %s: %s %s %s -> stream %s", self.ctx.device,
                          self.settings.topic, kind, label, stream)
        return None
