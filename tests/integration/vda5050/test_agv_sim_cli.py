"""``medgw sim agv`` against a real mosquitto: states, a scripted hole, retained OFFLINE."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from gateway.ops.services import MosquittoService
from simulators.agv.cli import app
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def test_cli_runs_a_fleet_with_a_scripted_drop(mosquitto: MosquittoService) -> None:
    seen: dict[str, list[int]] = {}
    retained: dict[str, str] = {}
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = orjson.loads(msg.payload)
        with lock:
            if msg.topic.endswith("/state"):
                seen.setdefault(doc["serialNumber"], []).append(doc["headerId"])
            elif msg.topic.endswith("/connection"):
                retained[doc["serialNumber"]] = doc["connectionState"]

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cli-test-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("uagv/#", 1)
    sub.loop_start()
    try:
        result = CliRunner().invoke(app, [
            "--port", str(mosquitto.port), "--vehicles", "2", "--rate", "10",
            "--duration", "2", "--fault", "0.5:drop:agv-01:3"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"READY 127.0.0.1:{mosquitto.port} vehicles=2")
        assert "dropped 3 on purpose" in result.output
        wait_until(lambda: retained == {"agv-01": "OFFLINE", "agv-02": "OFFLINE"}, 5,
                   message="OFFLINE of both vehicles")
    finally:
        sub.disconnect()
        sub.loop_stop()
    ids = seen["agv-01"]
    missing = sorted(set(range(ids[-1] + 1)) - set(ids))
    assert len(missing) == 3 and missing == list(range(missing[0], missing[0] + 3))
    assert seen["agv-02"] == list(range(len(seen["agv-02"])))
