"""Benchmark: ROS 2 messages/s through the ros2 driver into the rings vs a raw cyclonedds take loop.

The publisher is the surgical robot simulator in a subprocess (a separate DDS participant on
loopback, like a real robot). For each scenario the same publisher run is consumed twice,
one after the other: once by the medgw ros2 driver (decode + ring append + metrics), once by
a raw cyclonedds loop (DataReader.take with IdlStruct deserialization, the library's
ordinary API), and once more by a raw-bytes take loop (the floor: no decoding at all).
Printed: messages published/received/lost, msg/s, consumer CPU per message, and ratios.

    /tmp/venv/bin/python bench/bench_ros2.py            # ~1.5 min on a 2-core box
    /tmp/venv/bin/python bench/bench_ros2.py --seconds 5 --quick
    MEDGW_BENCH_WINDOW_MS=2 /tmp/venv/bin/python bench/bench_ros2.py   # another batch window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cyclonedds.core import ReadCondition, WaitSet  # noqa: E402
from cyclonedds.internal import InvalidSample  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402

from drivers.ros2 import Ros2Driver, Ros2Options, TopicOptions, dds  # noqa: E402
from drivers.ros2.msgs import dds_topic_name, idl_type  # noqa: E402
from gateway.driver import DriverContext  # noqa: E402
from gateway.metrics import GatewayMetrics  # noqa: E402
from gateway.ring import RingStore  # noqa: E402
from simulators.surgical_robot.sim import SAMPLED_TOPICS  # noqa: E402

READER_QOS = dds.QosOptions(depth=100)  # the driver's default reader QoS, used by all three
# the driver's batch_window_ms; unset: the driver's default (Ros2Options)
BATCH_WINDOW_MS = os.environ.get("MEDGW_BENCH_WINDOW_MS")


@dataclass(frozen=True)
class Scenario:
    """One publisher configuration."""

    name: str
    arms: str
    rate_hz: float
    topics: tuple[str, ...]

    def topic_names(self) -> list[str]:
        return [f"/{arm}/{suffix}" for arm in self.arms.split(",") for suffix in self.topics
                if not (suffix.startswith("jaw/") and arm.startswith("ECM"))]


@dataclass
class Result:
    """What one consumer saw of one publisher run."""

    consumer: str
    published: int
    received: int
    wall_s: float
    cpu_s: float
    pub_cpu_s: float

    @property
    def lost(self) -> int:
        return self.published - self.received

    @property
    def rate(self) -> float:
        return self.received / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_us_per_msg(self) -> float:
        return 1e6 * self.cpu_s / self.received if self.received else float("nan")


def run_publisher(scenario: Scenario, domain: int, count: int) -> subprocess.Popen[str]:
    """Start the simulator; it waits for readers on every topic, then publishes ``count``."""
    cmd = [sys.executable, "-m", "simulators.surgical_robot.cli", "--arms", scenario.arms,
           "--rate", str(scenario.rate_hz), "--domain", str(domain), "--count", str(count),
           "--topics", ",".join(scenario.topics), "--no-events", "--wait-subscribers", "30",
           "--stats"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def finish_publisher(proc: subprocess.Popen[str], timeout: float) -> tuple[dict[str, int], float]:
    """Wait for the simulator; return (published per topic, its CPU seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # os.wait4, not proc.poll(): we want its rusage
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            out = proc.stdout.read() if proc.stdout else ""
            stats = json.loads(out.strip().splitlines()[-1])
            return stats["published"], usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("publisher did not finish in time")


def consume_with_driver(scenario: Scenario, domain: int, count: int) -> Result:
    """The medgw path: Ros2Driver -> TopicPipeline -> RingStore."""
    ctx = DriverContext("bench", "robot", RingStore(count + 16), GatewayMetrics(),
                        logging.getLogger("bench"), ring_capacity=count + 16)
    topics = [TopicOptions(name=t, type=SAMPLED_TOPICS[t.split("/", 2)[2]],
                           rate_hz=scenario.rate_hz) for t in scenario.topic_names()]
    options = Ros2Options(domain_id=domain, topics=topics, qos=READER_QOS,
                          transport="cyclonedds")  # the raw baseline is cyclonedds too
    if BATCH_WINDOW_MS is not None:
        options = options.model_copy(update={"batch_window_ms": float(BATCH_WINDOW_MS)})
    driver = Ros2Driver(ctx, options)
    loop = asyncio.new_event_loop()
    task = loop.create_task(driver.run())
    thread = threading.Thread(target=lambda: _run_until_cancelled(loop, task), daemon=True)
    thread.start()

    def received() -> int:
        return sum(p.received for p in driver.pipelines.values())

    try:
        return _measure("medgw driver", scenario, domain, count, received)
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def _run_until_cancelled(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


def consume_raw(scenario: Scenario, domain: int, count: int, decode: bool) -> Result:
    """The raw library: a WaitSet + take loop over one DataReader per topic."""
    participant = dds.open_participant(domain)
    qos = dds.make_qos(READER_QOS)
    waitset = WaitSet(participant)
    readers = []
    for name in scenario.topic_names():
        ros_type = SAMPLED_TOPICS[name.split("/", 2)[2]]
        topic = Topic(participant, dds_topic_name(name), idl_type(ros_type), qos=qos)
        reader = DataReader(participant, topic, qos=qos)
        cond = ReadCondition(reader, dds.ANY_STATE)
        waitset.attach(cond)
        readers.append((topic, reader, cond))
    total = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            waitset.wait(duration(milliseconds=20))
            for _, reader, _ in readers:
                while True:
                    if decode:
                        samples = reader.take(N=256)
                        got = len(samples)
                        total[0] += sum(1 for x in samples if not isinstance(x, InvalidSample))
                    else:
                        got = len(dds.take_raw(reader, 256))
                        total[0] += got
                    if got < 256:
                        break

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        label = "raw take+deserialize" if decode else "raw take (bytes only)"
        return _measure(label, scenario, domain, count, lambda: total[0])
    finally:
        stop.set()
        thread.join(10)
        for _, _, cond in readers:
            waitset.detach(cond)
        entities: list[Any] = [c for _, _, c in readers] + [r for _, r, _ in readers]
        entities += [t for t, _, _ in readers]
        dds.delete_entities(*entities, waitset, participant)


def _measure(label: str, scenario: Scenario, domain: int, count: int,
             received: Callable[[], int]) -> Result:
    """Run one publisher against a consumer; time from first to last message received."""
    proc = run_publisher(scenario, domain, count)
    window: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:  # samples the consumer's count every 2 ms
        last_n = 0
        while not done.is_set():
            n = received()
            now = time.monotonic()
            if n and "first" not in window:
                window["first"], window["cpu0"] = now, time.process_time()
            if n > last_n:  # the window ends at the last message, not at the last poll
                window["last"], window["cpu1"] = now, time.process_time()
                last_n = n
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    expected_s = count / scenario.rate_hz
    published, pub_cpu = finish_publisher(proc, timeout=expected_s * 4 + 60)
    total = sum(published.values())
    deadline = time.monotonic() + 5
    while received() < total and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    done.set()
    watcher.join()
    wall = max(window.get("last", 0.0) - window.get("first", 0.0), 1e-9)
    cpu = window.get("cpu1", 0.0) - window.get("cpu0", 0.0)
    return Result(label, total, received(), wall, cpu, pub_cpu)


def report(scenario: Scenario, results: list[Result]) -> None:
    """Print one scenario's table and the ratios against the raw loop."""
    n_topics = len(scenario.topic_names())
    offered = n_topics * scenario.rate_hz
    print(f"\n== {scenario.name}: {n_topics} topics x {scenario.rate_hz:g} Hz = "
          f"{offered:,.0f} msg/s offered ==")
    print(f"{'consumer':<24}{'published':>10}{'received':>10}{'lost':>7}{'msg/s':>10}"
          f"{'cpu us/msg':>12}{'cpu %':>7}{'pub cpu s':>10}")
    for r in results:
        print(f"{r.consumer:<24}{r.published:>10}{r.received:>10}{r.lost:>7}{r.rate:>10,.0f}"
              f"{r.cpu_us_per_msg:>12.1f}{100 * r.cpu_s / r.wall_s:>7.0f}"
              f"{r.pub_cpu_s:>10.1f}")
    driver, raw = results[0], results[1]
    print(f"ratio driver/raw msg/s: {driver.rate / raw.rate:.2f}   "
          f"ratio driver/raw CPU per message: {driver.cpu_us_per_msg / raw.cpu_us_per_msg:.2f}")
    share = driver.lost / max(driver.published, 1)
    verdict = "no loss" if driver.lost == 0 else f"LOST {driver.lost} ({share:.2%})"
    print(f"driver at {offered:,.0f} msg/s offered: {verdict}; consumer CPU "
          f"{100 * driver.cpu_s / driver.wall_s:.0f}% of one core")


def main() -> None:
    """Run the scenarios and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time per run")
    parser.add_argument("--quick", action="store_true", help="only the 1 kHz robot scenario")
    parser.add_argument("--stress", action="store_true",
                        help="also every sampled CRTK topic at 1 kHz (28,000 msg/s offered)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scenarios = [Scenario("full robot at 1 kHz", "PSM1,PSM2,PSM3,ECM", 1000.0,
                          ("measured_js", "measured_cp", "measured_cv"))]
    if not args.quick:
        scenarios.append(Scenario("every CRTK topic at 100 Hz", "PSM1,PSM2,PSM3,ECM", 100.0,
                                  tuple(SAMPLED_TOPICS)))
    if args.stress:
        scenarios.append(Scenario("stress: every sampled topic at 1 kHz", "PSM1,PSM2,PSM3,ECM",
                                  1000.0, tuple(SAMPLED_TOPICS)))
    domain = dds.pick_domain_id()
    window = (Ros2Options.model_fields["batch_window_ms"].default if BATCH_WINDOW_MS is None
              else float(BATCH_WINDOW_MS))
    print(f"cpus: {os.cpu_count()}  domain: {domain}  python: {sys.version.split()[0]}  "
          f"driver batch_window_ms: {window:g}")
    for scenario in scenarios:
        count = int(args.seconds * scenario.rate_hz)
        results = [consume_with_driver(scenario, domain, count),
                   consume_raw(scenario, domain, count, decode=True),
                   consume_raw(scenario, domain, count, decode=False)]
        report(scenario, results)


if __name__ == "__main__":
    main()
