"""Experiment: what the publisher's JSON encoding costs, and what cheaper encodings would save.

The publisher hop (bench_publisher.py) compares ring -> encode -> MQTT against raw paho
publishing *pre-encoded* payloads, so the encoding is the publisher's own cost. This
benchmark times, per batch of samples, in one process and without the network:

- ``gateway.wire.payload.encode`` as shipped (orjson, OPT_SERIALIZE_NUMPY on float64 arrays);
- the same document with the arrays as Python lists (``values.tolist()``);
- the arrays pre-rounded to 6 decimals (``np.round``) before OPT_SERIALIZE_NUMPY;
- the arrays as float32 (shorter shortest-repr digits; loses precision: reference only);
- a binary layout (JSON header + raw little-endian arrays, base64 inside JSON and as a
  separate raw frame): the upper bound of a non-JSON encoding;
- and the ingest side: ``gateway.wire.payload.decode`` vs decoding the binary layout.

Nothing in gateway/ is changed: the alternatives are written here, for measurement only.

With ``--profile``, it also runs the two hop benchmarks that are below target under
py-spy (``py-spy record --gil``: Python CPU time of the thread holding the GIL) and
prints where the publisher thread and the ingest writer threads spend it.

    /tmp/venv/bin/python bench/bench_encoding.py            # ~20 s
    /tmp/venv/bin/python bench/bench_encoding.py --seconds 1
    /tmp/venv/bin/python bench/bench_encoding.py --seconds 1 --profile   # + ~40 s
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from gateway.model import SampleBatch, StreamSpec, make_batch  # noqa: E402
from gateway.wire.payload import PAYLOAD_VERSION, decode, encode  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def header(batch: SampleBatch, gateway: str) -> dict[str, Any]:
    """The payload's descriptive part (everything but the arrays)."""
    spec = batch.stream
    return {"v": PAYLOAD_VERSION, "gateway": gateway, "site": spec.site, "device": spec.device,
            "stream": spec.stream, "kind": spec.kind.value, "measurement": spec.measurement,
            "channel_tag": spec.channel_tag, "rate_hz": spec.rate_hz, "fields": spec.fields,
            "units": spec.units, "seq": batch.first_seq, "n": len(batch),
            "historical": batch.historical}


def enc_tolist(batch: SampleBatch, gateway: str) -> bytes:
    """Arrays converted to Python lists, then orjson (no numpy option)."""
    doc = header(batch, gateway)
    doc.update(t=batch.timestamps_ns.tolist(), q=batch.quality.tolist(),
               values=batch.values.tolist())
    return orjson.dumps(doc)


def enc_rounded(batch: SampleBatch, gateway: str) -> bytes:
    """Values rounded to 6 decimals (µm, µrad), then OPT_SERIALIZE_NUMPY."""
    doc = header(batch, gateway)
    doc.update(t=batch.timestamps_ns, q=batch.quality, values=np.round(batch.values, 6))
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def enc_float32(batch: SampleBatch, gateway: str) -> bytes:
    """Values as float32 (shorter digits; loses precision, reference only)."""
    doc = header(batch, gateway)
    doc.update(t=batch.timestamps_ns, q=batch.quality,
               values=batch.values.astype(np.float32))
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def enc_binary_b64(batch: SampleBatch, gateway: str) -> bytes:
    """JSON header + base64 of the raw little-endian arrays."""
    doc = header(batch, gateway)
    doc.update(t=base64.b64encode(batch.timestamps_ns.astype("<i8").tobytes()).decode(),
               q=base64.b64encode(batch.quality.tobytes()).decode(),
               values=base64.b64encode(batch.values.astype("<f8").tobytes()).decode())
    return orjson.dumps(doc)


def enc_binary_raw(batch: SampleBatch, gateway: str) -> bytes:
    """4-byte header length + JSON header + raw arrays (t, q, values)."""
    head = orjson.dumps(header(batch, gateway))
    return b"".join((len(head).to_bytes(4, "little"), head,
                     batch.timestamps_ns.astype("<i8").tobytes(), batch.quality.tobytes(),
                     batch.values.astype("<f8").tobytes()))


def dec_binary_raw(payload: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode enc_binary_raw (no copies: views on the payload)."""
    size = int.from_bytes(payload[:4], "little")
    head = orjson.loads(payload[4:4 + size])
    n, width = head["n"], len(head["fields"])
    at = 4 + size
    ts = np.frombuffer(payload, "<i8", n, at)
    q = np.frombuffer(payload, np.uint8, n, at + 8 * n)
    values = np.frombuffer(payload, "<f8", n * width, at + 9 * n).reshape(n, width)
    return ts, q, values


def timeit(fn: Callable[..., object], seconds: float) -> float:
    """Return seconds per call (best of 3 runs of ``seconds / 3`` each)."""
    fn()
    best = float("inf")
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            fn()
            calls += 1
        best = min(best, elapsed / calls)
    return best


def realistic_batch(n: int, width: int) -> SampleBatch:
    """A measured_js-like batch: smooth joint motion with sensor noise, 1 kHz stamps."""
    rng = np.random.default_rng(7)
    t = np.arange(n) / 1000.0
    phase = rng.uniform(0, 2 * np.pi, width)
    values = 0.8 * np.sin(0.5 * t[:, None] + phase) + rng.normal(0, 1e-4, (n, width))
    fields = tuple(f"j{i // 3}.{('position', 'velocity', 'effort')[i % 3]}"
                   for i in range(width))
    spec = StreamSpec("site", "robot-1", "PSM1.measured_js", fields, ("rad",) * width,
                      measurement="joint_state",
                      rate_hz=1000.0)
    stamps = time.time_ns() + (t * 1e9).astype(np.int64)
    return make_batch(spec, stamps, values, first_seq=0)


def profile_hop(argv: list[str], thread_pattern: str, label: str, top: int = 12
                ) -> dict[str, object]:
    """Run a bench under ``py-spy record --gil``; top frames of the matching threads."""
    out = RESULTS / f"pyspy-{label}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    subprocess.run([str(spy), "record", "--rate", "500", "--gil", "--threads", "--format",
                    "raw", "--output", str(out), "--", sys.executable, *argv], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if not count.isdigit() or not re.search(thread_pattern, frames[0]):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames[1:]):
            inclusive[frame] += int(count)
    print(f"\n{label}: py-spy --gil, threads matching {thread_pattern!r}: {total} samples "
          f"(500 Hz) of `python {' '.join(argv)}`")
    for kind, counter in (("own", own), ("inclusive", inclusive)):
        print(f"\n| {label}: top by {kind} time | samples | % |\n|---|---:|---:|")
        for frame, n in counter.most_common(top):
            print(f"| `{frame}` | {n} | {100 * n / max(total, 1):.0f} |")
    return {"samples": total, "own": own.most_common(top),
            "inclusive": inclusive.most_common(top)}


def main() -> None:
    """Time every variant; print a table and write bench/results/encoding.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--widths", default="7,18")
    parser.add_argument("--profile", action="store_true",
                        help="also profile bench_publisher.py and bench_ingest.py with py-spy")
    args = parser.parse_args()
    command = "python bench/bench_encoding.py " + " ".join(sys.argv[1:])
    variants: list[tuple[str, Callable[[SampleBatch, str], bytes]]] = [
        ("payload.encode (shipped: orjson OPT_SERIALIZE_NUMPY)", encode),
        ("orjson of .tolist()", enc_tolist),
        ("np.round(values, 6) + OPT_SERIALIZE_NUMPY", enc_rounded),
        ("float32 values (precision loss, reference)", enc_float32),
        ("JSON header + base64 raw arrays", enc_binary_b64),
        ("JSON header + raw binary arrays", enc_binary_raw),
    ]
    rows = []
    print(f"command: {command}")
    for width in (int(w) for w in args.widths.split(",")):
        batch = realistic_batch(args.batch, width)
        base = None
        print(f"\nbatch of {args.batch} samples x {width} fields")
        print("| encoding | µs per batch | ns per sample | bytes per sample | "
              "x faster than shipped |\n|---|---:|---:|---:|---:|")
        for name, fn in variants:
            per_call = timeit(lambda fn=fn, b=batch: fn(b, "gw"), args.seconds)
            size = len(fn(batch, "gw"))
            base = base or per_call
            rows.append({"width": width, "encoding": name, "us_per_batch": per_call * 1e6,
                         "ns_per_sample": per_call * 1e9 / args.batch,
                         "bytes_per_sample": size / args.batch, "speedup": base / per_call})
            print(f"| {name} | {per_call * 1e6:,.0f} | {per_call * 1e9 / args.batch:,.0f} | "
                  f"{size / args.batch:.0f} | {base / per_call:.1f} |")
        shipped = encode(batch, "gw")
        binary = enc_binary_raw(batch, "gw")
        d_json = timeit(lambda p=shipped: decode(p), args.seconds)
        d_bin = timeit(lambda p=binary: dec_binary_raw(p), args.seconds)
        rows.append({"width": width, "decode_json_us": d_json * 1e6,
                     "decode_binary_us": d_bin * 1e6})
        print(f"ingest side: payload.decode {d_json * 1e6:,.0f} µs per batch; binary layout "
              f"{d_bin * 1e6:,.0f} µs ({d_json / d_bin:.0f}x)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    profiles = {}
    if args.profile:
        profiles["publisher"] = profile_hop(
            ["bench/bench_publisher.py", "--samples", "1000000"], r"medgw-publisher",
            "publisher")
        profiles["ingest"] = profile_hop(["bench/bench_ingest.py"], r"medgw-ingest", "ingest")
    out = RESULTS / "encoding.json"
    out.write_text(json.dumps({"command": command, "rows": rows, "profiles": profiles},
                              indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
