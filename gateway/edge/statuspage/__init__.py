"""The live status page: every device and stream with rate, age, lag, quality and a sparkline.

``stream_report`` builds the ``/api/streams`` JSON from the ring buffers (window reads and
decimation) and the Prometheus registry; ``index.html`` polls it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from importlib import resources
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from gateway.model import Quality
from gateway.ring import RingStore, StreamRing, decimate

RATE_WINDOW_S = 10.0
SPARK_WINDOW_S = 60.0
SPARK_POINTS = 60
MAX_READ = 20_000  # samples read per stream per request (bounded work per refresh)
MAX_FIELDS = 8  # last values shown per stream


def page_html() -> bytes:
    """Return the status page (a static HTML file shipped in this package)."""
    return resources.files(__package__).joinpath("index.html").read_bytes()


def _metric_totals(registry: CollectorRegistry) -> dict[str, dict[str, float]]:
    """Sum every medgw sample by (sample name) -> stream or device label -> value."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for metric in registry.collect():
        for sample in metric.samples:
            label = sample.labels.get("stream") or sample.labels.get("device")
            if label is not None and not sample.name.endswith("_created"):
                totals[sample.name][label] += float(sample.value)
    return totals


def _recent(ring: StreamRing) -> Any:
    """Read at most MAX_READ of the newest samples of a ring (None when empty)."""
    start = max(ring.oldest_seq, ring.write_seq - MAX_READ)
    return ring.read(start).batch


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _rate(ts: Any, now_ns: int, truncated: bool) -> float:
    """Samples per second over the last RATE_WINDOW_S (or since the first sample if younger)."""
    start = now_ns - int(RATE_WINDOW_S * 1e9)
    if not truncated and int(ts[0]) > start:
        start = int(ts[0])  # a young stream: divide by its own age, not the full window
    span_s = max((now_ns - start) / 1e9, 1.0)
    return float(np.count_nonzero(ts >= start)) / span_s


def _stream_entry(ring: StreamRing, now_ns: int, totals: dict[str, dict[str, float]]
                  ) -> dict[str, Any]:
    spec = ring.stream
    key = spec.key
    entry: dict[str, Any] = {
        "key": key, "device": spec.device, "stream": spec.stream, "kind": spec.kind.value,
        "measurement": spec.measurement, "fields": list(spec.fields[:MAX_FIELDS]),
        "units": list(spec.units[:MAX_FIELDS]), "width": spec.width,
        "samples": ring.write_seq - ring.start_seq, "capacity": ring.capacity,
        "received": totals["medgw_samples_received_total"].get(key, 0.0),
        "published": totals["medgw_samples_published_total"].get(key, 0.0),
        "spooled": totals["medgw_samples_spooled_total"].get(key, 0.0),
        "dropped": totals["medgw_samples_dropped_total"].get(key, 0.0),
        "overrun": totals["medgw_ring_overrun_samples_total"].get(key, 0.0),
        "lag_s": totals["medgw_stream_lag_seconds"].get(key),
        "stale": bool(totals["medgw_stream_stale"].get(key, 0.0)),
        "rate_hz": 0.0, "age_s": None, "quality": None, "last": {}, "text": None,
        "spark": {"field": spec.fields[0], "t_ms": [], "mean": [], "min": [], "max": []},
    }
    batch = _recent(ring)
    if batch is None or len(batch) == 0:
        return entry
    newest = int(batch.timestamps_ns[-1])
    entry["age_s"] = (now_ns - newest) / 1e9
    entry["rate_hz"] = _rate(batch.timestamps_ns, now_ns, len(batch) < ring.write_seq
                             - ring.start_seq)
    entry["quality"] = Quality(int(batch.quality[-1])).name
    entry["last"] = {name: _finite(v) for name, v in
                     zip(spec.fields[:MAX_FIELDS], batch.values[-1, :MAX_FIELDS], strict=False)}
    if batch.text is not None:
        entry["text"] = batch.text[-1]
    window = batch.slice(int(np.searchsorted(batch.timestamps_ns,
                                             newest - int(SPARK_WINDOW_S * 1e9))), len(batch))
    dec = decimate(window, int(SPARK_WINDOW_S * 1e9 / SPARK_POINTS), spec.width)
    entry["spark"].update(t_ms=(dec.window_start_ns // 1_000_000).tolist(),
                          mean=[_finite(v) for v in dec.mean[:, 0]],
                          min=[_finite(v) for v in dec.minimum[:, 0]],
                          max=[_finite(v) for v in dec.maximum[:, 0]])
    return entry


def stream_report(store: RingStore, registry: CollectorRegistry,
                  now_ns: int | None = None, health: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Return the /api/streams document: devices (state as in /health) and every stream.

    With ``health`` (the /health document) every device carries the same ``state``
    (connected / degraded / down), last error and restarts, and the page the overall status.
    """
    now = time.time_ns() if now_ns is None else now_ns
    totals = _metric_totals(registry)
    streams = [_stream_entry(ring, now, totals) for ring in store.rings()]
    devices: dict[str, dict[str, Any]] = {}
    for entry in streams:
        devices.setdefault(entry["device"], {"name": entry["device"], "streams": 0})
        devices[entry["device"]]["streams"] += 1
    for name, value in totals["medgw_device_connected"].items():
        devices.setdefault(name, {"name": name, "streams": 0})["connected"] = bool(value)
    health = health or {}
    for name, reported in (health.get("devices") or {}).items():
        dev = devices.setdefault(name, {"name": name, "streams": 0})
        dev.update({key: reported.get(key) for key in
                    ("state", "connected", "last_error", "restarts", "task")})
    for name, dev in devices.items():
        dev.setdefault("connected", None)
        dev.setdefault("state", None)
        dev["gap_s"] = totals["medgw_device_gap_seconds_total"].get(name, 0.0)
        dev["reconnects"] = totals["medgw_device_reconnects_total"].get(name, 0.0)
    return {"now_ms": now // 1_000_000, "status": health.get("status"),
            "problems": health.get("problems", []), "warnings": health.get("warnings", []),
            "devices": list(devices.values()), "streams": streams}
