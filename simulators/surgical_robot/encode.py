"""CDR encoders for the simulator: ROS 2 payloads built like a ROS 2 publisher builds them.

Sampled topics are encoded batch-wise: a prototype payload is built once with the CDR
writer, the decoder tells where the stamp and each float64 sit, and a batch of stamps and
values is written into a tiled copy of the prototype with numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drivers.ros2.cdr import CdrWriter
from drivers.ros2.mapping import decode, type_mapping

NS = 1_000_000_000
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def joint_state(stamp_ns: int, frame_id: str, names: tuple[str, ...], position: FloatArray,
                velocity: FloatArray, effort: FloatArray) -> bytes:
    """Encode a sensor_msgs/JointState."""
    w = CdrWriter()
    w.header(stamp_ns, frame_id)
    w.strings(names)
    w.float64s(position)
    w.float64s(velocity)
    w.float64s(effort)
    return w.payload()


def transform_stamped(stamp_ns: int, frame_id: str, child: str, pose: FloatArray) -> bytes:
    """Encode a geometry_msgs/TransformStamped from x y z qx qy qz qw."""
    w = CdrWriter()
    w.header(stamp_ns, frame_id)
    w.string(child)
    for value in np.asarray(pose, dtype=np.float64).reshape(7):
        w.float64(float(value))
    return w.payload()


def six_stamped(stamp_ns: int, frame_id: str, values: FloatArray) -> bytes:
    """Encode a geometry_msgs/TwistStamped or WrenchStamped (two Vector3)."""
    w = CdrWriter()
    w.header(stamp_ns, frame_id)
    for value in np.asarray(values, dtype=np.float64).reshape(6):
        w.float64(float(value))
    return w.payload()


def operating_state(stamp_ns: int, state: str, is_homed: bool, is_busy: bool) -> bytes:
    """Encode a crtk_msgs/OperatingState."""
    w = CdrWriter()
    w.header(stamp_ns, "")
    w.string(state)
    w.boolean(is_homed)
    w.boolean(is_busy)
    return w.payload()


def string(text: str) -> bytes:
    """Encode a std_msgs/String."""
    w = CdrWriter()
    w.string(text)
    return w.payload()


class BatchEncoder:
    """Encodes batches of (stamp, values) into copies of a prototype payload."""

    def __init__(self, ros_type: str, prototype: bytes, topic: str = "/prototype") -> None:
        mapping = type_mapping(ros_type)
        if mapping is None or mapping.is_event:
            raise ValueError(f"{ros_type} has no fixed-layout batch encoding")
        decoded = decode(mapping, prototype, topic)
        assert decoded.value_offsets is not None
        self.width = int(decoded.value_offsets.shape[0])
        self.template = np.frombuffer(prototype, dtype=np.uint8)
        self.stamp_offset = decoded.stamp_offset
        self.value_idx = (decoded.value_offsets[:, None] + np.arange(8)[None, :]).reshape(-1)

    def encode(self, stamps_ns: IntArray, values: FloatArray) -> list[bytes]:
        """Return one payload per row; ``values`` are in stream-field order."""
        n = int(stamps_ns.shape[0])
        if values.shape != (n, self.width):
            raise ValueError(f"values shaped {values.shape}, expected ({n}, {self.width})")
        mat = np.tile(self.template, (n, 1))
        if self.stamp_offset >= 0:
            sec, nanosec = np.divmod(stamps_ns.astype(np.int64), NS)
            stamp = np.empty((n, 2), dtype="<u4")
            stamp[:, 0] = sec.astype("<i4").view("<u4")
            stamp[:, 1] = nanosec
            mat[:, self.stamp_offset:self.stamp_offset + 8] = stamp.view(np.uint8).reshape(n, 8)
        raw = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, -1)
        mat[:, self.value_idx] = raw
        flat = mat.tobytes()
        size = self.template.shape[0]
        return [flat[i * size:(i + 1) * size] for i in range(n)]
