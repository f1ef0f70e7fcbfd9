"""Publisher throughput (ring -> JSON -> MQTT QoS 1, acked) against raw paho publishing the
same payloads (pre-encoded) with the same in-flight window, on a real mosquitto.

    python bench/bench_publisher.py [--samples 1000000] [--width 7] [--batch 1000]
                                    [--rounds 3] [--encoding json|binary]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_config
from gateway.metrics import GatewayMetrics
from gateway.model import SampleBatch, StreamSpec, make_batch
from gateway.payload import ENCODERS, data_topic
from gateway.publisher import MqttPublisher
from gateway.ring import RingStore
from gateway.services import MosquittoService

INFLIGHT = 64


def raw_paho(port: int, topic: str, payloads: Iterable[bytes], count: int) -> float:
    """Publish payloads at QoS 1 with a bounded window; seconds until all ``count`` acked.

    With a list the payloads are pre-encoded; with a generator each one is encoded as the
    loop asks for it (the hand-rolled bridge: slice, encode, publish).
    """
    window = threading.BoundedSemaphore(INFLIGHT)
    done = threading.Event()
    acked = [0]

    def on_publish(*_: object) -> None:
        window.release()
        acked[0] += 1
        if acked[0] == count:
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


def ours(port: int, samples: int, width: int, batch: int, encoding: str,
         spool_dir: Path) -> float:
    """Append ``samples`` to a ring, let MqttPublisher drain it; seconds until all acked.

    The clock starts once the publisher is connected (the raw loop is timed after its
    connect too) and its thread is idle, when the samples land in the ring at once.
    """
    loaded = parse_config({
        "site": "bench", "gateway": "gw", "mqtt": {"port": port, "max_inflight": INFLIGHT},
        "publisher": {"max_batch_samples": batch, "max_latency_ms": 5,
                      "ring_capacity": samples + 1, "encoding": encoding},
    })
    store = RingStore(samples + 1)
    spec = make_spec(width)
    ring = store.add_stream(spec)
    values = np.random.default_rng(1).standard_normal((samples, width))
    publisher = MqttPublisher(loaded, store, GatewayMetrics(), spool_dir)
    publisher.start()
    publisher.wait_connected(10)
    time.sleep(0.2)
    start = time.perf_counter()
    ring.append(np.arange(samples, dtype=np.int64) + time.time_ns(), values,
                np.zeros(samples, np.uint8))
    deadline = start + 300
    while time.perf_counter() < deadline:
        counters = publisher.counters.get(spec.key)
        if counters is not None and counters.acked >= samples:
            break
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    publisher.stop()
    return elapsed


def encode_on_the_fly(encode: Callable[[SampleBatch, str], bytes], spec: StreamSpec,
                      ts: np.ndarray, values: np.ndarray, batch: int) -> Iterator[bytes]:
    """Yield each batch's payload, encoded from array slices when the loop needs it."""
    quality = np.zeros(len(ts), np.uint8)
    for i in range(0, len(ts), batch):
        yield encode(make_batch(spec, ts[i:i + batch], values[i:i + batch], quality[i:i + batch],
                                first_seq=i), "gw")


def make_spec(width: int) -> StreamSpec:
    """The benchmark stream."""
    return StreamSpec("bench", "dev", "js", tuple(f"f{i}" for i in range(width)), ("",) * width)


def main() -> None:
    """Run both, alternating, and print samples/s (median of the rounds) and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--width", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoding", choices=sorted(ENCODERS), default="json")
    args = parser.parse_args()
    encode = ENCODERS[args.encoding]
    spec = make_spec(args.width)
    values = np.random.default_rng(1).standard_normal((args.samples, args.width))
    ts = np.arange(args.samples, dtype=np.int64) + time.time_ns()
    payloads = [encode(make_batch(spec, ts[i:i + args.batch], values[i:i + args.batch],
                                  first_seq=i), "gw")
                for i in range(0, args.samples, args.batch)]
    raw_rates: list[float] = []
    hand_rates: list[float] = []
    our_rates: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="bench-pub-"))
    with MosquittoService(work / "broker") as broker:
        for round_no in range(args.rounds):
            topic = data_topic("medgw/v1", spec)
            raw_s = raw_paho(broker.port, topic, payloads, len(payloads))
            hand_s = raw_paho(broker.port, topic, encode_on_the_fly(
                encode, spec, ts, values, args.batch), len(payloads))
            hand_rates.append(args.samples / hand_s)
            our_s = ours(broker.port, args.samples, args.width, args.batch, args.encoding,
                         work / f"spool-{round_no}")
            raw_rates.append(args.samples / raw_s)
            our_rates.append(args.samples / our_s)
            print(f"round {round_no + 1}: raw {raw_rates[-1]:,.0f}  hand-rolled "
                  f"{hand_rates[-1]:,.0f}  medgw {our_rates[-1]:,.0f}  ratios "
                  f"{our_rates[-1] / raw_rates[-1]:.2f} / {our_rates[-1] / hand_rates[-1]:.2f}")
    shutil.rmtree(work, ignore_errors=True)
    raw_rate, our_rate = statistics.median(raw_rates), statistics.median(our_rates)
    mb = sum(map(len, payloads)) / 1e6
    print(f"{args.samples} samples x {args.width} fields in batches of {args.batch} "
          f"({len(payloads)} messages, {mb:.1f} MB {args.encoding}), QoS 1, window {INFLIGHT}, "
          f"median of {args.rounds} rounds")
    hand_rate = statistics.median(hand_rates)
    print(f"{'path':40} {'samples/s':>12} {'medgw ratio':>12}")
    print(f"{'raw paho (pre-encoded payloads)':40} {raw_rate:12,.0f} {our_rate / raw_rate:12.2f}")
    print(f"{'hand-rolled (slice+encode+paho)':40} {hand_rate:12,.0f} "
          f"{our_rate / hand_rate:12.2f}")
    print(f"{'medgw publisher (ring+encode+spool+pub)':40} {our_rate:12,.0f}")
    print(f"ratio medgw/raw paho: {our_rate / raw_rate:.2f}; "
          f"medgw/hand-rolled: {our_rate / hand_rate:.2f}")


if __name__ == "__main__":
    main()
