"""A device bundle through a real mosquitto and a real influxd: every stream lands, counted
exactly (InfluxQL), and the record is confirmed under its composite key on the commit topic.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.model import StreamSpec, make_batch
from gateway.ops.services import MosquittoService
from gateway.server.ingest import Ingest
from gateway.wire.bundle import bundle_key, encode_bundle
from gateway.wire.payload import ENCODERS
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import load

pytestmark = pytest.mark.integration

SITE, DEVICE, GATEWAY = "bundle-site", "carrier-07", "edge-1"
STREAMS = [StreamSpec(SITE, DEVICE, name, ("x", "y"), ("", ""), measurement="bundled")
           for name in ("pose", "battery", "payload")]
SIZES = (5, 1, 3)


def bundle(first_seq: int, encoding: str) -> bytes:
    """One bundle of the three streams, SIZES samples each from ``first_seq``."""
    parts = []
    for spec, n in zip(STREAMS, SIZES, strict=True):
        seqs = np.arange(first_seq, first_seq + n)
        batch = make_batch(spec, 1_700_000_000_000_000_000 + seqs * 1_000_000,
                           np.column_stack([seqs * 1.0, seqs * 0.5]), first_seq=first_seq)
        parts.append(ENCODERS[encoding](batch, GATEWAY, 3))
    return encode_bundle(parts)


class Client:
    """A plain paho client: publishes QoS 1 and records the commit messages it sees."""

    def __init__(self, broker: MosquittoService, name: str) -> None:
        self.commits: list[tuple[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.commits.append(
            (msg.topic, orjson.loads(msg.payload)))
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def confirmed(self) -> list[Any]:
        """Return the (record key, first seq) pairs confirmed to our gateway so far."""
        return [c for topic, doc in list(self.commits)
                if topic == f"medgw/v1_ctl/commit/{SITE}/{GATEWAY}" for c in doc["c"]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_a_bundle_of_three_streams_lands_and_is_confirmed(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path,
        encoding: str) -> None:
    ingest = Ingest(load({
        "site": SITE, "gateway": "ingest-host",
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "keepalive_s": 5},
        "influxdb": {"backend": "v1", "url": influxdb.url, "database": influxdb.database},
        "ingest": {"gap_grace_s": 600.0, "dead_letter_file": str(tmp_path / "dead.jsonl")},
        "health": {"enabled": False},
    }))
    ingest.start()
    client = Client(mosquitto, f"bundle-sender-{encoding}")
    try:
        ingest.wait_subscribed(15)
        client.client.subscribe("medgw/v1_ctl/commit/#", qos=1)
        assert client.subscribed.wait(10)
        for first_seq in (0, 100):
            client.client.publish(f"medgw/v1/{SITE}/{DEVICE}", bundle(first_seq, encoding),
                                  qos=1).wait_for_publish(30)
        wait_until(lambda: len(client.confirmed()) >= 2, 30, interval=0.05,
                   message="the commits of both bundles")
    finally:
        client.close()
        ingest.stop()
    counts = {row["stream"]: row["count"] for row in influxdb.query(
        'SELECT count("seq") FROM "bundled" GROUP BY "stream"')}
    assert counts == {"pose": 10, "battery": 2, "payload": 6}, counts
    key = bundle_key([(spec.key, n) for spec, n in zip(STREAMS, SIZES, strict=True)])
    assert client.confirmed() == [[key, 0], [key, 100]]
    assert ingest.stats.malformed == 0 and ingest.stats.messages == 2
    assert ingest.stats.by_stream == {spec.key: 2 * n for spec, n in
                                      zip(STREAMS, SIZES, strict=True)}


def test_a_bundling_gateway_gets_every_record_confirmed(mosquitto: MosquittoService,
                                                        influxdb: InfluxTarget) -> None:
    """Gateway (publisher.bundle on) -> ingest: exact counts per stream, and the spool holds
    nothing unconfirmed at the end: every composite key the ingest sent matched a record."""
    from tests.chain import Chain, chain_config

    total = 600
    streams = [{"name": name, "fields": 2, "rate_hz": 200, "waveform": "sine",
                "measurement": "bundled"} for name in ("pose", "battery", "payload")]
    devices = [{"name": name, "driver": "synthetic",
                "options": {"streams": streams, "total_samples": total, "tick_ms": 10}}
               for name in ("cart-a", "cart-b")]
    watcher = Client(mosquitto, "bundle-commit-watcher")
    watcher.client.subscribe("medgw/v1_ctl/commit/#", qos=1)
    assert watcher.subscribed.wait(10)
    try:
        with Chain(chain_config(mosquitto, influxdb, devices,
                                publisher={"bundle": True})) as chain:
            wait_until(lambda: chain.produced() == 2 * 3 * total, 30,
                       message="synthetic sources to finish")
            chain.stop()
    finally:
        watcher.close()
    assert chain.all_acked
    counts = {(row["device"], row["stream"]): row["count"] for row in influxdb.query(
        'SELECT count("seq") FROM "bundled" GROUP BY "device", "stream"')}
    assert counts == {(d, s["name"]): total for d in ("cart-a", "cart-b") for s in streams}
    keys = [key for _, doc in watcher.commits for key, _ in doc["c"]]
    assert any("|" in key for key in keys), keys[:5]  # bundles were sent and confirmed
    spool = chain.gateway.publisher.spool  # its thread has ended: safe to read here
    assert spool.confirming and spool.unconfirmed_samples() == 0
    assert chain.ingest.stats.malformed == 0 and chain.ingest.stats.duplicates == 0
