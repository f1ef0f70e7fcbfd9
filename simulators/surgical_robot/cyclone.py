"""The simulator on Cyclone DDS: its own IdlStruct messages, written by cyclonedds.

Every message is a :mod:`simulators.surgical_robot.msgs` instance handed to
``DataWriter.write``; cyclonedds serializes it. Nothing here touches medgw's CDR code.
"""

from __future__ import annotations

import logging
from typing import Any

from cyclonedds._clayer import ddspy_write
from cyclonedds.core import DDSException
from cyclonedds.idl import IdlStruct
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from simulators.surgical_robot import dds, msgs
from simulators.surgical_robot.topics import FloatArray, IntArray, TopicSpec

log = logging.getLogger("medgw.sim.robot")
NS = 1_000_000_000


def joint_states(spec: TopicSpec, stamps_ns: IntArray, position: FloatArray,
                 velocity: FloatArray, effort: FloatArray) -> list[msgs.JointState]:
    """Return one sensor_msgs/JointState per stamp (rows of the three arrays)."""
    names = list(spec.joints)
    return [msgs.JointState(msgs.Header(msgs.stamp(s), spec.frame_id), names, p, v, e)
            for s, p, v, e in zip(stamps_ns.tolist(), position.tolist(), velocity.tolist(),
                                  effort.tolist(), strict=True)]


def transforms(spec: TopicSpec, stamps_ns: IntArray, pose: FloatArray
               ) -> list[msgs.TransformStamped]:
    """Return one geometry_msgs/TransformStamped per stamp from rows x y z qx qy qz qw."""
    return [msgs.TransformStamped(
        msgs.Header(msgs.stamp(s), spec.frame_id), spec.child_frame_id,
        msgs.Transform(msgs.Vector3(x, y, z), msgs.Quaternion(qx, qy, qz, qw)))
        for s, (x, y, z, qx, qy, qz, qw) in zip(stamps_ns.tolist(), pose.tolist(),
                                                  strict=True)]


def sixes(spec: TopicSpec, stamps_ns: IntArray, values: FloatArray
          ) -> list[msgs.TwistStamped] | list[msgs.WrenchStamped]:
    """Return one TwistStamped or WrenchStamped per stamp from rows of six values."""
    rows = list(zip(stamps_ns.tolist(), values.tolist(), strict=True))
    if spec.ros_type.endswith("TwistStamped"):
        return [msgs.TwistStamped(msgs.Header(msgs.stamp(s), spec.frame_id), msgs.Twist(
            msgs.Vector3(a, b, c), msgs.Vector3(d, e, f))) for s, (a, b, c, d, e, f) in rows]
    return [msgs.WrenchStamped(msgs.Header(msgs.stamp(s), spec.frame_id), msgs.Wrench(
        msgs.Vector3(a, b, c), msgs.Vector3(d, e, f))) for s, (a, b, c, d, e, f) in rows]


def sample_messages(spec: TopicSpec, stamps_ns: IntArray,
                    columns: tuple[FloatArray, ...]) -> list[Any]:
    """Return the IdlStruct messages of one batch of a sampled topic."""
    if spec.kind == "joint":
        return joint_states(spec, stamps_ns, *columns)
    if spec.kind == "pose":
        return transforms(spec, stamps_ns, columns[0])
    return sixes(spec, stamps_ns, columns[0])


class CyclonePublisher:
    """One participant with a DataWriter per topic, on a loopback-pinned domain."""

    name = "cyclonedds"

    def __init__(self, domain_id: int, specs: list[TopicSpec],
                 network: dds.NetworkOptions | None = None,
                 qos: dds.QosOptions | None = None) -> None:
        self.domain_id = domain_id
        self.specs = specs
        self.network = network or dds.NetworkOptions()
        self.qos = qos or dds.QosOptions()
        self._participant: Any = None
        self._topics: dict[str, Any] = {}
        self._writers: dict[str, DataWriter] = {}

    def open(self) -> None:
        """Create the participant and one writer per topic."""
        self._participant = dds.open_participant(self.domain_id, self.network)
        qos = dds.make_qos(self.qos)
        for spec in self.specs:
            kind: type[IdlStruct] = msgs.TYPES[spec.ros_type]
            topic = Topic(self._participant, msgs.ros_dds_topic(spec.topic), kind, qos=qos)
            self._topics[spec.topic] = topic
            self._writers[spec.topic] = DataWriter(self._participant, topic, qos=qos)

    def close(self, ack_timeout_s: float = 1.0) -> None:
        """Wait for acks (bounded), then delete writers, topics and the participant."""
        for topic, writer in self._writers.items():
            try:
                writer.wait_for_acks(int(ack_timeout_s * NS))
            except DDSException as err:  # a writer without readers has nothing to ack
                log.debug("wait_for_acks on %s: %s", topic, err)
        dds.delete_entities(*self._writers.values(), *self._topics.values(), self._participant)
        self._writers, self._topics, self._participant = {}, {}, None

    def write_samples(self, spec: TopicSpec, stamps_ns: IntArray,
                      columns: tuple[FloatArray, ...]) -> int:
        """Write one message per stamp; return how many were written."""
        write = self._writers[spec.topic].write
        batch = sample_messages(spec, stamps_ns, columns)
        for message in batch:
            write(message)
        return len(batch)

    def write_state(self, spec: TopicSpec, stamp_ns: int, state: str, homed: bool,
                    busy: bool) -> None:
        """Write one crtk_msgs/OperatingState."""
        self._writers[spec.topic].write(
            msgs.OperatingState(msgs.Header(msgs.stamp(stamp_ns), ""), state, homed, busy))

    def write_text(self, spec: TopicSpec, text: str) -> None:
        """Write one std_msgs/String."""
        self._writers[spec.topic].write(msgs.String(text))

    def write_serialized(self, spec: TopicSpec, payload: bytes) -> None:
        """Write raw bytes as the sample's serialized form (cyclonedds' raw write)."""
        padded = payload + b"\x00" * (-len(payload) % 4)
        ret = ddspy_write(self._writers[spec.topic]._ref, padded)
        if ret < 0:
            raise DDSException(ret, f"raw write on {spec.topic} failed")

    def matched(self, spec: TopicSpec) -> int:
        """Return how many readers match the topic's writer."""
        return len(self._writers[spec.topic].get_matched_subscriptions())
