"""The real chain in-process for integration/HIL tests: gateway -> MQTT -> ingest -> InfluxDB."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from gateway.config import LoadedConfig, parse_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.ops.services import MosquittoService
from gateway.server.ingest import Ingest
from tests.helpers import InfluxTarget, wait_until


def chain_config(broker: MosquittoService, influx: InfluxTarget,
                 devices: list[dict[str, Any]], **sections: Any) -> LoadedConfig:
    """Build a validated config pointing at the test's broker and database."""
    data: dict[str, Any] = {
        "site": "test-site",
        "gateway": "gw-test",
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "publisher": {"max_batch_samples": 500, "max_latency_ms": 50},
        "influxdb": {"backend": "v1", "url": influx.url, "database": influx.database,
                     "flush_ms": 100, "batch_lines": 5000},
        "health": {"enabled": False},
        "devices": devices,
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, "<test config>")


class Chain:
    """Gateway (drivers + publisher) and one ingest worker against real servers."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.ingest = Ingest(loaded)
        self.gateway = Gateway(loaded)
        self.runner = GatewayThread(self.gateway)
        self.all_acked: bool | None = None

    def __enter__(self) -> Chain:
        self.ingest.start()
        self.ingest.wait_subscribed(15)
        self.runner.start()
        self.gateway.publisher.wait_connected(15)
        return self

    def produced(self) -> int:
        """Samples appended to every ring so far."""
        return sum(ring.write_seq - ring.start_seq for ring in self.gateway.store.rings())

    def acked(self) -> int:
        """Samples the broker acknowledged."""
        return sum(c.acked for c in self.gateway.publisher.counters.values())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the drivers, drain the publisher, wait until the ingest wrote every sample."""
        self.all_acked = self.runner.stop(timeout)
        wait_until(lambda: self.ingest.stats.samples >= self.acked(), timeout,
                   message="ingest to write every acknowledged sample")
        time.sleep(0.2)
        self.ingest.stop()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.all_acked is None:
            try:
                self.runner.stop(10)
            finally:
                self.ingest.stop()
