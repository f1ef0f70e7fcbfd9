"""A real ROS 2 node on Fast DDS (rclpy's own message types) for the interop tests.

Run as a child process (``python fastdds_publisher.py PREFIX N RATE_HZ WAIT_S``) with
RMW_IMPLEMENTATION=rmw_fastrtps_cpp, ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST set by the test. It publishes N messages of every mapped type that has a Python
package on ``PREFIX/<name>`` (values derived from the index, see :func:`expected`), after
each topic has a subscriber or WAIT_S passed (a Fast DDS writer counts a reader as matched
even when the reader never matched it: that is what the tests look for). Prints ``READY``
and ``DONE``, then keeps the node alive (reliable repairs) until stdin closes.
"""

from __future__ import annotations

import sys
import time
from typing import Any

NS = 1_000_000_000
START_SEC = 1_700_000_000
TOPICS = {  # name -> ROS type
    "measured_js": "sensor_msgs/msg/JointState",
    "measured_cp": "geometry_msgs/msg/TransformStamped",
    "local/measured_cp": "geometry_msgs/msg/Transform",
    "setpoint_cp": "geometry_msgs/msg/PoseStamped",
    "body/pose": "geometry_msgs/msg/Pose",
    "measured_cv": "geometry_msgs/msg/TwistStamped",
    "body/twist": "geometry_msgs/msg/Twist",
    "body/measured_cf": "geometry_msgs/msg/WrenchStamped",
    "body/wrench": "geometry_msgs/msg/Wrench",
    "error": "std_msgs/msg/String",
}
JOINTS = ["outer_yaw", "outer_pitch", "outer_insertion", "outer_roll"]


def stamp_ns(i: int) -> int:
    """Return the header stamp of message ``i``."""
    return START_SEC * NS + i * 10_000_000


def expected(ros_type: str, i: int) -> list[float]:
    """Return the values the driver must decode from message ``i`` of ``ros_type``."""
    if ros_type.endswith("JointState"):
        return [v for j in range(len(JOINTS)) for v in (i + j / 10, -i - j / 10, j * 1.5)]
    if ros_type.endswith("String"):
        return [2.0]  # the topic is named "error": severity ERROR
    base = [i + k / 8 for k in range(7 if "Transform" in ros_type or "Pose" in ros_type
                                     else 6)]
    return base


def _build(ros_type: str, i: int) -> Any:
    from geometry_msgs import msg as g
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    v = expected(ros_type, i)
    name = ros_type.rsplit("/", 1)[-1]
    if name == "JointState":
        m = JointState(name=JOINTS, position=v[0::3], velocity=v[1::3], effort=v[2::3])
    elif name == "String":
        return String(data=f"fault {i}")
    elif name in ("Transform", "TransformStamped"):
        t = g.Transform(translation=g.Vector3(x=v[0], y=v[1], z=v[2]),
                        rotation=g.Quaternion(x=v[3], y=v[4], z=v[5], w=v[6]))
        m = t if name == "Transform" else g.TransformStamped(transform=t, child_frame_id="tip")
    elif name in ("Pose", "PoseStamped"):
        p = g.Pose(position=g.Point(x=v[0], y=v[1], z=v[2]),
                   orientation=g.Quaternion(x=v[3], y=v[4], z=v[5], w=v[6]))
        m = p if name == "Pose" else g.PoseStamped(pose=p)
    else:
        first, second = g.Vector3(x=v[0], y=v[1], z=v[2]), g.Vector3(x=v[3], y=v[4], z=v[5])
        if name.startswith("Twist"):
            m = g.Twist(linear=first, angular=second)
            m = m if name == "Twist" else g.TwistStamped(twist=m)
        else:
            m = g.Wrench(force=first, torque=second)
            m = m if name == "Wrench" else g.WrenchStamped(wrench=m)
    if hasattr(m, "header"):
        s = stamp_ns(i)
        m.header.stamp.sec, m.header.stamp.nanosec = s // NS, s % NS
        m.header.frame_id = "base"
    return m


def main() -> None:
    """Publish, report, linger."""
    import importlib

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    prefix, n, rate, wait_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    rclpy.init()
    node = rclpy.create_node("medgw_fastdds_test_publisher")
    qos = QoSProfile(depth=max(n, 10), reliability=ReliabilityPolicy.RELIABLE,
                     history=HistoryPolicy.KEEP_LAST)
    pubs = {}
    for name, ros_type in TOPICS.items():
        pkg, _, cls = ros_type.split("/")
        msg_type = getattr(importlib.import_module(f"{pkg}.msg"), cls)
        pubs[name] = (node.create_publisher(msg_type, f"{prefix}/{name}", qos), ros_type)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(
            p.get_subscription_count() > 0 for p, _ in pubs.values()):
        time.sleep(0.05)
    print("READY", flush=True)
    for i in range(n):
        for pub, ros_type in pubs.values():
            pub.publish(_build(ros_type, i))
        time.sleep(1.0 / rate)
    print("DONE", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
