"""The health server over real HTTP: /health, /metrics, the status page and /api/streams."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import requests

from gateway.driver import DriverContext
from gateway.edge.health import HealthServer
from gateway.edge.statuspage import RATE_WINDOW_S, SPARK_POINTS, SPARK_WINDOW_S
from gateway.metrics import GatewayMetrics
from gateway.model import Quality, StreamKind
from gateway.ring import RingStore

RATE = 50  # Hz of the sampled test stream
SECONDS = 90  # history appended, longer than the sparkline window


class Setup:
    """A store with one sampled and one event stream, metrics, and a running server."""

    def __init__(self, status: str = "ok") -> None:
        self.metrics = GatewayMetrics()
        self.store = RingStore(16384)
        self.ctx = DriverContext("site-a", "robot-1", self.store, self.metrics,
                                 logging.getLogger("test"))
        self.now = time.time_ns()
        n = RATE * SECONDS
        self.ts = self.now - ((n - 1 - np.arange(n)) * (1e9 / RATE)).astype(np.int64)
        self.values = np.column_stack([np.sin(np.arange(n) / 40.0), np.arange(n, dtype=float)])
        self.quality = np.full(n, Quality.GOOD, dtype=np.uint8)
        self.quality[-1] = Quality.STALE
        spec = self.ctx.stream_spec("arm", ("x", "n"), ("m", ""), rate_hz=RATE,
                                    measurement="pose")
        self.ring = self.ctx.add_stream(spec)
        self.ring.append(self.ts, self.values, self.quality)
        self.ctx.count(self.ring, n, int(self.ts[-1]))
        self.metrics.lag.labels(spec.key).set(0.125)
        self.metrics.dropped.labels(spec.key, "spool_full").inc(3)
        self.metrics.dropped.labels(spec.key, "too_old").inc(4)
        events = self.ctx.stream_spec("state", ("code",), ("",), kind=StreamKind.EVENT,
                                      measurement="robot_event")
        self.ctx.append_one(self.ctx.add_stream(events), self.now - 5_000_000_000, [3.0],
                            text="FAULT")
        self.ctx.set_connected(True)
        self.server = HealthServer("127.0.0.1", 0, self.metrics.registry,
                                   lambda: {"status": status}, store=self.store)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    try:
        yield s
    finally:
        s.server.stop()


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def test_api_streams_reports_rate_quality_and_sparkline(setup: Setup) -> None:
    resp = _get(f"{setup.url}/api/streams")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = orjson.loads(resp.content)
    assert [d["name"] for d in doc["devices"]] == ["robot-1"]
    assert doc["devices"][0]["connected"] is True and doc["devices"][0]["streams"] == 2
    arm = next(s for s in doc["streams"] if s["stream"] == "arm")
    now_ns = doc["now_ms"] * 1_000_000
    in_window = np.count_nonzero(setup.ts >= now_ns - int(RATE_WINDOW_S * 1e9))
    assert arm["rate_hz"] == pytest.approx(in_window / RATE_WINDOW_S, abs=1.0 / RATE_WINDOW_S)
    assert arm["quality"] == "STALE"  # the newest sample's quality, never hidden
    assert arm["samples"] == len(setup.ts) and arm["received"] == len(setup.ts)
    assert arm["dropped"] == 7 and arm["lag_s"] == 0.125
    assert arm["last"] == {"x": setup.values[-1, 0], "n": setup.values[-1, 1]}
    # sparkline: mean of field x per window over the last 60 s, recomputed from the input
    spark = arm["spark"]
    window_ns = int(SPARK_WINDOW_S * 1e9 / SPARK_POINTS)
    keep = (setup.ts >= setup.ts[-1] - int(SPARK_WINDOW_S * 1e9)) & (
        setup.quality <= Quality.UNCERTAIN)
    bins = setup.ts[keep] // window_ns
    expected = [setup.values[keep, 0][bins == b].mean() for b in np.unique(bins)]
    assert spark["field"] == "x"
    assert spark["t_ms"] == [int(b * window_ns // 1_000_000) for b in np.unique(bins)]
    np.testing.assert_allclose(spark["mean"], expected)
    assert SPARK_POINTS <= len(spark["mean"]) <= SPARK_POINTS + 1
    state = next(s for s in doc["streams"] if s["stream"] == "state")
    assert state["kind"] == "event" and state["text"] == "FAULT"
    assert state["age_s"] == pytest.approx((now_ns - (setup.now - 5e9)) / 1e9, abs=0.01)


def test_status_page_and_other_endpoints(setup: Setup) -> None:
    page = _get(f"{setup.url}/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b'fetch("api/streams"' in page.content
    metrics = _get(f"{setup.url}/metrics").text
    assert 'medgw_samples_received_total{stream="site-a/robot-1/arm"} 4500.0' in metrics
    assert _get(f"{setup.url}/health").json() == {"status": "ok"}
    missing = _get(f"{setup.url}/nope")
    assert missing.status_code == 404 and "/api/streams" in missing.text


def test_degraded_health_is_503_and_no_store_means_no_page() -> None:
    metrics = GatewayMetrics()
    server = HealthServer("127.0.0.1", 0, metrics.registry, lambda: {"status": "degraded"})
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert _get(f"{url}/health").status_code == 503
        assert _get(f"{url}/").status_code == 404
        assert _get(f"{url}/api/streams").status_code == 404
    finally:
        server.stop()


def test_empty_stream_is_reported_without_values() -> None:
    from gateway.edge.statuspage import stream_report

    metrics = GatewayMetrics()
    store = RingStore(64)
    ctx = DriverContext("s", "d", store, metrics, logging.getLogger("t"))
    ctx.add_stream(ctx.stream_spec("idle", ("v",), ("",)))
    doc: dict[str, Any] = stream_report(store, metrics.registry)
    (entry,) = doc["streams"]
    assert entry["samples"] == 0 and entry["rate_hz"] == 0.0 and entry["quality"] is None
    assert entry["spark"]["mean"] == [] and doc["devices"][0]["connected"] is None


def test_young_stream_rate_uses_its_own_age() -> None:
    from gateway.edge.statuspage import stream_report

    metrics = GatewayMetrics()
    store = RingStore(4096)
    ctx = DriverContext("s", "d", store, metrics, logging.getLogger("t"))
    ring = ctx.add_stream(ctx.stream_spec("young", ("v",), ("",)))
    now = time.time_ns()
    ts = now - 3_000_000_000 + np.arange(300, dtype=np.int64) * 10_000_000
    ring.append(ts, np.ones((300, 1)), np.zeros(300, dtype=np.uint8))
    doc = stream_report(store, metrics.registry, now_ns=now)
    expected = 300 / ((now - ts[0]) / 1e9)
    assert doc["streams"][0]["rate_hz"] == pytest.approx(expected)
    assert doc["streams"][0]["age_s"] == pytest.approx((now - ts[-1]) / 1e9)
