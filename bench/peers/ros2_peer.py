"""The ROS 2 peer of bench_peers.py: a plain rclpy node writing line protocol to InfluxDB.

What a competent integrator writes without medgw, in one file:

- ``rclpy.init`` + one node spun by the SingleThreadedExecutor (as ``rclpy.spin``);
- a subscription per arm to ``/<arm>/measured_js`` with the rclpy message class
  (``sensor_msgs.msg.JointState``; rclpy deserializes every message), reliable, volatile,
  keep-last ``--depth``;
- the callback turns the message into one line of line protocol: measurement
  ``joint_state``, tag ``arm``, a field per joint and quantity (``<joint>_pos``,
  ``_vel``, ``_eff``), the header stamp as the point's time (ns);
- lines are batched: the batch is written when it reaches ``--batch`` lines (500) or,
  by a 100 ms timer, when its first line is older than ``--flush-ms``;
- a write is ``requests.post(URL/write?db=...&precision=ns)`` on a kept-alive session,
  in the executor's thread (it blocks the callbacks while it runs). A failed write (no
  connection, timeout, 5xx) is retried ``--retries`` times, 0.5 s apart; then the batch
  is dropped with a line on stderr. There is no disk buffer.

On SIGTERM/SIGINT it flushes once (one attempt) and prints its counts as JSON on stdout:
messages received, lines written, batches written, batches dropped, lines dropped.

    python bench/peers/ros2_peer.py --domain 7 --arms PSM1,PSM2 --url http://127.0.0.1:8086 \\
        --database rclpy_bench

Discovery stays on this machine: the caller sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

import requests


class LineWriter:
    """Batches lines and POSTs them to InfluxDB 1.x /write; retries, then drops."""

    def __init__(self, url: str, database: str, batch: int, flush_ms: float,
                 retries: int) -> None:
        self.endpoint = f"{url}/write"
        self.params = {"db": database, "precision": "ns"}
        self.session = requests.Session()
        self.batch = batch
        self.flush_s = flush_ms / 1000.0
        self.retries = retries
        self.lines: list[str] = []
        self.first_at = 0.0
        self.stats = {"lines_written": 0, "batches_written": 0, "batches_dropped": 0,
                      "lines_dropped": 0}

    def add(self, line: str) -> None:
        """Queue one line; write the batch when it is full."""
        if not self.lines:
            self.first_at = time.monotonic()
        self.lines.append(line)
        if len(self.lines) >= self.batch:
            self.flush()

    def tick(self) -> None:
        """Timer: write the batch once its first line waited ``flush_ms``."""
        if self.lines and time.monotonic() - self.first_at >= self.flush_s:
            self.flush()

    def flush(self, retries: int | None = None) -> None:
        """Write the queued lines (retrying); drop them when every attempt failed."""
        lines, self.lines = self.lines, []
        if not lines:
            return
        body = "\n".join(lines).encode()
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            try:
                resp = self.session.post(self.endpoint, params=self.params, data=body,
                                         timeout=5)
                if resp.status_code < 300:
                    self.stats["lines_written"] += len(lines)
                    self.stats["batches_written"] += 1
                    return
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code < 500:
                    break  # a 4xx will not get better
            except requests.RequestException as err:
                error = type(err).__name__
            if attempt + 1 < attempts:
                time.sleep(0.5)
        self.stats["batches_dropped"] += 1
        self.stats["lines_dropped"] += len(lines)
        print(f"ros2_peer: dropped a batch of {len(lines)} lines ({error})", file=sys.stderr,
              flush=True)


def to_line(arm: str, msg: Any) -> str:
    """Return one JointState message as a line of line protocol."""
    fields = []
    for name, pos, vel, eff in zip(msg.name, msg.position, msg.velocity, msg.effort,
                                   strict=False):
        fields.append(f"{name}_pos={pos!r},{name}_vel={vel!r},{name}_eff={eff!r}")
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return f"joint_state,arm={arm} {','.join(fields)} {stamp}"


def main() -> None:
    """Run the node until SIGTERM; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", type=int, required=True)
    parser.add_argument("--arms", default="PSM1,PSM2,PSM3,ECM")
    parser.add_argument("--url", required=True, help="InfluxDB 1.x URL")
    parser.add_argument("--database", required=True)
    parser.add_argument("--depth", type=int, default=100, help="reader keep-last depth")
    parser.add_argument("--batch", type=int, default=500, help="lines per write")
    parser.add_argument("--flush-ms", type=float, default=100.0)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node("plain_influx_bridge")
    writer = LineWriter(args.url, args.database, args.batch, args.flush_ms, args.retries)
    received = [0]
    qos = QoSProfile(depth=args.depth, reliability=ReliabilityPolicy.RELIABLE)

    def subscribe(arm: str) -> None:
        def callback(msg: JointState) -> None:
            received[0] += 1
            writer.add(to_line(arm, msg))
        node.create_subscription(JointState, f"/{arm}/measured_js", callback, qos)

    for arm in args.arms.split(","):
        subscribe(arm)
    node.create_timer(0.1, writer.tick)
    stopping = [False]

    def stop(*_: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    executor = SingleThreadedExecutor()  # what rclpy.spin uses; a loop to stop cleanly
    executor.add_node(node)
    print("READY", flush=True)
    while not stopping[0]:
        executor.spin_once(timeout_sec=0.1)
    writer.flush(retries=0)
    print(json.dumps({"received": received[0], **writer.stats}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
