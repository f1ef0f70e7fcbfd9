"""Issue 13 against real servers: no message stops `medgw ingest`, its /health and /metrics
tell the truth, its memory is bounded in bytes, and sequence identity cannot be spoofed.

Measured, never timed: samples in InfluxDB (InfluxQL counts), exit codes, /health and
/metrics documents, the ingest process's peak RSS (VmHWM) and dead-letter file sizes.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.model import StreamSpec, make_batch
from gateway.ops.services import MosquittoService, free_port
from gateway.server.ingest import Ingest
from gateway.wire.payload import encode, encode_binary
from gateway.wire.topics import data_topic
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import MedgwProcess, load, write_config

pytestmark = pytest.mark.integration

SPEC = StreamSpec("hostile-site", "dev", "js", ("a",), ("",), measurement="hostile")
TOPIC = data_topic("medgw/v1", SPEC)
MB = 1024 * 1024


def ingest_config(broker: MosquittoService, influx: InfluxTarget, tmp_path: Path,
                  **ingest: Any) -> dict[str, Any]:
    """An ingest-only config for the test's servers."""
    return {
        "site": "hostile-site", "gateway": "ingest-host",
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5},
        "influxdb": {"backend": "v1", "url": influx.url, "database": influx.database,
                     "flush_ms": 100},
        "ingest": {"gap_grace_s": 600.0, "dead_letter_file": str(tmp_path / "dead.jsonl"),
                   **ingest},
        "health": {"enabled": False},
    }


class Sender:
    """A plain paho publisher (QoS 1, each publish waited for)."""

    def __init__(self, broker: MosquittoService) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-sender",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET a loopback status route; return (status, body) also for 503."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def metric(port: int, name: str) -> float:
    """Read one unlabelled sample from /metrics."""
    for line in get(port, "/metrics")[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def payload(first: int, n: int, gateway: str = "gw", epoch: int = 1, value: float = 1.0,
            t0: int = 0) -> bytes:
    """n samples from seq ``first`` with distinct timestamps (t0 + 1000 x seq)."""
    seqs = np.arange(first, first + n)
    return encode(make_batch(SPEC, t0 + seqs * 1000, np.full((n, 1), value), first_seq=first),
                  gateway, epoch)


def hostile() -> list[tuple[str, bytes]]:
    """The four triggers of issue 13 #1 that once stopped the ingest for good."""
    big_seq = orjson.loads(payload(0, 1))
    big_seq["seq"] = 2**63
    binary = encode_binary(make_batch(SPEC, [1], [[1.0]]), "gw").replace(
        b'"seq":0', b'"seq":9223372036854775808', 1)
    long_gateway = orjson.loads(payload(0, 1))
    long_gateway["gateway"] = "g" * 65_600
    return [(TOPIC, orjson.dumps(big_seq)), (TOPIC, binary), (TOPIC, orjson.dumps(long_gateway)),
            ("medgw/v1/" + "x" * 65_510, b"\xffgarbage")]


def start_ingest(data: dict[str, Any], tmp_path: Path) -> tuple[MedgwProcess, int]:
    """`medgw ingest --health-port N` as a child process, subscribed."""
    port = free_port()
    proc = MedgwProcess("ingest", write_config(tmp_path / "ingest.yaml", data),
                        tmp_path / "ingest.log")
    proc.argv += ["--health-port", str(port)]
    proc.start()
    wait_until(lambda: "subscribed" in proc.log_tail(), 20, interval=0.1,
               message="ingest to subscribe")
    wait_until(lambda: get(port, "/health")[0] == 200, 10, interval=0.1,
               message="/health ok")
    return proc, port


def test_no_message_stops_medgw_ingest(mosquitto: MosquittoService, influxdb: InfluxTarget,
                                       tmp_path: Path) -> None:
    proc, port = start_ingest(ingest_config(mosquitto, influxdb, tmp_path), tmp_path)
    sender = Sender(mosquitto)
    try:
        for topic, body in hostile():
            sender.send(topic, body)
        for lo in range(0, 200, 10):
            sender.send(TOPIC, payload(lo, 10))
        wait_until(lambda: influxdb.count("hostile") == 200, 30, interval=0.2,
                   message="the 200 valid samples after the hostile messages")
        status, body = get(port, "/health")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok", report
        assert report["counts"]["quarantined"] == 4
        assert metric(port, "medgw_ingest_quarantined_total") == 4
        assert metric(port, "medgw_ingest_writer_alive") == 1
        dead = [orjson.loads(line) for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
        assert len(dead) == 4 and any(d["topic_bytes"] > 65_000 for d in dead)
    finally:
        sender.close()
        code = proc.terminate()
        proc.close()
    assert code == 0, proc.log_tail()
    print("\nPROBE ingest hostile messages: 4 sent, 4 quarantined, 200/200 valid landed")


def test_health_degrades_when_influxdb_fails(mosquitto: MosquittoService,
                                             influxd_private: InfluxTarget,
                                             tmp_path: Path) -> None:
    proc, port = start_ingest(ingest_config(mosquitto, influxd_private, tmp_path), tmp_path)
    sender = Sender(mosquitto)
    try:
        influxd_private.service.kill()
        sender.send(TOPIC, payload(0, 10))
        wait_until(lambda: get(port, "/health")[0] == 503, 20, interval=0.2,
                   message="/health degraded while InfluxDB is down")
        report = json.loads(get(port, "/health")[1])
        assert report["status"] == "degraded"
        assert any("InfluxDB failing" in p for p in report["problems"]), report
        assert metric(port, "medgw_ingest_influxdb_ok") == 0
        influxd_private.service.start()
        wait_until(lambda: get(port, "/health")[0] == 200, 40, interval=0.2,
                   message="/health ok again after InfluxDB is back")
        assert influxd_private.count("hostile") == 10
    finally:
        sender.close()
        proc.terminate()
        proc.close()


def _peak_rss(pid: int) -> int:
    """Return a process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_sixty_ten_megabyte_messages_keep_the_ingest_bounded(mosquitto: MosquittoService,
                                                             influxdb: InfluxTarget,
                                                             tmp_path: Path) -> None:
    """Issue 13 #11: was 1.17 GB of RSS and a 1.49 GB dead-letter file."""
    data = ingest_config(mosquitto, influxdb, tmp_path, max_pending_bytes=32 * MB,
                         dead_letter_file_max_bytes=1 * MB)
    proc, port = start_ingest(data, tmp_path)
    assert proc.proc is not None
    sender = Sender(mosquitto)
    try:
        sender.send(TOPIC, payload(0, 10))  # warm the write path up first
        wait_until(lambda: influxdb.count("hostile") == 10, 30, interval=0.2, message="warm-up")
        before = _peak_rss(proc.proc.pid)
        garbage = b"\xff" + b"x" * (10 * 1000 * 1000 - 1)
        for _ in range(60):
            sender.send(TOPIC, garbage)
        wait_until(lambda: metric(port, "medgw_ingest_quarantined_total") == 60, 120,
                   interval=0.5, message="60 quarantined")
        delta = _peak_rss(proc.proc.pid) - before
        files = sorted((tmp_path).glob("dead.jsonl*"))
        sizes = [f.stat().st_size for f in files]
        print(f"\nBOUND ingest peak RSS delta {delta / MB:.0f} MiB for 60 x 10 MB "
              f"(max_pending_bytes 32 MiB); dead-letter files {sizes}")
        assert delta < 100 * MB  # budget 32 MiB + paho's copies of the message in flight
        assert len(files) <= 2 and all(size <= 1 * MB for size in sizes)
        assert get(port, "/health")[0] == 200
    finally:
        sender.close()
        proc.terminate()
        proc.close()


def test_spoofed_and_cloned_sequences_suppress_nothing(mosquitto: MosquittoService,
                                                       influxdb: InfluxTarget,
                                                       tmp_path: Path) -> None:
    """Issue 13 #3: a payload claiming seq 2000-2999 of a real stream under another epoch
    (was 953 of 3,000 real samples lost) and a cloned gateway (same names, other epoch;
    was 1,369 of 6,000 lost)."""
    ingest = Ingest(load(ingest_config(mosquitto, influxdb, tmp_path)))
    ingest.start()
    ingest.wait_subscribed(15)
    sender = Sender(mosquitto)
    try:
        sender.send(TOPIC, payload(2000, 1000, "gw", epoch=666, value=666.0, t0=1))
        for lo in range(0, 3000, 100):
            sender.send(TOPIC, payload(lo, 100, "gw", epoch=42, value=1.0))
            sender.send(TOPIC, payload(lo, 100, "gw", epoch=43, value=2.0, t0=2))  # a clone
        wait_until(lambda: influxdb.count("hostile") == 7000, 30, interval=0.2,
                   message="all 7,000 samples")
    finally:
        sender.close()
        ingest.stop()
    real = influxdb.count("hostile", "a", where='"a" = 1.0')
    clone = influxdb.count("hostile", "a", where='"a" = 2.0')
    assert (real, clone) == (3000, 3000)
    assert ingest.stats.duplicates == 0
