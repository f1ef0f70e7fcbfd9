"""The robot's fault-scripting API: faults, e-stop, joint limits, stalls, restarts, garbage.

A mixin of :class:`simulators.surgical_robot.sim.RobotSimulator`; every method takes the
simulator's lock, so tests can script faults while the publishing thread runs.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.surgical_robot.topics import TopicPublisher


class FaultScript:
    """Fault scripting over the simulator's arms and writers (see RobotSimulator)."""

    _lock: threading.RLock
    arms: list[Any]
    writers: dict[str, Any]
    publisher: TopicPublisher
    restarts: int

    def _arm(self, name: str) -> Any:
        raise NotImplementedError

    def _sim_time(self) -> float:
        raise NotImplementedError

    def _status(self, arm: Any, text: str, suffix: str = "status") -> None:
        raise NotImplementedError

    def _publish_state(self, arm: Any) -> None:
        raise NotImplementedError

    def _announce_all(self) -> None:
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self, ack_timeout_s: float = 1.0) -> None:
        raise NotImplementedError

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
            self.publisher.write_serialized(w.spec, payload)
            w.published += 1
