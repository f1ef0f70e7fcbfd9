"""What the robot publishes: per-arm topic tables and the publisher seam both transports fill.

A sampled topic carries one of three shapes of values, computed by the simulator per batch:

    joint   (position, velocity, effort), each (n, joints)   sensor_msgs/JointState
    pose    one (n, 7) array x y z qx qy qz qw                geometry_msgs/TransformStamped
    six     one (n, 6) array (linear/force, angular/torque)   geometry_msgs/Twist|WrenchStamped
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulators.surgical_robot.arms import ArmModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

JS, TS = "sensor_msgs/msg/JointState", "geometry_msgs/msg/TransformStamped"
TWIST, WRENCH = "geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/WrenchStamped"
STATE, STRING = "crtk_msgs/msg/OperatingState", "std_msgs/msg/String"

SAMPLED_TOPICS: dict[str, str] = {
    "measured_js": JS, "setpoint_js": JS, "jaw/measured_js": JS,
    "measured_cp": TS, "setpoint_cp": TS,
    "measured_cv": TWIST,
    "body/measured_cf": WRENCH,
}
"""Periodic topics of every arm (ECMs have no jaw), suffix -> ROS type."""
EVENT_TOPICS: dict[str, str] = {
    "operating_state": STATE, "error": STRING, "warning": STRING, "status": STRING,
}
"""Event topics of every arm, suffix -> ROS type."""

_KIND = {JS: "joint", TS: "pose", TWIST: "six", WRENCH: "six", STATE: "state", STRING: "text"}


@dataclass(frozen=True)
class TopicSpec:
    """One published topic: ROS name and type, value shape, frames and joint names."""

    topic: str
    suffix: str
    ros_type: str
    arm: str
    kind: str  # joint | pose | six | state | text
    frame_id: str = ""
    child_frame_id: str = ""
    joints: tuple[str, ...] = ()

    @property
    def sampled(self) -> bool:
        """Return True for periodic topics."""
        return self.kind in ("joint", "pose", "six")


def arm_topics(model: ArmModel, suffixes: list[str], events: bool) -> list[TopicSpec]:
    """Return the topics of one arm: the sampled ``suffixes`` it has, then its events."""
    specs: list[TopicSpec] = []
    for suffix in suffixes:
        if suffix.startswith("jaw/") and not model.jaw:
            continue
        ros_type = SAMPLED_TOPICS[suffix]
        kind = _KIND[ros_type]
        frame, child = {"joint": ("", ""), "pose": (f"{model.name}_base", model.name),
                        "six": (model.name, "")}[kind]
        joints = (("jaw",) if suffix.startswith("jaw/") else model.joints) if kind == "joint" \
            else ()
        specs.append(TopicSpec(f"/{model.name}/{suffix}", suffix, ros_type, model.name, kind,
                               frame, child, joints))
    if events:
        specs += [TopicSpec(f"/{model.name}/{suffix}", suffix, ros_type, model.name,
                            _KIND[ros_type]) for suffix, ros_type in EVENT_TOPICS.items()]
    return specs


class TopicPublisher(Protocol):
    """What a transport does for the simulator: open, write each shape, count matches."""

    name: str

    def open(self) -> None:
        """Create the participant/node and one writer per topic."""

    def close(self, ack_timeout_s: float = 1.0) -> None:
        """Wait for acks (bounded), then destroy writers and participant/node."""

    def write_samples(self, spec: TopicSpec, stamps_ns: IntArray,
                      columns: tuple[FloatArray, ...]) -> int:
        """Publish one message per stamp; return how many were written."""

    def write_state(self, spec: TopicSpec, stamp_ns: int, state: str, homed: bool,
                    busy: bool) -> None:
        """Publish one operating state."""

    def write_text(self, spec: TopicSpec, text: str) -> None:
        """Publish one std_msgs/String."""

    def write_serialized(self, spec: TopicSpec, payload: bytes) -> None:
        """Publish an already serialized CDR payload (robustness tests)."""

    def matched(self, spec: TopicSpec) -> int:
        """Return how many readers match the topic's writer."""
