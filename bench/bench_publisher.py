"""Publisher throughput (ring -> JSON -> MQTT QoS 1, acked) against raw paho publishing the
same payloads (pre-encoded) with the same in-flight window, on a real mosquitto.

    python bench/bench_publisher.py [--samples 300000] [--width 7] [--batch 1000]
                                    [--encoding json|binary]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_config
from gateway.metrics import GatewayMetrics
from gateway.model import StreamSpec, make_batch
from gateway.payload import ENCODERS, data_topic
from gateway.publisher import MqttPublisher
from gateway.ring import RingStore
from gateway.services import MosquittoService

INFLIGHT = 64


def raw_paho(port: int, topic: str, payloads: list[bytes]) -> float:
    """Publish pre-encoded payloads at QoS 1 with a bounded window; seconds until all acked."""
    window = threading.BoundedSemaphore(INFLIGHT)
    done = threading.Event()
    acked = [0]

    def on_publish(*_: object) -> None:
        window.release()
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    for payload in payloads:
        window.acquire()
        client.publish(topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def ours(port: int, samples: int, width: int, batch: int, encoding: str) -> float:
    """Append ``samples`` to a ring, let MqttPublisher drain it; seconds until all acked."""
    loaded = parse_config({
        "site": "bench", "gateway": "gw", "mqtt": {"port": port, "max_inflight": INFLIGHT},
        "publisher": {"max_batch_samples": batch, "max_latency_ms": 5,
                      "ring_capacity": samples + 1, "encoding": encoding},
    })
    store = RingStore(samples + 1)
    spec = make_spec(width)
    ring = store.add_stream(spec)
    values = np.random.default_rng(1).standard_normal((samples, width))
    ring.append(np.arange(samples, dtype=np.int64) + time.time_ns(), values,
                np.zeros(samples, np.uint8))
    publisher = MqttPublisher(loaded, store, GatewayMetrics())
    start = time.perf_counter()
    publisher.start()
    counters = None
    deadline = start + 300
    while time.perf_counter() < deadline:
        counters = publisher.counters.get(spec.key)
        if counters is not None and counters.acked >= samples:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    publisher.stop()
    return elapsed


def make_spec(width: int) -> StreamSpec:
    """The benchmark stream."""
    return StreamSpec("bench", "dev", "js", tuple(f"f{i}" for i in range(width)), ("",) * width)


def main() -> None:
    """Run both and print samples/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300_000)
    parser.add_argument("--width", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--encoding", choices=sorted(ENCODERS), default="json")
    args = parser.parse_args()
    encode = ENCODERS[args.encoding]
    spec = make_spec(args.width)
    values = np.random.default_rng(1).standard_normal((args.samples, args.width))
    ts = np.arange(args.samples, dtype=np.int64) + time.time_ns()
    payloads = [encode(make_batch(spec, ts[i:i + args.batch], values[i:i + args.batch],
                                  first_seq=i), "gw")
                for i in range(0, args.samples, args.batch)]
    with MosquittoService(Path(tempfile.mkdtemp(prefix="bench-pub-"))) as broker:
        raw_s = raw_paho(broker.port, data_topic("medgw/v1", spec), payloads)
        our_s = ours(broker.port, args.samples, args.width, args.batch, args.encoding)
    raw_rate, our_rate = args.samples / raw_s, args.samples / our_s
    mb = sum(map(len, payloads)) / 1e6
    print(f"{args.samples} samples x {args.width} fields in batches of {args.batch} "
          f"({len(payloads)} messages, {mb:.1f} MB {args.encoding}), QoS 1, window {INFLIGHT}")
    print(f"{'path':34} {'samples/s':>12}")
    print(f"{'raw paho (pre-encoded payloads)':34} {raw_rate:12,.0f}")
    print(f"{'medgw publisher (ring+encode+pub)':34} {our_rate:12,.0f}")
    print(f"ratio medgw/raw: {our_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
