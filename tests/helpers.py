"""Small helpers shared by tests: bounded polling, an influxd database handle, DDS domains."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.ops.services import InfluxdService

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Bounded by ``timeout`` seconds (and so by count); raises AssertionError naming
    ``message`` and the last value seen when the condition never becomes true.
    """
    deadline = time.monotonic() + timeout
    max_polls = max(1, int(timeout / max(interval, 0.001)) + 1)
    value = predicate()
    polls = 1
    while not value:
        if time.monotonic() >= deadline or polls >= max_polls:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}"
                                 f" (last value: {value!r})")
        time.sleep(interval)
        value = predicate()
        polls += 1
    return value


@dataclass
class InfluxTarget:
    """A database on a running influxd: what tests write to and query."""

    service: InfluxdService
    database: str

    @property
    def url(self) -> str:
        """Return the influxd base URL."""
        return self.service.url

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL against this database and return rows (see InfluxdService.query)."""
        return self.service.query(influxql, self.database)

    def count(self, measurement: str, field: str = "seq", where: str = "") -> int:
        """Return the number of points of ``measurement`` in this database."""
        return self.service.count(measurement, self.database, field, where)


def sample_config_path(name: str) -> Path:
    """Return the path of a driver's sample gateway config (drivers/<name>/sample.yaml)."""
    return Path(__file__).resolve().parents[1] / "drivers" / name / "sample.yaml"


_USED_DOMAINS: set[int] = set()


def unique_domain_id() -> int:
    """Return a random DDS domain id (1..200) never handed out before in this test process.

    Cyclone configures a domain once per process: a test that reused another test's domain
    would get that test's network settings. Random, so parallel runs on one box rarely meet.
    """
    from drivers.ros2 import dds as driver_dds
    from simulators.surgical_robot import dds as sim_dds

    # also every domain the process already configured (the demo picks its own)
    taken = _USED_DOMAINS | set(driver_dds._domains) | set(sim_dds._domains)
    free = [d for d in range(1, 201) if d not in taken]
    if not free:
        raise RuntimeError("all 200 test DDS domains of this process are used")
    domain = random.Random(os.getpid() ^ time.time_ns()).choice(free)
    _USED_DOMAINS.add(domain)
    return domain
