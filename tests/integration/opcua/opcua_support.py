"""Helpers of the OPC UA integration tests: gateway harness, waits, expectations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.opcua import OpcUaDriver, OpcUaOptions
from drivers.opcua.mapping import snake_case
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import SampleBatch
from gateway.ring import RingStore
from simulators.transport_carrier import CarrierSim, SimConfig
from simulators.transport_carrier.certs import CertPair

SITE = "test-site"
DEVICE = "fleet"
NUMERIC = ("RouteProgress", "RoutePosition", "Speed", "Battery", "PayloadTemperature",
           "DoorOpen", "MissionState", "SpecimenCount", "ActiveAlarm")


@dataclass(frozen=True)
class Pki:
    """Certificates of one test session: the server, the gateway, and an untrusted client."""

    server: CertPair
    client: CertPair
    rogue: CertPair


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_sim(**config: Any) -> AsyncIterator[CarrierSim]:
    """Start a simulator on a free port (manual clock unless told otherwise); always stop it."""
    config.setdefault("manual", True)
    config.setdefault("carriers", 3)
    config.setdefault("security", ("None",))
    sim = CarrierSim(SimConfig(port=free_port(), **config))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()



class Gateway:
    """The gateway side of a test: ring store, metrics, and the driver under test."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.store = RingStore(default_capacity=100_000)
        self.metrics = GatewayMetrics()
        self.ctx = DriverContext(SITE, DEVICE, self.store, self.metrics,
                                 logging.getLogger("test.opcua"), ring_capacity=100_000)
        self.options = OpcUaOptions.model_validate(options)
        self.driver = OpcUaDriver(self.ctx, self.options)

    def batch(self, stream: str) -> SampleBatch | None:
        """Return every sample of ``stream`` held in its ring."""
        return self.store.ring(f"{SITE}/{DEVICE}/{stream}").snapshot()

    def count(self, stream: str) -> int:
        """Return how many samples ``stream`` holds."""
        return len(self.store.ring(f"{SITE}/{DEVICE}/{stream}"))

    def metric(self, name: str, **labels: str) -> float:
        """Read one sample of the gateway's Prometheus registry (0 if absent)."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)


def options_for(sim: CarrierSim, **extra: Any) -> dict[str, Any]:
    """Driver options for an unsecured connection to ``sim``, plus ``extra``."""
    base: dict[str, Any] = {
        "endpoint": sim.endpoint, "security_policy": "None",
        "browse": [{"pattern": "Fleet/*/*"}], "publishing_interval_ms": 50,
        "sampling_interval_ms": 0, "queue_size": 1000, "rediscover_interval_s": 0.5,
        "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "request_timeout_s": 3.0,
    }
    base.update(extra)
    return base



@contextlib.asynccontextmanager
async def running(gateway: Gateway, ready_s: float = 15.0) -> AsyncIterator[Gateway]:
    """Run the driver as a task until the block ends; wait for its first session."""
    task = asyncio.create_task(gateway.driver.run(), name="opcua-driver")
    try:
        await wait_for(lambda: gateway.driver.ready.is_set() or task.done(), ready_s,
                       "the driver's first session")
        if task.done():
            task.result()
        yield gateway
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
                   poll_s: float = 0.02) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)


def expected_rows(sim: CarrierSim, carrier: str,
                  since_tick: int = 0) -> dict[int, dict[str, float]]:
    """What the simulator wrote for ``carrier``: source time -> {field: value} (Good only)."""
    rows: dict[int, dict[str, float]] = {}
    for record in sim.history:
        if (record.carrier != carrier or record.variable not in NUMERIC
                or record.tick < since_tick or record.status != 0 or record.injected):
            continue
        rows.setdefault(record.source_ns, {})[snake_case(record.variable)] = float(record.value)
    return rows


def received_rows(batch: SampleBatch | None, good_only: bool = True) -> dict[int, dict[str, float]]:
    """Merge a ring's rows by timestamp into {timestamp: {field: value}} (NaN = not reported)."""
    rows: dict[int, dict[str, float]] = {}
    if batch is None:
        return rows
    for i in range(len(batch)):
        if good_only and batch.quality[i] != 0:
            continue
        merged = rows.setdefault(int(batch.timestamps_ns[i]), {})
        for name, value in zip(batch.stream.fields, batch.values[i], strict=True):
            if not math.isnan(value):
                # a value re-sent after a resubscribe must be the same (idempotent in InfluxDB)
                assert merged.get(name, value) == value, (
                    f"{name} at {batch.timestamps_ns[i]}: {merged[name]} and {value}")
                merged[name] = float(value)
    return rows


def good_cells(batch: SampleBatch | None) -> int:
    """Count the values (non-NaN cells) in GOOD rows of a batch."""
    if batch is None:
        return 0
    good = batch.values[batch.quality == 0]
    return int(np.count_nonzero(~np.isnan(good)))


def written_values(sim: CarrierSim, carrier: str) -> int:
    """Count the Good numeric values the simulator wrote for ``carrier``."""
    return sum(1 for r in sim.history if r.carrier == carrier and r.variable in NUMERIC
               and r.status == 0 and not r.injected)


def column(batch: SampleBatch | None, name: str) -> np.ndarray:
    """Return one field's column of a batch (empty for no batch)."""
    if batch is None:
        return np.empty(0)
    return batch.values[:, batch.stream.fields.index(name)]


def path_of(pair: CertPair) -> dict[str, Path]:
    """Driver options naming a client certificate pair."""
    return {"certificate": pair.cert, "private_key": pair.key}
