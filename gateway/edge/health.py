"""The gateway's health: the /health document, stream lag, and the loopback HTTP endpoint.

/health says "ok" only when every device is connected without an error, the publisher
thread runs, the broker is connected and the spool and ``seq.json`` are writable; otherwise
"degraded" (HTTP 503) with every reason in ``problems``. Per device: ``state`` connected /
degraded (connected, but the driver reports an error, e.g. one topic quarantined) / down
(not connected, or its driver task crashed, finished or died), the last error as text and
the restarts. The status page (``/``, polling ``/api/streams``) shows the same states.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.edge.publisher import PublisherHealth
from gateway.edge.statuspage import page_html, stream_report
from gateway.httpstatus import (
    HealthProbe,
    Route,
    StatusServer,
    health_route,
    json_bytes,
    metrics_route,
)
from gateway.ring import RingReader, RingStore, StreamRing

log = logging.getLogger("medgw.health")


@dataclass(frozen=True)
class DeviceSnapshot:
    """One device as /health shows it (a copy taken under the device's lock)."""

    name: str
    driver: str
    task: str  # starting / running / restarting / finished / dead
    connected: bool
    last_error: str | None
    last_crash: str | None
    restarts: int

    @property
    def state(self) -> str:
        """Return connected, degraded (connected with an error) or down."""
        if self.task != "running" or not self.connected:
            return "down"
        return "degraded" if self.last_error else "connected"

    def report(self) -> dict[str, Any]:
        """Return this device's /health entry."""
        return {"driver": self.driver, "state": self.state, "connected": self.connected,
                "task": self.task, "last_error": self.last_error or self.last_crash,
                "last_crash": self.last_crash, "restarts": self.restarts}


def gateway_report(*, site: str, gateway: str, epoch: int, started_ns: int,
                   publisher: PublisherHealth, seq_state: dict[str, Any],
                   devices: list[DeviceSnapshot]) -> dict[str, Any]:
    """Return the /health document; ``status`` is "ok" only when nothing is in ``problems``."""
    problems = [f"device {d.name} is {d.state}: {d.last_error or d.last_crash or d.task}"
                for d in devices if d.state != "connected"]
    if not publisher.thread_alive:
        problems.append(f"the publisher thread is not running or its loop fails: "
                        f"{publisher.last_error or 'stopped'}")
    if not publisher.broker_connected:
        problems.append(f"broker not connected: {publisher.last_error or 'connecting'}")
    if publisher.spool_degraded:
        problems.append(f"spool degraded: {publisher.spool_degraded}")
    if publisher.epoch != epoch:
        problems.append(f"the publisher carries epoch {publisher.epoch}, not {epoch}")
    if seq_state.get("write_error"):
        problems.append(f"sequence state: {seq_state['write_error']}")
    warnings = []
    if seq_state.get("reset"):
        warnings.append(f"sequence numbers restarted at 0 under epoch {epoch}: "
                        f"seq.json {seq_state['reset']}")
    return {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "warnings": warnings,
        "site": site,
        "gateway": gateway,
        "epoch": epoch,
        "started_ns": started_ns,
        "broker_connected": publisher.broker_connected,
        "broker_error": publisher.last_error,
        "inflight": publisher.inflight,
        "publisher": dataclasses.asdict(publisher),
        "seq_state": seq_state,
        "devices": {d.name: d.report() for d in devices},
    }


def stream_lag_s(ring: StreamRing, reader: RingReader) -> float:
    """``medgw_stream_lag_seconds``: how far the publisher trails a stream, in sample time.

    The timestamp of the newest sample in the ring minus that of the oldest sample the
    publisher has not taken yet (0 when it has taken everything). Sample time, not the
    gateway's clock, so a device clock offset does not show as lag; computed when the
    metrics are read, so it costs the publishing path nothing. It grows when the publisher
    falls behind (starved, or holding samples in the ring while the spool is full).
    """
    write = ring.write_seq
    pending_from = max(reader.cursors.get(ring.stream.key, ring.start_seq), ring.oldest_seq)
    if pending_from >= write:
        return 0.0
    oldest = ring.read(pending_from, 1).batch
    newest = ring.read(write - 1, 1).batch
    if oldest is None or newest is None:
        return 0.0
    return max(0.0, (int(newest.timestamps_ns[-1]) - int(oldest.timestamps_ns[0])) / 1e9)


class HealthServer(StatusServer):
    """Serves health and metrics of the gateway, and with a store its status page."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 probe: HealthProbe, store: RingStore | None = None) -> None:
        routes: dict[str, Route] = {"/health": health_route(probe),
                                    "/metrics": metrics_route(registry)}
        if store is not None:
            page: Route = lambda: (200, "text/html; charset=utf-8", page_html())  # noqa: E731
            routes["/"] = routes["/index.html"] = page

            def streams() -> tuple[int, str, bytes]:
                return 200, "application/json", json_bytes(
                    stream_report(store, registry, health=_safe(probe)))
            routes["/api/streams"] = streams
        super().__init__(host, port, routes)


def _safe(probe: HealthProbe) -> dict[str, Any]:
    """The probe's report, or an error document: the status page must render regardless."""
    try:
        return probe()
    except Exception as err:
        log.exception("health probe failed")
        return {"status": "error", "problems": [f"{type(err).__name__}: {err}"]}
