"""The gateway's loopback HTTP endpoint: /health, /metrics, and the live status page.

With a RingStore, ``/`` serves a status page that polls ``/api/streams`` (every device
and stream with rate, age, lag, quality, last values and a decimated sparkline).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.edge.statuspage import page_html, stream_report
from gateway.httpstatus import (
    HealthProbe,
    Route,
    StatusServer,
    health_route,
    json_bytes,
    metrics_route,
)
from gateway.ring import RingStore


class HealthServer(StatusServer):
    """Serves health and metrics of the gateway, and with a store its status page."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 probe: HealthProbe, store: RingStore | None = None) -> None:
        routes: dict[str, Route] = {"/health": health_route(probe),
                                    "/metrics": metrics_route(registry)}
        if store is not None:
            page: Route = lambda: (200, "text/html; charset=utf-8", page_html())  # noqa: E731
            routes["/"] = routes["/index.html"] = page
            routes["/api/streams"] = lambda: (200, "application/json",
                                              json_bytes(stream_report(store, registry)))
        super().__init__(host, port, routes)
