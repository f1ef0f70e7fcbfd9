"""Benchmark: how the gateway's cost grows with carriers and with robot rate.

Two series of short runs through the whole chain (simulators -> ``medgw run`` process ->
mosquitto -> ``medgw ingest`` process -> InfluxDB), the same harness as bench_floor.py:

- carriers: an OPC UA fleet of 1, 10, 50, 200 carriers at 10 Hz, no robot;
- rate: one full robot (4 arms x measured_js, measured_cp, body/measured_cf) at 100, 250,
  500, 1000 Hz, no carriers;
- optionally (``--ring-capacities 65536,8192``): the robot at 1 kHz with those
  ``publisher.ring_capacity`` values; RSS every 2 s shows the rings becoming resident;
- optionally (``--windows 2,10,20``): the robot at 100 Hz with the ros2 driver's
  ``batch_window_ms`` set to each value (CPU per wake-up vs latency).

Per run: gateway and ingest CPU (% of one core over the steady window, /proc/<pid>/stat)
and peak RSS (VmHWM), samples/s the gateway received, what the simulator achieved, and
whether InfluxDB holds every received sample. Plots go to bench/results/scaling.png and
the raw numbers to bench/results/scaling.json.

    /tmp/venv/bin/python bench/bench_scaling.py                   # 10 runs x 25 s, ~7 min
    /tmp/venv/bin/python bench/bench_scaling.py --seconds 10 --carriers 1,10 --rates 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_floor import (
    RESULTS,
    FloorRun,
    FloorSpec,
    RobotSpec,
    RunResult,
    Servers,
    distinct_domains,
)


def row(series: str, x: float, spec: FloorSpec, result: RunResult) -> dict[str, Any]:
    """One point of a curve."""
    source = 0.0
    if spec.robots:
        source = sum(result.robot_published.values()) / result.seconds
    elif result.carrier_stats:
        cs = result.carrier_stats
        source = cs.get("numeric_writes", 0) / max(float(cs.get("seconds", 1.0)), 1e-9)
    return {
        "series": series, "x": x, "seconds": result.seconds,
        "received_per_s": round(result.received_total / result.seconds, 1),
        "source_changes_per_s": round(source, 1),
        "lossless_gateway_to_influx": result.received_total == result.stored_total,
        "gateway_minus_influx": result.received_total - result.stored_total,
        "streams_differing": dict(list(result.missing_streams().items())[:8]),
        "gateway_cpu": result.cpu_percent.get("gateway"),
        "ingest_cpu": result.cpu_percent.get("ingest"),
        "sim_cpu": round(sum(v for k, v in result.cpu_percent.items()
                             if k.startswith(("robot-sim", "carrier-sim"))), 1),
        "influxd_cpu": result.cpu_percent.get("influxd"),
        "gateway_rss_mb": result.peak_rss_mb.get("gateway"),
        "ingest_rss_mb": result.peak_rss_mb.get("ingest"),
        "gateway_rss_trace_mb": result.rss_trace_mb.get("gateway", []),
        "ring_full_mb": result.rings.get("full_mb"),
        "load_before": result.load_before, "load_after": result.load_after,
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Four panels: CPU and RSS vs carriers, CPU and RSS vs robot rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (series, xlabel) in enumerate((
            ("carriers", "carriers (OPC UA, 9 variables at 10 Hz)"),
            ("rate", "robot rate per topic, Hz (12 topics)"))):
        points = sorted((r for r in rows if r["series"] == series), key=lambda r: r["x"])
        if not points:
            continue
        xs = [p["x"] for p in points]
        cpu, mem = axes[0][col], axes[1][col]
        for key, label, style in (("gateway_cpu", "gateway", "o-"),
                                  ("ingest_cpu", "ingest", "s--"),
                                  ("sim_cpu", "simulator", "^:")):
            cpu.plot(xs, [p[key] for p in points], style, label=label)
        cpu.axhline(50, color="red", linewidth=0.8, linestyle="-.", label="gateway target 50 %")
        cpu.set_ylabel("CPU, % of one core")
        cpu.set_title(f"CPU vs {series}")
        for key, label, style in (("gateway_rss_mb", "gateway", "o-"),
                                  ("ingest_rss_mb", "ingest", "s--")):
            mem.plot(xs, [p[key] for p in points], style, label=label)
        mem.axhline(300, color="red", linewidth=0.8, linestyle="-.", label="target 300 MB")
        mem.set_ylabel("peak RSS, MB")
        mem.set_title(f"peak RSS vs {series}")
        for ax in (cpu, mem):
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            if series == "carriers":
                ax.set_xscale("log")
        for p in points:  # annotate the samples/s the gateway actually handled
            cpu.annotate(f"{p['received_per_s']:.0f}/s", (p["x"], p["gateway_cpu"]),
                         textcoords="offset points", xytext=(4, 6), fontsize=7)
        mem.set_ylim(bottom=0)
        cpu.set_ylim(bottom=0)
    fig.suptitle("medgw gateway cost (2-core box; labels: samples/s received by the gateway)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run both series, print a table, write JSON and the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="steady flow per run")
    parser.add_argument("--carriers", default="1,10,50,200")
    parser.add_argument("--rates", default="100,250,500,1000")
    parser.add_argument("--ring-capacities", default="",
                        help="also: robot at 1000 Hz with these publisher.ring_capacity values")
    parser.add_argument("--windows", default="",
                        help="also: robot at 100 Hz with these ros2 batch_window_ms values")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "scaling.png")
    args = parser.parse_args()
    command = "python bench/bench_scaling.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="medgw-scaling-"))
    carriers = [int(c) for c in args.carriers.split(",") if c.strip()]
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    windows = [float(w) for w in args.windows.split(",") if w.strip()]
    capacities = [int(c) for c in args.ring_capacities.split(",") if c.strip()]
    domains = distinct_domains(len(rates) + len(windows) + len(capacities) + 1)
    rows: list[dict[str, Any]] = []
    print(f"work dir (logs, data): {work}", flush=True)
    with Servers(work) as servers:
        for n in carriers:
            spec = FloorSpec(carriers=n)
            result = FloorRun(servers, spec, work / f"carriers-{n}", latency=False).run(
                args.seconds)
            rows.append(row("carriers", n, spec, result))
            print(json.dumps(rows[-1]), flush=True)
        for rate, domain in zip(rates, domains, strict=False):
            depth = max(100, int(rate))
            spec = FloorSpec(robots=[RobotSpec(f"robot-{rate:g}hz", domain, rate_hz=rate,
                                               writer_depth=depth, reader_depth=depth)])
            result = FloorRun(servers, spec, work / f"rate-{rate:g}", latency=False).run(
                args.seconds)
            rows.append(row("rate", rate, spec, result))
            print(json.dumps(rows[-1]), flush=True)
        for window, domain in zip(windows, domains[len(rates):], strict=False):
            spec = FloorSpec(robots=[RobotSpec(f"robot-w{window:g}", domain, rate_hz=100.0,
                                               batch_window_ms=window)])
            result = FloorRun(servers, spec, work / f"window-{window:g}", latency=True).run(
                args.seconds)
            rows.append(row("window", window, spec, result))
            rows[-1]["latency_p50_ms"] = result.latency_ms.get("all", {}).get("p50")
            rows[-1]["latency_p99_ms"] = result.latency_ms.get("all", {}).get("p99")
            print(json.dumps(rows[-1]), flush=True)
        for capacity, domain in zip(capacities, domains[len(rates) + len(windows):],
                                    strict=False):
            spec = FloorSpec(robots=[RobotSpec(f"robot-cap{capacity}", domain, rate_hz=1000.0,
                                               writer_depth=1000, reader_depth=1000)],
                             publisher={"ring_capacity": capacity})
            result = FloorRun(servers, spec, work / f"capacity-{capacity}", latency=False,
                              sample_every_s=2.0).run(args.seconds)
            rows.append(row("ring_capacity", capacity, spec, result))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "rows": rows, "cores": os.cpu_count(),
                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
                                   indent=1), encoding="utf-8")
    plot(rows, args.png)
    print(f"wrote {args.out} and {args.png}")


def print_table(rows: list[dict[str, Any]], command: str) -> None:
    """Print the runs as a Markdown table."""
    print(f"\ncommand: {command}")
    print("\n| series | x | source changes/s | gateway received samples/s | gateway CPU % | "
          "gateway peak RSS MB | ingest CPU % | ingest peak RSS MB | sim CPU % | "
          "influxd CPU % | all in InfluxDB | latency p50/p99 ms | load before/after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---|")
    for r in rows:
        series = {"window": "batch_window_ms (robot 100 Hz)",
                  "ring_capacity": "ring_capacity (robot 1 kHz)"}.get(r["series"], r["series"])
        latency = (f"{r['latency_p50_ms']:.0f}/{r['latency_p99_ms']:.0f}"
                   if r.get("latency_p50_ms") is not None else "")
        print(f"| {series} | {r['x']:g} | {r['source_changes_per_s']:.0f} | "
              f"{r['received_per_s']:.0f} | {r['gateway_cpu']} | {r['gateway_rss_mb']} | "
              f"{r['ingest_cpu']} | {r['ingest_rss_mb']} | {r['sim_cpu']} | {r['influxd_cpu']} | "
              f"{'yes' if r['lossless_gateway_to_influx'] else 'NO'} | {latency} | "
              f"{r['load_before']} / {r['load_after']} |")
    for r in rows:
        if r["series"] == "ring_capacity":
            print(f"ring_capacity {r['x']:g}: gateway RSS every 2 s {r['gateway_rss_trace_mb']} MB;"
                  f" rings once full {r['ring_full_mb']} MB")


if __name__ == "__main__":
    main()
