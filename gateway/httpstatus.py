"""The one loopback HTTP status server: /health (JSON) and /metrics (Prometheus), plus routes.

The gateway and the ingest both serve it; the gateway adds its status page. ``/health``
is always valid JSON: values the encoder does not know become text, and a probe that
raises answers 500 with the error rather than an empty reply.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.errors import ConfigError

HealthProbe = Callable[[], dict[str, Any]]
Reply = tuple[int, str, bytes]  # status code, content type, body
Route = Callable[[], Reply]

log = logging.getLogger("medgw.http")


def json_bytes(doc: Any) -> bytes:
    """Serialize a status document; anything orjson cannot encode becomes its text."""
    return orjson.dumps(doc, default=str, option=orjson.OPT_SERIALIZE_NUMPY)


def health_route(probe: HealthProbe) -> Route:
    """Return a route answering the probe's report: 200 when status is ok, else 503."""
    def reply() -> Reply:
        try:
            report = probe()
        except Exception as err:  # the endpoint must answer exactly when things break
            log.exception("health probe failed")
            return 500, "application/json", json_bytes(
                {"status": "error", "error": f"{type(err).__name__}: {err}"})
        code = 200 if report.get("status") == "ok" else 503
        return code, "application/json", json_bytes(report)
    return reply


def metrics_route(registry: CollectorRegistry) -> Route:
    """Return a route answering the Prometheus text format of ``registry``."""
    return lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry))


class StatusServer:
    """Serves a process's routes on a loopback port (0 picks a free one)."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Route],
                 *, config_key: str = "health.port") -> None:
        table = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = table.get(self.path.split("?", 1)[0])
                if route is None:
                    body = f"not found: try {', '.join(sorted(table))}\n".encode()
                    self._reply(404, "text/plain", body)
                    return
                try:
                    self._reply(*route())
                except Exception as err:
                    log.exception("status route %s failed", self.path)
                    self._reply(500, "application/json", json_bytes(
                        {"status": "error", "error": f"{type(err).__name__}: {err}"}))

            def _reply(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # access logs would drown the daemon's own log

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            reason = ("the port is in use by another process" if err.errno == errno.EADDRINUSE
                      else err.strerror or str(err))
            raise ConfigError(f"cannot listen on {host}:{port}: {reason}", key=config_key) \
                from err
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="medgw-http", daemon=True)

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
