"""The one status server: always JSON, a failing probe answers, a busy port names the key."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import orjson
import pytest

from gateway.errors import ConfigError
from gateway.httpstatus import StatusServer, health_route, json_bytes


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_busy_port_is_a_config_error_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            StatusServer("127.0.0.1", port, {}, config_key="ingest.health_port")
    assert "ingest.health_port" in str(info.value)
    assert "in use" in str(info.value)


def test_health_is_json_even_for_unserializable_values_and_failing_probes() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("probe exploded")

    server = StatusServer("127.0.0.1", 0, {
        "/health": health_route(lambda: {"status": "ok", "error": ValueError("x")}),
        "/broken": health_route(broken)})
    server.start()
    try:
        code, body = _get(server.port, "/health")
        assert code == 200 and orjson.loads(body) == {"status": "ok", "error": "x"}
        code, body = _get(server.port, "/broken")
        assert code == 500
        assert orjson.loads(body) == {"status": "error", "error": "RuntimeError: probe exploded"}
        code, _ = _get(server.port, "/nowhere")
        assert code == 404
    finally:
        server.stop()


def test_json_bytes_turns_unknown_objects_into_text() -> None:
    assert orjson.loads(json_bytes({"e": OSError(28, "No space left on device")})) == {
        "e": "[Errno 28] No space left on device"}
