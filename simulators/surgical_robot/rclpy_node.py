"""The simulator as a real ROS 2 node: rclpy, rclpy's own message types, the system's RMW.

With the PyPI wheels that RMW is Fast DDS (rmw_fastrtps_cpp). Every node gets its own
rclpy Context initialized with the configured domain id, and the process is kept on the
machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set before the first init.

crtk_msgs has no Python package, so ``/<arm>/operating_state`` is published as a
std_msgs/String carrying the state name (DISABLED, ENABLED, PAUSED, FAULT); is_homed and
is_busy are not published in this mode.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from simulators.surgical_robot.dds import QosOptions
from simulators.surgical_robot.topics import STATE, FloatArray, IntArray, TopicSpec

log = logging.getLogger("medgw.sim.robot")

DISCOVERY_RANGE = "LOCALHOST"


class RclpyUnavailableError(RuntimeError):
    """rclpy or a ROS 2 message package is not installed."""


def _import_ros() -> Any:
    """Import rclpy and the message packages, translating a missing one into a clear error."""
    try:
        import rclpy
        from builtin_interfaces.msg import Time
        from geometry_msgs.msg import TransformStamped, TwistStamped, WrenchStamped
        from rclpy import qos
        from rclpy.context import Context
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
    except ImportError as err:
        raise RclpyUnavailableError(
            f"the rclpy transport needs ROS 2's Python packages ({err}); install them with "
            "pip install ros-rclpy ros-sensor-msgs ros-geometry-msgs ros-std-msgs "
            "ros-rmw-fastrtps-cpp (the 'ros' extra)") from err
    types = {"sensor_msgs/msg/JointState": JointState,
             "geometry_msgs/msg/TransformStamped": TransformStamped,
             "geometry_msgs/msg/TwistStamped": TwistStamped,
             "geometry_msgs/msg/WrenchStamped": WrenchStamped,
             "std_msgs/msg/String": String, STATE: String}
    return rclpy, qos, Context, Time, types


def _profile(qos: Any, options: QosOptions) -> Any:
    """Return the rclpy QoSProfile of the simulator's QoS options."""
    return qos.QoSProfile(
        history=qos.HistoryPolicy.KEEP_LAST, depth=options.depth,
        reliability=(qos.ReliabilityPolicy.RELIABLE if options.reliability == "reliable"
                     else qos.ReliabilityPolicy.BEST_EFFORT),
        durability=(qos.DurabilityPolicy.TRANSIENT_LOCAL
                    if options.durability == "transient_local"
                    else qos.DurabilityPolicy.VOLATILE))


class RclpyPublisher:
    """One rclpy node with a publisher per topic, in its own Context on ``domain_id``."""

    name = "rclpy"

    def __init__(self, domain_id: int, specs: list[TopicSpec], qos: QosOptions | None = None,
                 node_name: str = "robot_sim") -> None:
        self.domain_id = domain_id
        self.specs = specs
        self.qos = qos or QosOptions()
        self.node_name = node_name
        self._rclpy, self._qos_mod, self._context_cls, self._time, self._types = _import_ros()
        self._context: Any = None
        self._node: Any = None
        self._pubs: dict[str, Any] = {}

    def open(self) -> None:
        """Initialize a Context on the domain, create the node and its publishers."""
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = DISCOVERY_RANGE
        self._context = self._context_cls()
        self._rclpy.init(context=self._context, domain_id=self.domain_id)
        self._node = self._rclpy.create_node(self.node_name, context=self._context)
        profile = _profile(self._qos_mod, self.qos)
        for spec in self.specs:
            self._pubs[spec.topic] = self._node.create_publisher(
                self._types[spec.ros_type], spec.topic, profile)
        states = [s.topic for s in self.specs if s.ros_type == STATE]
        if states:
            log.info("rclpy transport: crtk_msgs has no Python package; %s published as "
                     "std_msgs/String carrying the state name", ", ".join(states))

    def close(self, ack_timeout_s: float = 1.0) -> None:
        """Wait for acks (bounded), destroy the node and shut its Context down."""
        if self._node is None:
            return
        from rclpy.duration import Duration

        for topic, pub in self._pubs.items():
            if pub.get_subscription_count() and not pub.wait_for_all_acked(
                    Duration(nanoseconds=int(ack_timeout_s * 1e9))):
                log.debug("rclpy: not every reader acknowledged %s", topic)
        self._node.destroy_node()
        self._rclpy.shutdown(context=self._context)
        self._pubs, self._node, self._context = {}, None, None

    def _stamped(self, spec: TopicSpec) -> Any:
        message = self._types[spec.ros_type]()
        message.header.frame_id = spec.frame_id
        return message

    def _set_stamp(self, message: Any, stamp_ns: int) -> None:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        message.header.stamp = self._time(sec=sec, nanosec=nanosec)

    def write_samples(self, spec: TopicSpec, stamps_ns: IntArray,
                      columns: tuple[FloatArray, ...]) -> int:
        """Publish one message per stamp; return how many were published."""
        publish = self._pubs[spec.topic].publish
        message = self._stamped(spec)
        rows = zip(stamps_ns.tolist(), *(c.tolist() for c in columns), strict=True)
        n = 0
        for stamp_ns, *values in rows:
            self._set_stamp(message, stamp_ns)
            _fill(spec, message, values)
            publish(message)  # serialized now: the message object can be reused
            n += 1
        return n

    def write_state(self, spec: TopicSpec, stamp_ns: int, state: str, homed: bool,
                    busy: bool) -> None:
        """Publish the state name as std_msgs/String (see the module docstring)."""
        self.write_text(spec, state)

    def write_text(self, spec: TopicSpec, text: str) -> None:
        """Publish one std_msgs/String."""
        self._pubs[spec.topic].publish(self._types["std_msgs/msg/String"](data=text))

    def write_serialized(self, spec: TopicSpec, payload: bytes) -> None:
        """Publish an already serialized CDR payload (rclpy's serialized publish)."""
        self._pubs[spec.topic].publish(payload)

    def matched(self, spec: TopicSpec) -> int:
        """Return how many subscriptions match the topic's publisher."""
        return int(self._pubs[spec.topic].get_subscription_count())


def _fill(spec: TopicSpec, message: Any, values: list[list[float]]) -> None:
    """Set the payload fields of a reused message from one row of value columns."""
    if spec.kind == "joint":
        message.name = list(spec.joints)
        message.position, message.velocity, message.effort = values
        return
    row = values[0]
    if spec.kind == "pose":
        message.child_frame_id = spec.child_frame_id
        t, r = message.transform.translation, message.transform.rotation
        t.x, t.y, t.z, r.x, r.y, r.z, r.w = row
        return
    body = message.twist if hasattr(message, "twist") else message.wrench
    first, second = (body.linear, body.angular) if hasattr(body, "linear") else (
        body.force, body.torque)
    first.x, first.y, first.z, second.x, second.y, second.z = row
