"""Loopback HTTP endpoint: /health (JSON), /metrics (Prometheus), / and /api/streams.

With a RingStore, ``/`` serves a live status page that polls ``/api/streams`` (every
device and stream with rate, age, lag, quality, last values and a decimated sparkline).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.ring import RingStore

HealthProbe = Callable[[], dict[str, Any]]


class HealthServer:
    """Serves health and metrics of one process on a loopback port (0 picks a free one)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 probe: HealthProbe, store: RingStore | None = None) -> None:
        registry_ref, probe_ref, store_ref = registry, probe, store

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry_ref))
                elif path == "/health":
                    report = probe_ref()
                    code = 200 if report.get("status") == "ok" else 503
                    self._reply(code, "application/json", orjson.dumps(report))
                elif path in ("/", "/index.html") and store_ref is not None:
                    from gateway.edge.statuspage import page_html

                    self._reply(200, "text/html; charset=utf-8", page_html())
                elif path == "/api/streams" and store_ref is not None:
                    from gateway.edge.statuspage import stream_report

                    doc = stream_report(store_ref, registry_ref)
                    self._reply(200, "application/json", orjson.dumps(doc))
                else:
                    hint = "/, /api/streams, " if store_ref is not None else ""
                    self._reply(404, "text/plain",
                                f"not found: try {hint}/health or /metrics\n".encode())

            def _reply(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # access logs would drown the daemon's own log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="medgw-health", daemon=True)

    @property
    def port(self) -> int:
        """Return the bound port."""
        return int(self.server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
