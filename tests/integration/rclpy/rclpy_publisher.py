"""A real rclpy node (rclpy's own message types, the system RMW: Fast DDS) for the tests.

Run as a script: waits until every publisher has a subscriber, publishes ``count`` messages
per sampled topic at ``rate`` Hz (JointState, TransformStamped; String every 10th period),
waits for the subscribers' acknowledgements and prints one JSON line with what it
published. Values are a function of the index so tests can check them exactly:
joint k of message i: position i + k/10, velocity -i, effort 2 i; the transform's
translation (i, 2 i, 3 i), rotation (0, 0, 0, 1); stamps start_ns + i * period.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String

JOINTS = ("outer_yaw", "outer_pitch", "outer_insertion", "outer_roll", "outer_wrist_pitch",
          "outer_wrist_yaw", "jaw")
EVENT_EVERY = 10


def joint_state(i: int, stamp_ns: int) -> JointState:
    """Return JointState number ``i`` (see the module docstring for its values)."""
    msg = JointState()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "PSM1_base"
    msg.name = list(JOINTS)
    msg.position = [i + k / 10 for k in range(len(JOINTS))]
    msg.velocity = [float(-i)] * len(JOINTS)
    msg.effort = [2.0 * i] * len(JOINTS)
    return msg


def transform(i: int, stamp_ns: int) -> TransformStamped:
    """Return TransformStamped number ``i``."""
    msg = TransformStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "world"
    msg.child_frame_id = "tool"
    msg.transform.translation.x, msg.transform.translation.y = float(i), 2.0 * i
    msg.transform.translation.z = 3.0 * i
    msg.transform.rotation.w = 1.0
    return msg


def main(argv: list[str] | None = None) -> int:
    """Publish, wait for acks, print {"published": {topic: n}, "start_ns": ..., ...}."""
    p = argparse.ArgumentParser()
    p.add_argument("--domain", type=int, required=True)
    p.add_argument("--arms", default="PSM1")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--depth", type=int, default=1000)
    p.add_argument("--subscribers", type=int, default=1, help="wait for this many per topic")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for subscribers")
    args = p.parse_args(argv)
    rclpy.init(domain_id=args.domain)
    node = Node("medgw_test_robot")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    pubs = {}
    for arm in args.arms.split(","):
        pubs[f"/{arm}/measured_js"] = node.create_publisher(JointState, f"/{arm}/measured_js", qos)
        pubs[f"/{arm}/measured_cp"] = node.create_publisher(TransformStamped,
                                                            f"/{arm}/measured_cp", qos)
        pubs[f"/{arm}/error"] = node.create_publisher(String, f"/{arm}/error", qos)
    deadline = time.monotonic() + args.wait
    while any(pub.get_subscription_count() < args.subscribers for pub in pubs.values()):
        if time.monotonic() > deadline:
            missing = [t for t, pub in pubs.items() if pub.get_subscription_count() < 1]
            print(json.dumps({"error": "no subscriber", "topics": missing}), flush=True)
            return 1
        time.sleep(0.05)
    period_ns = int(1e9 / args.rate)
    published = dict.fromkeys(pubs, 0)
    start_ns = time.time_ns()
    t0 = time.monotonic_ns()
    for i in range(args.count):
        stamp = start_ns + i * period_ns
        for topic, pub in pubs.items():
            if topic.endswith("/measured_js"):
                pub.publish(joint_state(i, stamp))
            elif topic.endswith("/measured_cp"):
                pub.publish(transform(i, stamp))
            elif i % EVENT_EVERY == 0:
                pub.publish(String(data=f"fault {i}"))
            else:
                continue
            published[topic] += 1
        delay = t0 + (i + 1) * period_ns - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
    acked = all(pub.wait_for_all_acked(Duration(seconds=20)) for pub in pubs.values())
    print(json.dumps({"published": published, "start_ns": start_ns, "period_ns": period_ns,
                      "acked": acked}), flush=True)
    sys.stdin.read()  # stay matched until the test closes stdin
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
