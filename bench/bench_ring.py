"""Ring append throughput as a ratio against a bare numpy copy of the same bytes.

    python bench/bench_ring.py [--seconds 2]

Batch path: StreamRing.append of 1,000-sample batches vs np.copyto of the same arrays
into preallocated buffers (with the same wrap-around split). Single path: append_one
per sample vs assigning one row into preallocated numpy buffers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from gateway.model import StreamSpec
from gateway.ring import StreamRing

WIDTH = 7
CAPACITY = 65536
BATCH = 1000


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Call ``fn`` (which returns samples done) repeatedly for ``seconds``; samples per second."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        done += fn()
    return done / (time.perf_counter() - start)


def main() -> None:
    """Print samples/s of the ring and of raw numpy, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    spec = StreamSpec("s", "d", "bench", tuple(f"f{i}" for i in range(WIDTH)), ("",) * WIDTH)
    ring = StreamRing(spec, CAPACITY)
    ts = np.arange(BATCH, dtype=np.int64)
    values = np.random.default_rng(0).standard_normal((BATCH, WIDTH))
    quality = np.zeros(BATCH, dtype=np.uint8)

    raw_ts = np.zeros(CAPACITY, np.int64)
    raw_rx = np.zeros(CAPACITY, np.int64)
    raw_values = np.zeros((CAPACITY, WIDTH))
    raw_quality = np.zeros(CAPACITY, np.uint8)
    pos = [0]

    def raw_batch() -> int:
        slot = pos[0] % CAPACITY
        first = min(BATCH, CAPACITY - slot)
        np.copyto(raw_ts[slot:slot + first], ts[:first])
        raw_rx[slot:slot + first] = 0
        np.copyto(raw_values[slot:slot + first], values[:first])
        np.copyto(raw_quality[slot:slot + first], quality[:first])
        if first < BATCH:
            rest = BATCH - first
            np.copyto(raw_ts[:rest], ts[first:])
            raw_rx[:rest] = 0
            np.copyto(raw_values[:rest], values[first:])
            np.copyto(raw_quality[:rest], quality[first:])
        pos[0] += BATCH
        return BATCH

    def ring_batch() -> int:
        ring.append(ts, values, quality)
        return BATCH

    row = values[0]

    def raw_one() -> int:
        for i in range(100):
            slot = (pos[0] + i) % CAPACITY
            raw_ts[slot] = i
            raw_values[slot] = row
            raw_quality[slot] = 0
        pos[0] += 100
        return 100

    def ring_one() -> int:
        for i in range(100):
            ring.append_one(i, row, 0)
        return 100

    results = []
    for name, ours, raw in (("batch append (1000 x 7)", ring_batch, raw_batch),
                            ("append_one (1 x 7)", ring_one, raw_one)):
        raw_rate = rate(raw, args.seconds)
        our_rate = rate(ours, args.seconds)
        results.append((name, our_rate, raw_rate))
    print(f"{'path':28} {'ring samples/s':>16} {'raw numpy samples/s':>20} {'ratio':>7}")
    for name, ours_r, raw_r in results:
        print(f"{name:28} {ours_r:16,.0f} {raw_r:20,.0f} {ours_r / raw_r:7.2f}")


if __name__ == "__main__":
    main()
