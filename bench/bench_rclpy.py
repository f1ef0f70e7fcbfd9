"""Benchmark: the ros2 driver on the rclpy transport vs a plain rclpy subscriber, same run.

One rclpy publisher node (tests/integration/rclpy/rclpy_publisher.py: JointState and
TransformStamped per arm, a String every 10th period; Fast DDS, reliable) feeds two
consumer processes subscribed at the same time, so both see the same messages under the
same load:

- ``medgw``: Ros2Driver with ``transport: rclpy`` (raw CDR subscriptions -> the driver's
  batch decoder -> rings, metrics, staleness);
- ``plain``: an rclpy node with ordinary subscriptions (rclpy deserializes each message
  into its Python class) whose callbacks do the same conversion: the stamp and every
  value into preallocated numpy rows, the event text into a list.

Each runs twice in the same publisher run, once per rclpy executor: the transport's
default (rclpy's EventsExecutor) and the SingleThreadedExecutor that ``rclpy.spin`` uses
(``MEDGW_RCLPY_EXECUTOR=single`` for the driver), so four consumers share one run. The
headline ratio is medgw (its default) against a plain subscriber as rclpy users write it
(``rclpy.spin``: the SingleThreadedExecutor); the same-executor ratios are printed too.

Each consumer measures its own CPU (time.process_time) from its first to its last
message. Printed per rate: messages published and received by each, CPU per message and
the medgw/plain ratio. Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST, a random ROS_DOMAIN_ID). No assertion on time: it prints.

    .venv/bin/python bench/bench_rclpy.py                 # 100 Hz x 4 arms, 1 kHz x 2 arms
    .venv/bin/python bench/bench_rclpy.py --seconds 5 --arms-1k PSM1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PUBLISHER = ROOT / "tests" / "integration" / "rclpy" / "rclpy_publisher.py"
EVENT_EVERY = 10  # the publisher's String period
CONSUMERS = {  # consumer-executor -> label
    "medgw-events": "medgw driver, rclpy raw, EventsExecutor",
    "medgw-single": "medgw driver, rclpy raw, SingleThreaded",
    "plain-events": "plain rclpy subscriber, EventsExecutor",
    "plain-single": "plain rclpy subscriber, SingleThreaded",
}


def expected_total(arms: str, count: int) -> int:
    """Return how many messages the publisher sends for ``arms`` and ``count``."""
    n_arms = len(arms.split(","))
    return n_arms * (2 * count + len(range(0, count, EVENT_EVERY)))


class Window:
    """First-to-last-message CPU and wall time of this process, sampled every 2 ms."""

    def __init__(self, received: Callable[[], int]) -> None:
        self.received = received
        self.marks: dict[str, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last = 0
        while not self._done.is_set():
            n = self.received()
            now = time.monotonic()
            if n and "first" not in self.marks:
                self.marks["first"], self.marks["cpu0"] = now, time.process_time()
            if n > last:
                self.marks["last"], self.marks["cpu1"] = now, time.process_time()
                last = n
            time.sleep(0.002)

    def finish(self, total: int, timeout_s: float) -> dict[str, Any]:
        """Wait for ``total`` messages (bounded); return received, cpu_s, wall_s."""
        deadline = time.monotonic() + timeout_s
        while self.received() < total and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        self._done.set()
        self._thread.join()
        m = self.marks
        return {"received": self.received(), "cpu_s": m.get("cpu1", 0.0) - m.get("cpu0", 0.0),
                "wall_s": m.get("last", 0.0) - m.get("first", 0.0)}


def consume_medgw(domain: int, arms: str, rate: float, total: int,
                  timeout_s: float) -> dict[str, Any]:
    """The medgw path: Ros2Driver(transport rclpy) -> TopicPipeline -> RingStore."""
    from drivers.ros2 import Ros2Driver, Ros2Options
    from drivers.ros2.options import QosOptions
    from gateway.driver import DriverContext
    from gateway.metrics import GatewayMetrics
    from gateway.ring import RingStore

    ctx = DriverContext("bench", "robot", RingStore(total + 16), GatewayMetrics(),
                        logging.getLogger("bench"), ring_capacity=total + 16)
    driver = Ros2Driver(ctx, Ros2Options(transport="rclpy", domain_id=domain,
                                         patterns=[f"/{a}/*" for a in arms.split(",")],
                                         default_rate_hz=rate,
                                         qos=QosOptions(depth=1000)))
    loop = asyncio.new_event_loop()
    task = loop.create_task(driver.run())

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    window = Window(lambda: sum(p.received for p in driver.pipelines.values()))
    print("READY", flush=True)
    try:
        return window.finish(total, timeout_s)
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


class PlainSubscriber:
    """rclpy subscriptions that convert each deserialized message into numpy rows."""

    def __init__(self, domain: int, arms: list[str], capacity: int, executor: str) -> None:
        import numpy as np
        import rclpy
        from geometry_msgs.msg import TransformStamped
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        self.np = np
        self.count = 0
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("bench_plain_subscriber", context=self.context)
        if executor == "events":
            from rclpy.experimental import EventsExecutor

            self.executor = EventsExecutor(context=self.context)
        else:
            self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=1000)
        self.stamps = np.zeros(capacity, dtype=np.int64)
        self.rows = np.zeros((capacity, 21), dtype=np.float64)
        self.texts: list[str] = []
        for arm in arms:
            self.node.create_subscription(JointState, f"/{arm}/measured_js", self._joints, qos)
            self.node.create_subscription(TransformStamped, f"/{arm}/measured_cp", self._pose,
                                          qos)
            self.node.create_subscription(String, f"/{arm}/error", self._text, qos)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _stamp(self, msg: Any) -> int:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)

    def _joints(self, msg: Any) -> None:
        i = self.count % len(self.stamps)
        self.stamps[i] = self._stamp(msg)
        values = self.np.stack([self.np.asarray(msg.position), self.np.asarray(msg.velocity),
                                self.np.asarray(msg.effort)], axis=1).ravel()
        self.rows[i, :values.size] = values
        self.count += 1

    def _pose(self, msg: Any) -> None:
        i = self.count % len(self.stamps)
        self.stamps[i] = self._stamp(msg)
        t, r = msg.transform.translation, msg.transform.rotation
        self.rows[i, :7] = (t.x, t.y, t.z, r.x, r.y, r.z, r.w)
        self.count += 1

    def _text(self, msg: Any) -> None:
        self.texts.append(msg.data)
        self.count += 1

    def close(self) -> None:
        """Stop spinning, destroy the node, shut the context down."""
        self._stop.set()
        self._thread.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def consume_plain(domain: int, arms: str, total: int, timeout_s: float,
                  executor: str) -> dict[str, Any]:
    """The baseline: plain rclpy subscriptions doing the same conversion."""
    sub = PlainSubscriber(domain, arms.split(","), total + 16, executor)
    window = Window(lambda: sub.count)
    print("READY", flush=True)
    try:
        return window.finish(total, timeout_s)
    finally:
        sub.close()


def _env(domain: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=str(ROOT))
    env.pop("ROS_STATIC_PEERS", None)
    return env


def run_once(arms: str, rate: float, seconds: float, domain: int) -> dict[str, Any]:
    """One publisher run consumed by both consumers at once; return their reports."""
    count = int(rate * seconds)
    total = expected_total(arms, count)
    timeout = seconds * 4 + 60
    consumers = {}
    for kind in CONSUMERS:
        consumer, executor = kind.split("-")
        consumers[kind] = subprocess.Popen(
            [sys.executable, __file__, "--consumer", consumer, "--executor", executor,
             "--domain", str(domain), "--rate", str(rate), "--arms", arms, "--total",
             str(total), "--timeout", str(timeout)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**_env(domain), "MEDGW_RCLPY_EXECUTOR": executor})
    for proc in consumers.values():
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("a consumer did not start")
    pub = subprocess.run(
        [sys.executable, str(PUBLISHER), "--domain", str(domain), "--arms", arms, "--rate",
         str(rate), "--count", str(count), "--subscribers", str(len(CONSUMERS)), "--wait", "60"],
        input="", capture_output=True, text=True, env=_env(domain), timeout=timeout, cwd=ROOT)
    lines = pub.stdout.strip().splitlines()
    published: dict[str, Any] = (json.loads(lines[-1]) if lines
                                 else {"error": pub.stderr[-2000:]})
    if "error" in published:
        for proc in consumers.values():
            proc.kill()
        raise RuntimeError(f"publisher failed: {published}")
    reports = {"published": sum(published.get("published", {}).values())}
    for kind, proc in consumers.items():
        out, _ = proc.communicate(timeout=timeout)
        reports[kind] = json.loads(out.strip().splitlines()[-1])
    return reports


def report(label: str, rate: float, arms: str, result: dict[str, Any]) -> None:
    """Print one rate's table and the CPU-per-message ratio."""
    print(f"\n== {label}: {arms} at {rate:g} Hz, {result['published']} messages published ==")
    print(f"{'consumer':<40}{'received':>10}{'cpu us/msg':>12}{'cpu %':>8}")
    per_msg = {}
    for kind, name in CONSUMERS.items():
        r = result[kind]
        per_msg[kind] = 1e6 * r["cpu_s"] / r["received"] if r["received"] else float("nan")
        share = 100 * r["cpu_s"] / r["wall_s"] if r["wall_s"] > 0 else float("nan")
        print(f"{name:<40}{r['received']:>10}{per_msg[kind]:>12.1f}{share:>8.0f}")
    print(f"ratio medgw/plain CPU per message: "
          f"{per_msg['medgw-events'] / per_msg['plain-single']:.2f} (medgw default vs "
          f"rclpy.spin); same executor: events "
          f"{per_msg['medgw-events'] / per_msg['plain-events']:.2f}, single "
          f"{per_msg['medgw-single'] / per_msg['plain-single']:.2f}")


def main() -> None:
    """Run the 100 Hz and 1 kHz scenarios (or one consumer, when --consumer is given)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="publishing time per rate")
    p.add_argument("--arms-100", default="PSM1,PSM2,PSM3,ECM", help="arms at 100 Hz")
    p.add_argument("--arms-1k", default="PSM1,PSM2", help="arms at 1 kHz")
    p.add_argument("--consumer", choices=("medgw", "plain"), help=argparse.SUPPRESS)
    p.add_argument("--executor", choices=("events", "single"), help=argparse.SUPPRESS)
    p.add_argument("--domain", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    p.add_argument("--arms", help=argparse.SUPPRESS)
    p.add_argument("--total", type=int, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.consumer == "medgw":
        print(json.dumps(consume_medgw(args.domain, args.arms, args.rate, args.total,
                                       args.timeout)))
        return
    if args.consumer == "plain":
        print(json.dumps(consume_plain(args.domain, args.arms, args.total, args.timeout,
                                       args.executor)))
        return
    domain = random.Random(os.getpid() ^ time.time_ns()).randint(1, 200)
    print(f"cpus: {os.cpu_count()}  domain: {domain}  python: {sys.version.split()[0]}  "
          f"RMW: {os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}")
    for i, (label, rate, arms) in enumerate((("100 Hz", 100.0, args.arms_100),
                                             ("1 kHz", 1000.0, args.arms_1k))):
        # a domain per run: the previous run's publisher may linger in a new graph cache
        report(label, rate, arms, run_once(arms, rate, args.seconds, (domain + i) % 200 + 1))


if __name__ == "__main__":
    main()
