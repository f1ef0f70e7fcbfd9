"""Fixtures for ROS 2 integration tests: real Cyclone DDS participants on loopback.

Every test gets its own random DDS domain id, so parallel runs on one machine stay apart.
The driver runs in its own asyncio loop in a thread, as the daemon runs it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from drivers.ros2 import Ros2Driver, Ros2Options, dds
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import Quality
from gateway.ring import RingStore, StreamRing
from simulators.surgical_robot import RobotSimulator, SimConfig
from tests.helpers import unique_domain_id

pytestmark = pytest.mark.integration

SITE, DEVICE = "test-site", "robot-1"


class DriverRunner:
    """Runs ``driver.run()`` in a private event loop on a thread until stopped."""

    def __init__(self, driver: Ros2Driver) -> None:
        self.driver = driver
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="driver-loop")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.driver.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as err:  # surfaced by stop()
            self.error = err
        finally:
            self.loop.close()

    def start(self) -> DriverRunner:
        """Start the loop thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cancel run() and wait for the thread; re-raise what run() raised."""
        if self.task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "driver did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def domain_id() -> int:
    """Return a random DDS domain id not used before in this process (tests.helpers)."""
    return unique_domain_id()


@pytest.fixture
def ctx() -> DriverContext:
    """Return a DriverContext over a fresh RingStore."""
    return DriverContext(SITE, DEVICE, RingStore(8192), GatewayMetrics(),
                         logging.getLogger("test.ros2"), ring_capacity=8192)


@pytest.fixture
def start_driver(ctx: DriverContext) -> Iterator[Callable[..., Ros2Driver]]:
    """Start drivers with given options; every one is stopped at teardown."""
    runners: list[DriverRunner] = []

    def start(**options: Any) -> Ros2Driver:
        options.setdefault("transport", "cyclonedds")
        driver = Ros2Driver(ctx, Ros2Options(**options))
        runners.append(DriverRunner(driver).start())
        return driver

    yield start
    for runner in runners:
        runner.stop()


@pytest.fixture
def make_sim(domain_id: int) -> Iterator[Callable[..., RobotSimulator]]:
    """Build (open, not started) simulators on the test's domain; stopped at teardown."""
    sims: list[RobotSimulator] = []

    def make(**config: Any) -> RobotSimulator:
        # a deep writer history keeps reliable delivery exact even when the shared 2-core
        # box stalls the reader for a while (ROS's default depth of 10 is 50 ms at 200 Hz)
        config.setdefault("qos", dds.QosOptions(depth=2000))
        sim = RobotSimulator(SimConfig(domain_id=domain_id, **config)).open()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


def ring_for(ctx: DriverContext, topic: str) -> StreamRing | None:
    """Return the ring of a topic's stream, None if not registered yet."""
    key = f"{SITE}/{DEVICE}/{topic.strip('/').replace('/', '.')}"
    try:
        return ctx.store.ring(key)
    except KeyError:
        return None


def data_count(ctx: DriverContext, topic: str) -> int:
    """Return how many non-STALE samples a topic's ring holds."""
    ring = ring_for(ctx, topic)
    if ring is None:
        return 0
    batch = ring.snapshot()
    return 0 if batch is None else int(np.count_nonzero(batch.quality != Quality.STALE))


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` (bounded); fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def helpers() -> Any:
    """Expose the module helpers to tests (importlib import mode has no conftest imports)."""

    class Helpers:
        ring_for = staticmethod(ring_for)
        data_count = staticmethod(data_count)
        wait_for = staticmethod(wait_for)

    return Helpers
