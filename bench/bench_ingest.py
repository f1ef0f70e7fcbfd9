"""Ingest throughput (MQTT -> decode -> line protocol -> InfluxDB /write) against raw HTTP
/write of the same lines (requests, same batch size, same gzip setting), on a real
mosquitto and a real influxd, in the same run.

    python bench/bench_ingest.py [--samples 200000] [--width 7] [--batch 1000]
                                 [--lines-per-write 5000] [--rounds 3] [--encoding json|binary]

Both paths write into their own fresh database on the same influxd. The medgw figure is
points/s from the first MQTT publish until the ingest wrote the last point (the messages
are published at once by a raw paho client, so the ingest is the bottleneck); the raw
figure is points/s of POSTing the pre-encoded line-protocol bodies one after another.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import parse_config  # noqa: E402
from gateway.model import SampleBatch, StreamSpec, make_batch  # noqa: E402
from gateway.ops.services import InfluxdService, MosquittoService  # noqa: E402
from gateway.server.ingest import Ingest  # noqa: E402
from gateway.server.lineproto import encode_batch  # noqa: E402
from gateway.wire.payload import ENCODERS  # noqa: E402
from gateway.wire.topics import data_topic  # noqa: E402

INFLIGHT = 256


def make_batches(samples: int, width: int, batch: int) -> list[SampleBatch]:
    """The benchmark data: one stream, ``samples`` rows of ``width`` random floats."""
    spec = StreamSpec("bench", "dev", "js", tuple(f"f{i}" for i in range(width)),
                      ("",) * width, rate_hz=1000.0, measurement="bench")
    values = np.random.default_rng(1).standard_normal((samples, width))
    ts = np.arange(samples, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000_000
    return [make_batch(spec, ts[i:i + batch], values[i:i + batch], first_seq=i)
            for i in range(0, samples, batch)]


def raw_write(url: str, db: str, batches: list[SampleBatch], lines_per_write: int,
              use_gzip: bool) -> float:
    """POST the batches' line protocol in bodies of ``lines_per_write`` lines; points/s."""
    per_batch = len(batches[0])
    group = max(1, lines_per_write // per_batch)
    bodies = [encode_batch_group(batches[i:i + group]) for i in range(0, len(batches), group)]
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    session = requests.Session()
    points = sum(len(b) for b in batches)
    start = time.perf_counter()
    for body in bodies:
        data = gzip.compress(body, 1) if use_gzip else body
        resp = session.post(f"{url}/write", params={"db": db, "precision": "ns"}, data=data,
                            headers=headers, timeout=60)
        resp.raise_for_status()
    elapsed = time.perf_counter() - start
    session.close()
    return points / elapsed


def encode_batch_group(batches: list[SampleBatch]) -> bytes:
    """Concatenate the line protocol of several batches."""
    return b"".join(encode_batch(b)[0] for b in batches)


def medgw_ingest(broker: MosquittoService, influxd: InfluxdService, db: str,
                 batches: list[SampleBatch], lines_per_write: int, use_gzip: bool,
                 encoding: str = "json") -> float:
    """Publish the batches' payloads; the medgw ingest writes them; points/s end to end."""
    loaded = parse_config({
        "site": "bench", "gateway": "gw",
        "mqtt": {"port": broker.port},
        "influxdb": {"url": influxd.url, "database": db, "batch_lines": lines_per_write,
                     "flush_ms": 50, "gzip": use_gzip},
        "ingest": {"client_id": f"bench-{db}", "max_pending_messages": 4000,
                   "record_gaps": False},
        "health": {"enabled": False},
    })
    ingest = Ingest(loaded)
    ingest.start()
    ingest.wait_subscribed(15)
    payloads = [ENCODERS[encoding](b, "gw") for b in batches]
    topic = data_topic("medgw/v1", batches[0].stream)
    points = sum(len(b) for b in batches)
    window = threading.BoundedSemaphore(INFLIGHT)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{db}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    start = time.perf_counter()
    for payload in payloads:
        window.acquire()
        client.publish(topic, payload, qos=1)
    deadline = start + 300
    while ingest.stats.samples < points and time.perf_counter() < deadline:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    ingest.stop()
    if ingest.stats.samples < points:
        raise SystemExit(f"ingest wrote only {ingest.stats.samples} of {points} points")
    return points / elapsed


def count(influxd: InfluxdService, db: str) -> int:
    """Points stored in the benchmark measurement."""
    return influxd.count("bench", db, field="f0")


def main() -> None:
    """Run both paths with gzip off and on; print points/s and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--lines-per-write", type=int, default=5000)
    parser.add_argument("--encoding", choices=sorted(ENCODERS), default="json",
                        help="payload encoding the gateway would publish")
    parser.add_argument("--rounds", type=int, default=3,
                        help="each round runs both paths with gzip off and on; medians printed")
    args = parser.parse_args()
    batches = make_batches(args.samples, args.width, args.batch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows = []
    try:
        rows = run_all(tmp, batches, args.samples, args.lines_per_write, args.encoding,
                       args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.samples} points x {args.width} float fields, MQTT batches of {args.batch} "
          f"samples ({args.encoding}), {args.lines_per_write} lines per /write, influxd 1.x "
          f"on loopback, median of {args.rounds} rounds")
    print(f"{'gzip':6} {'raw HTTP /write pts/s':>22} {'medgw ingest pts/s':>20} {'ratio':>7}")
    for use_gzip, raw, ours in rows:
        print(f"{'on' if use_gzip else 'off':6} {raw:22,.0f} {ours:20,.0f} {ours / raw:7.2f}")


def run_all(tmp: Path, batches: list[SampleBatch], samples: int, lines_per_write: int,
            encoding: str, rounds: int = 1) -> list[tuple[bool, float, float]]:
    """Both paths, gzip off then on, ``rounds`` times, against one mosquitto and one influxd.

    Returns (gzip, median raw points/s, median medgw points/s) per gzip setting.
    """
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with MosquittoService(tmp / "mosquitto") as broker, InfluxdService(tmp / "influxd") as influxd:
        for round_no in range(rounds):
            for use_gzip in (False, True):
                raw_db = f"raw_{int(use_gzip)}_{round_no}"
                our_db = f"medgw_{int(use_gzip)}_{round_no}"
                influxd.create_database(raw_db)
                influxd.create_database(our_db)
                raw = raw_write(influxd.url, raw_db, batches, lines_per_write, use_gzip)
                ours = medgw_ingest(broker, influxd, our_db, batches, lines_per_write, use_gzip,
                                    encoding)
                assert count(influxd, raw_db) == count(influxd, our_db) == samples
                runs[use_gzip].append((raw, ours))
                print(f"round {round_no + 1} gzip {'on' if use_gzip else 'off'}: raw {raw:,.0f}"
                      f"  medgw {ours:,.0f}  ratio {ours / raw:.2f}", flush=True)
    return [(use_gzip, statistics.median(r for r, _ in pairs),
             statistics.median(o for _, o in pairs)) for use_gzip, pairs in runs.items()]


if __name__ == "__main__":
    main()
