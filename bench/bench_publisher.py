"""Publisher throughput (ring -> encode -> disk spool -> MQTT QoS 1, acked) against raw paho.

Baselines, all with the same in-flight window on the same real mosquitto, in one run:
raw paho publishing pre-encoded payloads (the library alone); a hand-rolled bridge that
slices numpy arrays, encodes with the same encoder and publishes; the same with a
write-ahead file (one append per message, fsync at the end). The clock starts after
connecting. Each round runs every path once; the median of the rounds is printed.

    python bench/bench_publisher.py [--samples 1000000] [--width 7] [--batch 1000]
                                    [--rounds 3] [--encoding json|binary]
"""

from __future__ import annotations

import argparse
import os
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
from gateway.edge.publisher import MqttPublisher
from gateway.metrics import GatewayMetrics
from gateway.model import SampleBatch, StreamSpec, make_batch
from gateway.ops.services import MosquittoService
from gateway.ring import RingStore
from gateway.wire.payload import ENCODERS
from gateway.wire.topics import data_topic

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
         spool_dir: Path, bundle: bool = True) -> float:
    """Append ``samples`` to a ring, let MqttPublisher drain it; seconds until all acked.

    The clock starts once the publisher is connected (the raw loop is timed after its
    connect too) and its thread is idle, when the samples land in the ring at once.
    """
    loaded = parse_config({
        "site": "bench", "gateway": "gw", "mqtt": {"port": port, "max_inflight": INFLIGHT},
        "publisher": {"max_batch_samples": batch, "max_latency_ms": 5,
                      "ring_capacity": samples + 1, "encoding": encoding, "bundle": bundle},
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
        time.sleep(0.005)  # a coarse poll: a busy one would steal the GIL it measures
    elapsed = time.perf_counter() - start
    publisher.stop()
    return elapsed


def encode_on_the_fly(encode: Callable[[SampleBatch, str], bytes], spec: StreamSpec,
                      ts: np.ndarray, values: np.ndarray, batch: int,
                      log_dir: Path | None = None) -> Iterator[bytes]:
    """Yield each batch's payload, encoded from array slices when the loop needs it.

    With ``log_dir`` every payload is first appended to a file there (one write, no fsync
    per message, one at the end): a hand-rolled write-ahead log.
    """
    quality = np.zeros(len(ts), np.uint8)
    fd = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_dir / "wal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for i in range(0, len(ts), batch):
            payload = encode(make_batch(spec, ts[i:i + batch], values[i:i + batch],
                                        quality[i:i + batch], first_seq=i), "gw")
            if fd is not None:
                os.write(fd, payload)
            yield payload
    finally:
        if fd is not None:
            os.fsync(fd)
            os.close(fd)


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
    parser.add_argument("--bundle", choices=("on", "off"), default="on",
                        help="publisher.bundle: on (the default) joins the batches pending at "
                        "a scan into messages of up to max_bundle_bytes; off: one message per "
                        "batch, like the baselines")
    args = parser.parse_args()
    encode = ENCODERS[args.encoding]
    spec = make_spec(args.width)
    values = np.random.default_rng(1).standard_normal((args.samples, args.width))
    ts = np.arange(args.samples, dtype=np.int64) + time.time_ns()
    payloads = [encode(make_batch(spec, ts[i:i + args.batch], values[i:i + args.batch],
                                  first_seq=i), "gw")
                for i in range(0, args.samples, args.batch)]
    paths = ("raw paho (pre-encoded payloads)", "hand-rolled (slice+encode+paho)",
             "hand-rolled + write-ahead file", "medgw publisher (ring+encode+spool+pub)")
    rates: dict[str, list[float]] = {path: [] for path in paths}
    work = Path(tempfile.mkdtemp(prefix="bench-pub-"))
    topic = data_topic("medgw/v1", spec)
    with MosquittoService(work / "broker") as broker:
        for round_no in range(args.rounds):
            seconds = {
                paths[0]: raw_paho(broker.port, topic, payloads, len(payloads)),
                paths[1]: raw_paho(broker.port, topic, encode_on_the_fly(
                    encode, spec, ts, values, args.batch), len(payloads)),
                paths[2]: raw_paho(broker.port, topic, encode_on_the_fly(
                    encode, spec, ts, values, args.batch, work / f"wal-{round_no}"),
                    len(payloads)),
                paths[3]: ours(broker.port, args.samples, args.width, args.batch,
                               args.encoding, work / f"spool-{round_no}",
                               args.bundle == "on"),
            }
            for path, took in seconds.items():
                rates[path].append(args.samples / took)
            print(f"round {round_no + 1}: " + "  ".join(
                f"{path.split(' (')[0]} {rates[path][-1]:,.0f}" for path in paths))
    shutil.rmtree(work, ignore_errors=True)
    median = {path: statistics.median(values) for path, values in rates.items()}
    ours_rate = median[paths[3]]
    mb = sum(map(len, payloads)) / 1e6
    print(f"{args.samples} samples x {args.width} fields in batches of {args.batch} "
          f"({len(payloads)} messages, {mb:.1f} MB {args.encoding}), QoS 1, window {INFLIGHT}, "
          f"median of {args.rounds} rounds; medgw publisher.bundle {args.bundle}; "
          f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'path':42} {'samples/s':>12} {'medgw / this':>13}")
    for path in paths:
        print(f"{path:42} {median[path]:12,.0f} {ours_rate / median[path]:13.2f}")
    print(f"ratio medgw/raw paho: {ours_rate / median[paths[0]]:.2f}")

if __name__ == "__main__":
    main()
