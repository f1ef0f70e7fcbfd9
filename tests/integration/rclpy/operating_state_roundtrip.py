"""An OperatingState type built by colcon, through the rclpy transport.

``python operating_state_roundtrip.py [PACKAGE]`` (medgw_msgs by default, or crtk_msgs),
run with the environment of the workspace's ``install/setup.sh``: an rclpy node publishes
three states with the generated Python type, the ros2 driver (transport rclpy, the topic
configured with that type) reads them into its event ring; prints the states it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import sys
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.node import Node

from drivers.ros2 import Ros2Driver, Ros2Options, TopicOptions
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore

TOPIC, STATES = "/PSM1/operating_state", ("ENABLED", "FAULT", "ENABLED")


def _run(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)


def main() -> int:
    """Publish three states, wait until the driver's ring holds them, print them."""
    package = sys.argv[1] if len(sys.argv) > 1 else "medgw_msgs"
    state_type = importlib.import_module(f"{package}.msg").OperatingState
    ctx = DriverContext("s", "d", RingStore(64), GatewayMetrics(), logging.getLogger("rt"))
    domain = int(os.environ["ROS_DOMAIN_ID"])
    driver = Ros2Driver(ctx, Ros2Options(transport="rclpy", domain_id=domain, topics=[
        TopicOptions(name=TOPIC, type=f"{package}/msg/OperatingState")]))
    loop = asyncio.new_event_loop()
    task = loop.create_task(driver.run())
    thread = threading.Thread(target=_run, args=(loop, task), daemon=True)
    thread.start()
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node = Node("medgw_state_publisher", context=context)
    pub = node.create_publisher(state_type, TOPIC, 10)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    for state in STATES:
        msg = state_type(state=state, is_homed=True)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        pub.publish(msg)
    pub.wait_for_all_acked(Duration(seconds=10))
    texts: list[str] = []
    while time.monotonic() < deadline:
        try:
            batch = ctx.store.ring("s/d/PSM1.operating_state").snapshot()
        except KeyError:
            batch = None
        texts = [] if batch is None else [str(t) for t in batch.text or ()]
        if len(texts) >= len(STATES):
            break
        time.sleep(0.05)
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=10)
    node.destroy_node()
    context.try_shutdown()
    print(",".join(texts), flush=True)
    return 0 if tuple(texts) == STATES else 1


if __name__ == "__main__":
    sys.exit(main())
