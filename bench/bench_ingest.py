"""Ingest throughput (MQTT -> decode -> line protocol -> InfluxDB /write) against raw HTTP
/write of the same lines (requests, same batch size, same gzip setting), on a real
mosquitto and a real influxd, in the same run.

    python bench/bench_ingest.py [--samples 200000] [--width 7] [--batch 1000]
                                 [--lines-per-write 5000] [--rounds 3] [--encoding json|binary]
                                 [--bundle 1] [--flush-ms 0] [--rate 0]

``--bundle N``: N streams of one device, each message a bundle of one batch per stream (as
the publisher sends at every scan); 1 sends plain single-stream messages. The ingest's CPU
(its paho and writer threads, thread CPU clocks) is printed per point next to the rates.
``--rate R`` paces the publisher at R messages/s (0: as fast as the window allows), for the
CPU per point at a given load rather than at saturation (points/s then is the rate's).

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
import orjson
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
from gateway.wire.bundle import encode_bundle  # noqa: E402
from gateway.wire.payload import ENCODERS  # noqa: E402
from gateway.wire.topics import bundle_topic, data_topic  # noqa: E402

INFLIGHT = 256


Message = list[SampleBatch]  # one batch per stream of the bundle (one for a plain message)


def make_messages(samples: int, width: int, batch: int, streams: int = 1) -> list[Message]:
    """The benchmark data: ``samples`` rows of ``width`` random floats over ``streams``
    streams of one device; each message holds ``batch`` rows of every stream."""
    specs = [StreamSpec("bench", "dev", "js" if streams == 1 else f"js{k}",
                        tuple(f"f{i}" for i in range(width)), ("",) * width, rate_hz=1000.0,
                        measurement="bench") for k in range(streams)]
    rows = samples // streams
    values = np.random.default_rng(1).standard_normal((rows, width))
    ts = np.arange(rows, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000_000
    return [[make_batch(spec, ts[i:i + batch], values[i:i + batch], first_seq=i)
             for spec in specs] for i in range(0, rows, batch)]


def flat(messages: list[Message]) -> list[SampleBatch]:
    """Every batch of every message, in order."""
    return [batch for message in messages for batch in message]


def thread_cpu_s(threads: list[threading.Thread]) -> float:
    """Return the CPU seconds the given live threads have used so far."""
    total = 0.0
    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def ingest_threads(ingest: Ingest) -> list[threading.Thread]:
    """The ingest's paho network thread and its writer thread."""
    paho = getattr(getattr(ingest.transport, "client", None), "_thread", None)
    return [t for t in (paho, ingest._thread) if isinstance(t, threading.Thread)]


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
                 messages: list[Message], lines_per_write: int, use_gzip: bool,
                 encoding: str = "json", flush_ms: float = 0.0,
                 rate: float = 0.0) -> tuple[float, float, float, float]:
    """Publish the messages; the medgw ingest writes them; (points/s end to end, ingest CPU
    µs per point, median and p95 ms from a message's publish to the end of its write)."""
    loaded = parse_config({
        "site": "bench", "gateway": "gw",
        "mqtt": {"port": broker.port},
        "influxdb": {"url": influxd.url, "database": db, "batch_lines": lines_per_write,
                     "flush_ms": flush_ms, "gzip": use_gzip},
        "ingest": {"client_id": f"bench-{db}", "max_pending_messages": 4000,
                   "record_gaps": False},
        "health": {"enabled": False},
    })
    ingest = Ingest(loaded)
    ingest.start()
    ingest.wait_subscribed(15)
    encoder = ENCODERS[encoding]
    payloads = [encoder(m[0], "gw") if len(m) == 1 else encode_bundle([encoder(b, "gw")
                                                                        for b in m])
                for m in messages]
    first = messages[0][0].stream
    topic = data_topic("medgw/v1", first) if len(messages[0]) == 1 else \
        bundle_topic("medgw/v1", first.site, first.device)
    points = sum(len(b) for b in flat(messages))
    written = record_writes(ingest)
    threads = ingest_threads(ingest)
    cpu_before = thread_cpu_s(threads)
    published: list[float] = []
    window = threading.BoundedSemaphore(INFLIGHT)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{db}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    start = time.perf_counter()
    for i, payload in enumerate(payloads):
        if rate > 0:
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        window.acquire()
        published.append(time.perf_counter())
        client.publish(topic, payload, qos=1)
    deadline = start + 300
    while ingest.stats.samples < points and time.perf_counter() < deadline:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    cpu = thread_cpu_s(threads) - cpu_before
    client.disconnect()
    client.loop_stop()
    ingest.stop()
    if ingest.stats.samples < points:
        raise SystemExit(f"ingest wrote only {ingest.stats.samples} of {points} points")
    p50, p95 = latencies_ms(messages, published, written)
    return points / elapsed, cpu / points * 1e6, p50, p95


def record_writes(ingest: Ingest) -> list[tuple[int, float]]:
    """Wrap the ingest's writer: (lines written so far, time) after each successful write."""
    done: list[tuple[int, float]] = []
    write = ingest.loop.writer.write

    def timed(lines: bytes, n_lines: int) -> None:
        write(lines, n_lines)
        done.append(((done[-1][0] if done else 0) + n_lines, time.perf_counter()))
    ingest.loop.writer.write = timed  # type: ignore[method-assign]
    return done


def latencies_ms(messages: list[Message], published: list[float],
                 written: list[tuple[int, float]]) -> tuple[float, float]:
    """Median and p95 of publish -> written per message (one worker writes in order)."""
    ends = np.cumsum([sum(len(b) for b in m) for m in messages])
    counts = np.array([n for n, _ in written])
    times = np.array([t for _, t in written])
    at = times[np.searchsorted(counts, ends)]
    delays = (at - np.array(published)) * 1000.0
    return float(np.median(delays)), float(np.percentile(delays, 95))


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
    parser.add_argument("--bundle", type=int, default=1,
                        help="streams per message (one bundle per message when > 1)")
    parser.add_argument("--flush-ms", type=float, default=0.0,
                        help="the ingest's influxdb.flush_ms (0: write when the inbox is empty)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages per second (0: as fast as the ingest takes them)")
    parser.add_argument("--json", type=Path, help="also write the medians to this file")
    args = parser.parse_args()
    messages = make_messages(args.samples, args.width, args.batch, args.bundle)
    samples = sum(len(b) for b in flat(messages))
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows = []
    try:
        rows = run_all(tmp, messages, samples, args.lines_per_write, args.encoding,
                       args.rounds, args.flush_ms, args.rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{samples} points x {args.width} float fields, MQTT messages of {args.bundle} "
          f"stream(s) x {args.batch} samples ({args.encoding}), {args.lines_per_write} lines "
          f"per /write, flush_ms {args.flush_ms:g}, rate {args.rate:g} msg/s, influxd 1.x on "
          f"loopback, median of {args.rounds} rounds")
    print(f"{'gzip':6} {'raw HTTP /write pts/s':>22} {'medgw ingest pts/s':>20} {'ratio':>7} "
          f"{'ingest CPU us/pt':>17} {'publish->written ms p50 / p95':>30}")
    for use_gzip, raw, ours, cpu, p50, p95 in rows:
        print(f"{'on' if use_gzip else 'off':6} {raw:22,.0f} {ours:20,.0f} {ours / raw:7.2f} "
              f"{cpu:17.2f} {p50:21.1f} / {p95:6.1f}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps({
            "command": " ".join(sys.argv), "samples": samples, "width": args.width,
            "batch": args.batch, "bundle": args.bundle, "encoding": args.encoding,
            "flush_ms": args.flush_ms, "rate": args.rate,
            "rows": [{"gzip": g, "raw_pts_s": r, "medgw_pts_s": o, "ingest_cpu_us_per_pt": c,
                      "publish_to_written_ms_p50": p50, "publish_to_written_ms_p95": p95}
                     for g, r, o, c, p50, p95 in rows]}, option=orjson.OPT_INDENT_2))


def run_all(tmp: Path, messages: list[Message], samples: int, lines_per_write: int,
            encoding: str, rounds: int = 1,
            flush_ms: float = 0.0,
            rate: float = 0.0) -> list[tuple[bool, float, float, float, float, float]]:
    """Both paths, gzip off then on, ``rounds`` times, against one mosquitto and one influxd.

    Returns (gzip, median raw points/s, median medgw points/s, median ingest CPU µs per
    point, median p50 and p95 publish -> written ms) per gzip setting.
    """
    batches = flat(messages)
    runs: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    with MosquittoService(tmp / "mosquitto") as broker, InfluxdService(tmp / "influxd") as influxd:
        for round_no in range(rounds):
            for use_gzip in (False, True):
                raw_db = f"raw_{int(use_gzip)}_{round_no}"
                our_db = f"medgw_{int(use_gzip)}_{round_no}"
                influxd.create_database(raw_db)
                influxd.create_database(our_db)
                raw = raw_write(influxd.url, raw_db, batches, lines_per_write, use_gzip)
                ours, cpu, p50, p95 = medgw_ingest(broker, influxd, our_db, messages,
                                                   lines_per_write, use_gzip, encoding,
                                                   flush_ms, rate)
                assert count(influxd, raw_db) == count(influxd, our_db) == samples
                runs[use_gzip].append((raw, ours, cpu, p50, p95))
                print(f"round {round_no + 1} gzip {'on' if use_gzip else 'off'}: raw {raw:,.0f}"
                      f"  medgw {ours:,.0f}  ratio {ours / raw:.2f}  ingest CPU {cpu:.2f} "
                      f"us/pt  publish->written p50 {p50:.1f} ms p95 {p95:.1f} ms", flush=True)
    out = []
    for use_gzip, runs_ in runs.items():
        raw, ours, cpu, p50, p95 = (statistics.median(run[k] for run in runs_) for k in range(5))
        out.append((use_gzip, raw, ours, cpu, p50, p95))
    return out


if __name__ == "__main__":
    main()
