"""Benchmark: one full robot at up to 1 kHz through the whole chain, and where the time goes.

One surgical robot (arms PSM1, PSM2, PSM3, ECM; measured_js, measured_cp, body/measured_cf;
4 x 3 = 12 topics, so 12,000 messages/s at 1 kHz) publishes over DDS into the gateway
process (``medgw run``), through mosquitto, the ingest process (``medgw ingest``) and
into InfluxDB, at stepped rates (default 250, 500, 1000 Hz), each for ``--seconds``.
A step is lossless when InfluxDB holds, for every topic, exactly as many GOOD samples as
the simulator wrote (its own per-topic count), and the gateway's received count equals
InfluxDB's. The highest lossless rate is reported.

Then a profile phase at ``--profile-rate``: py-spy (``py-spy record --nonblocking --gil``,
100 Hz; ``--gil`` samples only the thread holding the GIL, i.e. Python CPU time, not
threads blocked in a wait) is attached to the gateway and the ingest process and the
top functions by own time and by inclusive time are printed. The CPU figures of
that phase include the profiler's sampling (it runs on the same 2 cores), so the rate
steps are measured without it.

    /tmp/venv/bin/python bench/bench_stress.py                 # ~4 min
    /tmp/venv/bin/python bench/bench_stress.py --seconds 20 --rates 250,1000

Publisher and reader (issue 15): ``--publisher cyclone`` (the simulator's own IdlStruct
types written by cyclonedds, the default) or ``--publisher rclpy`` (the simulator as an
rclpy node on Fast DDS), and ``--transport cyclonedds`` (the driver's own Cyclone
participant; it reads Fast DDS with network.ignore_type_information) or ``--transport
rclpy`` (raw rclpy subscriptions on Fast DDS). Every sample the middleware drops must be
counted: per topic, simulator wrote = GOOD in InfluxDB + ``medgw_middleware_samples_lost``
(kinds lost, rejected, stamp_gap, seq_gap; scraped once the flow is quiet, before the gateway
stops); the ``reader_history_full`` kind counts takes, not samples, and is printed apart.
With an rclpy reader of a Cyclone publisher the event topics are off (crtk_msgs has no
Python type support, so the rclpy transport refuses operating_state).

    .venv/bin/python bench/bench_stress.py --publisher rclpy --transport cyclonedds \\
        --seconds 20 --rates 1000 --profile-seconds 0

Writes bench/results/stress.json (and the raw py-spy stacks next to it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_floor import (
    BIN,
    DATABASE,
    RESULTS,
    FloorRun,
    FloorSpec,
    RobotSpec,
    RunResult,
    Servers,
    distinct_domains,
    influx_good_samples,
    scrape,
)

PY_SPY = BIN / "py-spy"
_LINE_NO = re.compile(r":\d+\)$")


# medgw_middleware_samples_lost kinds counted in samples
SAMPLE_KINDS = ("lost", "rejected", "stamp_gap", "seq_gap")
PUBLISHERS = {"cyclone": "cyclonedds", "rclpy": "rclpy"}  # --publisher -> simulator transport


@dataclass
class StressRobot(RobotSpec):
    """A robot whose simulator publishes with ``publisher`` and the driver reads with
    ``transport``."""

    publisher: str = "cyclone"
    transport: str = "cyclonedds"

    def device_config(self) -> dict[str, Any]:
        """Return the gateway config entry, with the driver's transport."""
        entry = super().device_config()
        entry["options"]["transport"] = self.transport
        return entry

    def argv(self, seconds: float) -> list[str]:
        """Return the simulator command line, with the simulator's transport."""
        return [*super().argv(seconds), "--transport", PUBLISHERS[self.publisher]]


def robot_spec(rate_hz: float, domains: list[int], publisher: str = "cyclone",
               transport: str = "cyclonedds", depth: int | None = None) -> FloorSpec:
    """Full robots at ``rate_hz`` (one per domain); DDS history deep enough for ~1 s stalls
    unless ``depth`` (writer and reader keep-last) is given."""
    depth = depth or max(100, int(rate_hz))
    events = not (publisher == "cyclone" and transport == "rclpy")
    robots: list[RobotSpec] = [
        StressRobot(f"robot{i + 1}-{rate_hz:g}hz", domain, rate_hz=rate_hz, events=events,
                    writer_depth=depth, reader_depth=depth, publisher=publisher,
                    transport=transport)
        for i, domain in enumerate(domains)]
    return FloorSpec(robots=robots)


class StressRun(FloorRun):
    """A FloorRun that also scrapes the middleware loss per topic once the flow is quiet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.middleware: dict[str, dict[str, float]] = {}

    def _drain(self, result: RunResult) -> None:
        for robot in self.spec.robots:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.children[f"robot-sim-{robot.device}"].proc.wait(60)
        # the watch reports every 0.5 s: wait until the received counts are quiet
        self._stable(lambda: {k: int(sum(v.values())) for k, v in scrape(self.health_port)
                              .items() if k == "medgw_samples_received_total"}, quiet_s=2.0)
        time.sleep(1.0)
        self.middleware = middleware_loss(scrape(self.health_port))
        super()._drain(result)


def middleware_loss(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Return medgw_middleware_samples_lost as {device/topic: {kind: n}}."""
    out: dict[str, dict[str, float]] = {}
    for labels, value in metrics.get("medgw_middleware_samples_lost_total", {}).items():
        parts = dict(item.split("=", 1) for item in labels.split(",") if "=" in item)
        key = f"{parts.get('device', '').strip(chr(34))}{parts.get('topic', '').strip(chr(34))}"
        out.setdefault(key, {})[parts.get("kind", "").strip('"')] = value
    return out


def parse_step(text: str) -> tuple[float, int]:
    """Parse ``1000`` or ``1000x2`` (rate in Hz, number of robots)."""
    rate, _, robots = text.strip().partition("x")
    return float(rate), int(robots or 1)


def stale_markers(servers: Servers, device: str) -> int:
    """Return the STALE samples (quality 3) InfluxDB holds for a device."""
    rows = servers.influx.query(f'SELECT count("seq") FROM "pose","wrench","joint_state" '
                                f'WHERE "device"=\'{device}\' AND "quality"=3 GROUP BY "stream"',
                                DATABASE)
    return sum(int(r.get("count") or 0) for r in rows)


def step_verdict(spec: FloorSpec, result: RunResult, servers: Servers,
                 middleware: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Compare per topic: simulator wrote vs GOOD samples in InfluxDB (+ middleware loss)."""
    middleware = middleware or {}
    per_topic: dict[str, tuple[int, int]] = {}
    markers = 0
    for robot in spec.robots:
        good = influx_good_samples(servers.influx, DATABASE, robot.device)
        published = result.robot_topics.get(robot.device, {})
        markers += stale_markers(servers, robot.device)
        for arm in robot.arms.split(","):
            for topic in robot.topics:
                name = f"/{arm}/{topic}"
                stream = f"{arm}/{topic}".replace("/", ".")
                per_topic[f"{robot.device}{name}"] = (published.get(name, 0),
                                                      good.get(stream, 0))
    wrote = sum(p for p, _ in per_topic.values())
    stored_good = sum(g for _, g in per_topic.values())
    lost_topics = {t: list(v) for t, v in per_topic.items() if v[0] != v[1]}
    differing = result.missing_streams()
    health = {k: v for k, v in differing.items() if k.endswith("/topic-health")}
    other = {k: v for k, v in differing.items() if k not in health}
    nominal = sum(r.messages_per_s() for r in spec.robots)
    counted = {t: int(sum(middleware.get(t, {}).get(k, 0) for k in SAMPLE_KINDS))
               for t in per_topic}
    unaccounted = {t: p - g - counted[t] for t, (p, g) in per_topic.items()
                   if p - g - counted[t] != 0}
    first = spec.robots[0]
    return {
        "publisher": getattr(first, "publisher", "cyclone"),
        "transport": getattr(first, "transport", "cyclonedds"),
        "middleware_counted": sum(counted.values()),
        "middleware_by_kind": {k: int(sum(v.get(k, 0) for v in middleware.values()))
                               for k in (*SAMPLE_KINDS, "reader_history_full")},
        "middleware_per_topic": middleware,
        "accounted": wrote == stored_good + sum(counted.values()) and not unaccounted,
        "unaccounted_topics": unaccounted,
        "rate_hz": spec.robots[0].rate_hz, "robots": len(spec.robots),
        "nominal_msg_s": nominal, "sim_wrote": wrote, "sim_msg_s": round(wrote / result.seconds),
        "good_in_influx": stored_good, "lost_source_to_influx": wrote - stored_good,
        "gateway_received": result.received_total, "influx_samples": result.stored_total,
        "stale_markers": markers,
        "lost_gateway_to_influx_data": sum(a - b for a, b in other.values()),
        "health_events_overwritten": sum(a - b for a, b in health.values()),
        "lossless": wrote == stored_good and not other and wrote > 0,
        "lost_topics": lost_topics,
        "streams_differing": {k: list(v) for k, v in differing.items()},
        "gateway_cpu": result.cpu_percent.get("gateway"),
        "ingest_cpu": result.cpu_percent.get("ingest"),
        "sim_cpu": round(sum(v for k, v in result.cpu_percent.items()
                             if k.startswith("robot-sim-")), 1),
        "influxd_cpu": result.cpu_percent.get("influxd"),
        "mosquitto_cpu": result.cpu_percent.get("mosquitto"),
        "gateway_rss_mb": result.peak_rss_mb.get("gateway"),
        "ingest_rss_mb": result.peak_rss_mb.get("ingest"),
        "latency_p50_ms": result.latency_ms.get("all", {}).get("p50", float("nan")),
        "latency_p99_ms": result.latency_ms.get("all", {}).get("p99", float("nan")),
        "overrun": result.metrics_extra.get("medgw_ring_overrun_samples_total"),
        "gateway_user_sys": list(result.gateway_user_sys_percent),
        "gateway_threads": [list(t) for t in result.gateway_threads[:10]],
        "load_before": result.load_before, "load_after": result.load_after,
    }


class Profiler:
    """Attaches py-spy to the gateway and ingest once the flow is steady (a FloorRun hook)."""

    def __init__(self, out_dir: Path, start_after_s: float, duration_s: float) -> None:
        self.out_dir = out_dir
        self.start_after_s = start_after_s
        self.duration_s = duration_s
        self.t0: float | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: dict[str, Path] = {}

    def __call__(self, run: FloorRun) -> None:
        """Called by FloorRun every ~0.5 s of the steady window."""
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        if self.procs or now - self.t0 < self.start_after_s:
            return
        for name in ("gateway", "ingest"):
            path = self.out_dir / f"pyspy-{name}.txt"
            self.files[name] = path
            self.procs[name] = subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(run.children[name].pid), "--duration",
                 str(int(self.duration_s)), "--rate", "100", "--format", "raw", "--output",
                 str(path), "--nonblocking", "--threads", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self) -> dict[str, dict[str, Any]]:
        """Wait for py-spy and summarize each profile."""
        out = {}
        for name, proc in self.procs.items():
            try:
                proc.wait(self.duration_s + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if self.files[name].is_file():
                out[name] = summarize(self.files[name])
        return out


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by own and inclusive samples, and samples per thread, of raw stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], [_LINE_NO.sub(")", f) for f in frames[1:]]
        total += count
        threads[thread] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def rows(counter: collections.Counter[str]) -> list[tuple[str, int, float]]:
        return [(f, n, round(100 * n / total, 1)) for f, n in counter.most_common(top)]

    return {"samples": total, "own": rows(own), "inclusive": rows(inclusive),
            "threads": rows(threads)}


def print_profile(name: str, prof: dict[str, Any]) -> None:
    """Print one process's profile tables."""
    print(f"\npy-spy --gil profile of the {name} process: {prof['samples']} samples "
          "(100 Hz, only the thread holding the GIL: Python CPU time)")
    for kind in ("own", "inclusive"):
        print(f"\n| {name}: top by {kind} time | samples | % of GIL samples |\n|---|---:|---:|")
        for frame, n, pct in prof[kind]:
            print(f"| `{frame}` | {n} | {pct} |")
    print(f"\n| {name}: thread | samples | % |\n|---|---:|---:|")
    for frame, n, pct in prof["threads"][:8]:
        print(f"| {frame} | {n} | {pct} |")


def main() -> None:
    """Run the rate steps and the profile phase; print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="steady flow per step")
    parser.add_argument("--rates", default="250,500,1000,1000x2",
                        help="Hz per topic, comma list; RATExN runs N robots at once")
    parser.add_argument("--profile-rate", type=float, default=1000.0)
    parser.add_argument("--profile-seconds", type=float, default=30.0, help="0: no profile")
    parser.add_argument("--publisher", choices=tuple(PUBLISHERS), default="cyclone",
                        help="the simulator's DDS: cyclone (IdlStructs) or rclpy (Fast DDS)")
    parser.add_argument("--transport", choices=("cyclonedds", "rclpy"), default="cyclonedds",
                        help="the ros2 driver's transport")
    parser.add_argument("--depth", type=int, default=None,
                        help="writer and reader keep-last depth (default 1 s of samples); "
                             "small values make the middleware drop samples")
    parser.add_argument("--out", type=Path, default=RESULTS / "stress.json")
    args = parser.parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # every child: this box only
    os.environ.pop("ROS_STATIC_PEERS", None)
    pair: dict[str, Any] = {"publisher": args.publisher, "transport": args.transport,
                             "depth": args.depth}
    command = "python bench/bench_stress.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="medgw-stress-"))
    plan = [parse_step(r) for r in args.rates.split(",") if r.strip()]
    domains = distinct_domains(sum(n for _, n in plan) + 1)
    steps: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    print(f"work dir (logs, data): {work}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with Servers(work) as servers:
        used = 0
        for rate, robots in plan:
            spec = robot_spec(rate, domains[used:used + robots], **pair)
            used += robots
            run = StressRun(servers, spec, work / f"step-{rate:g}x{robots}")
            result = run.run(args.seconds)
            steps.append(step_verdict(spec, result, servers, run.middleware))
            print(f"step {rate:g} Hz x{robots}: {json.dumps(steps[-1])}", flush=True)
        if args.profile_seconds > 0:
            spec = robot_spec(args.profile_rate, domains[-1:], **pair)
            profiler = Profiler(work, 5.0, max(5.0, args.profile_seconds - 8.0))
            result = FloorRun(servers, spec, work / "profile", latency=False,
                              during=profiler).run(args.profile_seconds)
            profile = {"rate_hz": args.profile_rate, "verdict": step_verdict(spec, result,
                                                                             servers),
                       "processes": profiler.finish()}
            for name, path in profiler.files.items():
                if path.is_file():
                    (RESULTS / f"stress-pyspy-{name}.txt").write_bytes(path.read_bytes())
    print_stress(steps, profile, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "steps": steps, "profile": profile, "cores": os.cpu_count(),
           "spec_example": asdict(robot_spec(plan[-1][0], [0])),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")


def print_stress(steps: list[dict[str, Any]], profile: dict[str, Any], command: str) -> None:
    """Print the steps table, the verdict and the profiles."""
    print(f"\ncommand: {command}")
    print("\n| publisher -> transport | rate Hz x robots | sim wrote | GOOD in InfluxDB | "
          "counted as middleware loss (lost+rejected+stamp_gap+seq_gap) | "
          "wrote = stored + counted | "
          "reader_history_full takes |\n|---|---|---:|---:|---:|:---:|---:|")
    for s in steps:
        kinds = s["middleware_by_kind"]
        print(f"| {s['publisher']} -> {s['transport']} | {s['rate_hz']:g} x{s['robots']} | "
              f"{s['sim_wrote']} | {s['good_in_influx']} | {s['middleware_counted']} "
              f"({kinds['lost']}+{kinds['rejected']}+{kinds['stamp_gap']}+{kinds['seq_gap']}) | "
              f"{'yes' if s['accounted'] else 'NO ' + json.dumps(s['unaccounted_topics'])} | "
              f"{kinds['reader_history_full']} |")
    print("\n| rate Hz x robots | nominal msg/s | sim wrote msg/s | lost sim->InfluxDB (GOOD) | "
          "lost gateway->InfluxDB (data) | lossless | STALE markers | health events "
          "overwritten | gateway CPU % | ingest CPU % | sims CPU % | influxd CPU % | "
          "gateway RSS MB | latency p50/p99 ms | load before/after |")
    print("|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in steps:
        print(f"| {s['rate_hz']:g} x{s['robots']} | {s['nominal_msg_s']:.0f} | {s['sim_msg_s']} | "
              f"{s['lost_source_to_influx']} | {s['lost_gateway_to_influx_data']} | "
              f"{'yes' if s['lossless'] else 'NO'} | {s['stale_markers']} | "
              f"{s['health_events_overwritten']} | {s['gateway_cpu']} | {s['ingest_cpu']} | "
              f"{s['sim_cpu']} | {s['influxd_cpu']} | {s['gateway_rss_mb']} | "
              f"{s['latency_p50_ms']:.0f}/{s['latency_p99_ms']:.0f} | "
              f"{s['load_before']} / {s['load_after']} |")
    print("\ngateway CPU by OS thread (% of one core; Python threads named by py-spy below):")
    for s in steps:
        user, system = s["gateway_user_sys"]
        print(f"- {s['rate_hz']:g} Hz x{s['robots']}: user {user} %, system {system} %; "
              + ", ".join(f"{name}[{tid}] {pct}" for tid, name, pct in s["gateway_threads"][:7]))
    lossless = [s["nominal_msg_s"] for s in steps if s["lossless"]]
    print(f"\nhighest lossless load: {max(lossless):.0f} msg/s" if lossless
          else "\nno step was lossless")
    if profile:
        v = profile["verdict"]
        print(f"\nprofile phase at {profile['rate_hz']:g} Hz (py-spy attached): gateway CPU "
              f"{v['gateway_cpu']} % (user/system {v['gateway_user_sys']}), ingest CPU "
              f"{v['ingest_cpu']} %, lossless {v['lossless']}; gateway threads: "
              + ", ".join(f"{name}[{tid}] {pct}" for tid, name, pct in v["gateway_threads"]))
        for name, prof in profile["processes"].items():
            print_profile(name, prof)


if __name__ == "__main__":
    main()
