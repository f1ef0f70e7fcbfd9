"""End to end with real mosquitto and influxd: synthetic -> ring -> MQTT -> ingest -> InfluxDB."""

from __future__ import annotations

import threading

import jsonschema
import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.synthetic.driver import SyntheticStream, waveform_values
from gateway.ops.services import MosquittoService
from gateway.wire.bundle import BUNDLE_MAGIC, split_bundle
from gateway.wire.payload import BINARY_MAGIC, payload_schema
from tests.chain import Chain, chain_config
from tests.helpers import InfluxTarget, wait_until

pytestmark = pytest.mark.integration

TOTAL = 1500
STREAMS = [
    {"name": "joints", "fields": 4, "rate_hz": 1000, "waveform": "sine",
     "measurement": "joint_state"},
    {"name": "temp", "fields": 1, "rate_hz": 500, "waveform": "noise", "measurement": "carrier"},
    {"name": "state", "fields": 1, "rate_hz": 300, "waveform": "square", "kind": "event",
     "measurement": "robot_event"},
]


def synthetic_device(name: str, total: int = TOTAL) -> dict:
    return {"name": name, "driver": "synthetic",
            "options": {"streams": STREAMS, "total_samples": total, "tick_ms": 10}}


class PayloadRecorder:
    """A plain paho subscriber that keeps every data payload it sees."""

    def __init__(self, broker: MosquittoService) -> None:
        self.payloads: list[bytes] = []
        self.status: list[bytes] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="recorder")
        self.client.on_connect = lambda c, *_: c.subscribe("medgw/v1/#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        (self.status if msg.topic.endswith("/status") else self.payloads).append(msg.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_exact_points_and_values_land_in_influxdb(mosquitto: MosquittoService,
                                                  influxdb: InfluxTarget) -> None:
    recorder = PayloadRecorder(mosquitto)
    devices = [synthetic_device("gen-a"), synthetic_device("gen-b")]
    loaded = chain_config(mosquitto, influxdb, devices)
    with Chain(loaded) as chain:
        wait_until(lambda: chain.produced() == 2 * len(STREAMS) * TOTAL, 30,
                   message="synthetic sources to finish")
        chain.stop()
    assert chain.all_acked
    assert chain.acked() == 2 * len(STREAMS) * TOTAL

    # exact counts per stream, by InfluxQL
    for device in ("gen-a", "gen-b"):
        for stream in STREAMS:
            where = f"\"device\"='{device}' AND \"stream\"='{stream['name']}'"
            assert influxdb.count(str(stream["measurement"]), where=where) == TOTAL

    # exact values: recompute the waveform from the sequence numbers stored with each point
    rows = influxdb.query("SELECT f0, f1, f2, f3, seq, quality FROM joint_state "
                          "WHERE \"device\"='gen-a' ORDER BY time")
    seq = np.array([row["seq"] for row in rows], dtype=np.int64)
    assert seq.tolist() == list(range(TOTAL))
    expected = waveform_values(SyntheticStream(**STREAMS[0]), seq)
    stored = np.array([[row[f"f{i}"] for i in range(4)] for row in rows])
    np.testing.assert_array_equal(stored, expected)
    assert {row["quality"] for row in rows} == {0}

    events = influxdb.query("SELECT text FROM robot_event WHERE \"device\"='gen-b' LIMIT 3")
    assert [row["text"] for row in events] == [f"synthetic event {i}" for i in range(3)]

    # every real payload on the wire follows the published JSON Schema
    validator = jsonschema.Draft202012Validator(payload_schema())
    assert recorder.payloads
    bundles = 0
    for payload in recorder.payloads:
        doc = orjson.loads(payload)
        bundles += isinstance(doc, list)  # a device bundle: each element is a v1 payload
        for part in doc if isinstance(doc, list) else [doc]:
            validator.validate(part)
    assert bundles  # the default: one message per device and scan
    states = [orjson.loads(p)["state"] for p in recorder.status]
    assert states[0] == "online" and states[-1] == "offline"
    recorder.close()
    assert chain.ingest.stats.malformed == 0


def test_malformed_messages_are_quarantined_not_fatal(mosquitto: MosquittoService,
                                                      influxdb: InfluxTarget, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dead_letter = tmp_path / "dead.jsonl"
    loaded = chain_config(mosquitto, influxdb, [synthetic_device("gen-a", 500)],
                          ingest={"dead_letter_file": str(dead_letter)})
    quarantined: list[str] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dlq-watcher")
    watcher.on_connect = lambda c, *_: c.subscribe("medgw/deadletter/v1/#", qos=1)
    watcher.on_message = lambda c, u, m: quarantined.append(m.topic)
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    with Chain(loaded) as chain:
        for payload in (b"not json", b'{"v": 1}', b"[]"):
            chain.ingest.transport.publish("medgw/v1/test-site/rogue/junk", payload, qos=1)
        wait_until(lambda: chain.produced() == len(STREAMS) * 500, 20, message="sources")
        chain.stop()
    wait_until(lambda: len(quarantined) == 3, 10, message="three dead letters")
    watcher.disconnect()
    watcher.loop_stop()
    assert chain.ingest.stats.malformed == 3
    lines = dead_letter.read_bytes().splitlines()
    assert len(lines) == 3
    reasons = [orjson.loads(line)["reason"] for line in lines]
    assert any("not JSON" in r for r in reasons)
    for stream in STREAMS:
        assert influxdb.count(str(stream["measurement"]),
                              where=f"\"stream\"='{stream['name']}'") == 500


def test_binary_encoding_end_to_end(mosquitto: MosquittoService, influxdb: InfluxTarget) -> None:
    recorder = PayloadRecorder(mosquitto)
    loaded = chain_config(mosquitto, influxdb, [synthetic_device("gen-bin", 600)],
                          publisher={"encoding": "binary"})
    with Chain(loaded) as chain:
        wait_until(lambda: chain.produced() == len(STREAMS) * 600, 30, message="sources")
        chain.stop()
    recorder.close()
    assert recorder.payloads
    for payload in recorder.payloads:  # a plain binary payload, or a bundle of them
        parts = split_bundle(payload) if payload.startswith(BUNDLE_MAGIC) else [payload]
        assert all(part.startswith(BINARY_MAGIC) for part in parts)
    rows = influxdb.query("SELECT f0, f1, f2, f3, seq FROM joint_state ORDER BY time")
    seq = np.array([row["seq"] for row in rows], dtype=np.int64)
    assert seq.tolist() == list(range(600))
    expected = waveform_values(SyntheticStream(**STREAMS[0]), seq)
    np.testing.assert_array_equal(np.array([[row[f"f{i}"] for i in range(4)] for row in rows]),
                                  expected)
    events = influxdb.query("SELECT text FROM robot_event LIMIT 2")
    assert [row["text"] for row in events] == ["synthetic event 0", "synthetic event 1"]
    assert chain.ingest.stats.malformed == 0


def test_ingest_creates_a_missing_v1_database(mosquitto: MosquittoService,
                                              influxdb: InfluxTarget) -> None:
    missing = InfluxTarget(influxdb.service, f"{influxdb.database}_new")
    loaded = chain_config(mosquitto, missing, [synthetic_device("gen-new", 300)])
    try:
        with Chain(loaded) as chain:
            wait_until(lambda: chain.produced() == len(STREAMS) * 300, 20, message="sources")
            chain.stop()
        assert chain.ingest.stats.malformed == 0
        for stream in STREAMS:
            assert missing.count(str(stream["measurement"]),
                                 where=f"\"stream\"='{stream['name']}'") == 300
    finally:
        influxdb.service.drop_database(missing.database)
