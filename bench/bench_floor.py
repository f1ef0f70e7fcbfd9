"""Benchmark: a hospital floor on one box, soaked through the whole chain.

Two surgical robots (each its own DDS domain and ros2 device: arms PSM1, PSM2, PSM3, ECM
publishing measured_js, measured_cp and body/measured_cf at 100 Hz, plus their event
topics) and a fleet of 50 transport carriers (OPC UA, 9 numeric variables at 10 Hz) feed
one gateway; an ingest worker writes to InfluxDB. Simulators, mosquitto, influxd, the
gateway (``medgw run -c FILE``) and the ingest (``medgw ingest -c FILE``) are separate
processes on this box, so each one's CPU and memory is read from /proc on its own.

Reported:
- samples the gateway received (``medgw_samples_received`` on its /metrics) vs samples
  in InfluxDB (InfluxQL count per device/stream; a sample of a channel stream is one
  point per joint, counted once), per stream and in total; target: equal;
- end-to-end latency p50/p99: a probe thread picks T = now once a second and polls
  InfluxDB every 20 ms for the first point with time >= T of one device's measurement
  (robots and carriers in turn); latency = wall clock when that point became visible
  minus its own timestamp (the source stamp). Resolution: the 20 ms poll plus one query;
- CPU (% of one core, from /proc/<pid>/stat utime+stime over the steady window) and
  peak RSS (VmHWM from /proc/<pid>/status) of the gateway and ingest (targets: gateway
  <= 50 %, <= 300 MB), and of the simulators and servers for context.

    /tmp/venv/bin/python bench/bench_floor.py                  # 600 s soak (~11 min)
    /tmp/venv/bin/python bench/bench_floor.py --seconds 60     # short run
    /tmp/venv/bin/python bench/bench_floor.py --seconds 60 --ring-capacity 8192

Writes bench/results/floor.json and floor.png (RSS and CPU over time). The harness
classes here are reused by bench_stress.py and bench_scaling.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import yaml  # noqa: E402

from gateway.ops.services import InfluxdService, MosquittoService, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROBOT_ARMS = "PSM1,PSM2,PSM3,ECM"
ROBOT_TOPICS = ("measured_js", "measured_cp", "body/measured_cf")
SITE = "bench-floor"
DATABASE = "medgw_bench"
_METRIC_LINE = re.compile(r'^(\w+)(?:\{([^}]*)\})?\s+([-+0-9.eEinfNa]+)$')


# --------------------------------------------------------------------- processes
def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the benchmark dies."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of a process (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """Return (user, system) CPU seconds of a process ((0, 0) once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Return {tid: (thread name, CPU seconds)} of every thread of a process."""
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (task / "stat").read_text()
                name = text.split("(", 1)[1].rsplit(")", 1)[0]
                fields = text.rsplit(")", 1)[1].split()
                out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """Return VmRSS and VmHWM (peak RSS) in kB of a live process ({} once it is gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def load_average() -> str:
    """Return the 1/5/15-minute load averages as text."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Child:
    """One child process with a log file; SIGTERM then SIGKILL on stop."""

    def __init__(self, name: str, argv: list[str], workdir: Path,
                 stdin: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self.out_path = workdir / f"{name}.out"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=err,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        self.cpu_at_exit: float | None = None
        self.hwm_kb = 0

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc.poll() is None

    def cpu(self) -> float:
        """Return CPU seconds used so far."""
        return cpu_seconds(self.pid) if self.alive() else (self.cpu_at_exit or 0.0)

    def memory(self) -> dict[str, int]:
        """Return VmRSS/VmHWM (kB) now; remember the peak."""
        mem = memory_kb(self.pid)
        self.hwm_kb = max(self.hwm_kb, mem.get("VmHWM", 0))
        return mem

    def log(self) -> str:
        """Return stderr so far."""
        return self.log_path.read_text(errors="replace")

    def out(self) -> str:
        """Return stdout so far."""
        return self.out_path.read_text(errors="replace")

    def send(self, line: str) -> None:
        """Write a line to the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_text(self, pattern: str, timeout: float, count: int = 1,
                  stream: str = "log") -> None:
        """Wait until ``pattern`` occurs ``count`` times in the log (or stdout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log() if stream == "log" else self.out()
            if len(re.findall(pattern, text)) >= count:
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                                   f"{self.log()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {pattern!r} x{count} within {timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop gracefully (SIGTERM), then SIGKILL; return the exit code."""
        if self.alive():
            self.memory()
            self.cpu_at_exit = cpu_seconds(self.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_pyspy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Record the Python stacks holding the GIL of ``pid`` for ``seconds`` (raw format)."""
    return subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration",
                             f"{seconds:.0f}", "--rate", "100", "--gil", "--nonblocking",
                             "--threads", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------- metrics / influx
def scrape(port: int) -> dict[str, dict[str, float]]:
    """Return the gateway's /metrics as {metric: {label text: value}}."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            out.setdefault(match.group(1), {})[match.group(2) or ""] = float(match.group(3))
    return out


def received_per_stream(metrics: dict[str, dict[str, float]]) -> dict[str, int]:
    """Return medgw_samples_received per stream key ``site/device/stream``."""
    got = {}
    for labels, value in metrics.get("medgw_samples_received_total", {}).items():
        key = labels.split('stream="', 1)[1].rstrip('"')
        got[key] = int(value)
    return got


def influx_good_samples(influx: InfluxdService, database: str, device: str) -> dict[str, int]:
    """Return GOOD (quality 0) samples per stream of one device (one count per channel set)."""
    rows = influx.query(f'SELECT count("seq") FROM /.*/ WHERE "device"=\'{device}\' '
                        'AND "quality"=0 GROUP BY *', database)
    samples: dict[str, int] = {}
    for row in rows:
        stream = str(row.get("stream"))
        samples[stream] = max(samples.get(stream, 0), int(row.get("count") or 0))
    return samples


def influx_samples(influx: InfluxdService, database: str) -> tuple[dict[str, int], int]:
    """Return (samples per site/device/stream, total points) held by InfluxDB.

    Channel streams write one point per channel per sample: a stream's sample count is
    the largest count over its channel series (they are equal when nothing is lost).
    """
    rows = influx.query('SELECT count("seq") FROM /.*/ GROUP BY *', database)
    samples: dict[str, int] = {}
    points = 0
    for row in rows:
        count = int(row.get("count") or 0)
        points += count
        key = f"{row.get('site')}/{row.get('device')}/{row.get('stream')}"
        samples[key] = max(samples.get(key, 0), count)
    return samples, points


def ring_footprint(port: int) -> dict[str, Any]:
    """Return the gateway's ring count and their size once full (from /api/streams).

    A ring preallocates its capacity in samples of int64 stamp, int64 receive time, uint8
    quality and ``width`` float64 values (+ an object pointer per sample for events);
    numpy's zeroed pages only become resident as the ring fills, so a short run shows
    only part of this. Each stream reports its own capacity (rings are sized in time).
    """
    doc = requests.get(f"http://127.0.0.1:{port}/api/streams", timeout=30).json()
    total = filled = 0
    events = 0
    capacities: dict[int, int] = {}
    for entry in doc["streams"]:
        is_event = entry["kind"] != "sampled"
        events += is_event
        cap = int(entry["capacity"])
        capacities[cap] = capacities.get(cap, 0) + 1
        per_sample = 17 + 8 * int(entry["width"])
        total += cap * (per_sample + (8 if is_event else 0))
        filled += min(cap, int(entry["samples"])) * per_sample + (8 * cap if is_event else 0)
    sizes = ", ".join(f"{n} x {cap}" for cap, n in sorted(capacities.items()))
    return {"streams": len(doc["streams"]), "event_streams": events, "capacities": sizes,
            "full_mb": round(total / 2**20, 1), "filled_mb": round(filled / 2**20, 1)}


class LatencyProbe:
    """Samples end-to-end latency: first point with time >= now, when does it appear?"""

    def __init__(self, url: str, database: str, targets: list[tuple[str, str, str]],
                 poll_s: float = 0.02, every_s: float = 1.0, timeout_s: float = 15.0) -> None:
        self.url = url
        self.database = database
        self.targets = targets  # (label, measurement, device)
        self.poll_s = poll_s
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.samples: dict[str, list[float]] = {label: [] for label, _, _ in targets}
        self.timeouts: dict[str, int] = {label: 0 for label, _, _ in targets}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        self._session = requests.Session()

    def start(self) -> None:
        """Start probing in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def _first_after(self, measurement: str, device: str, t_ns: int) -> int | None:
        q = (f'SELECT first("seq") FROM "{measurement}" WHERE "device"=\'{device}\' '
             f"AND time >= {t_ns}")
        resp = self._session.post(f"{self.url}/query", timeout=10,
                                  data={"q": q, "db": self.database, "epoch": "ns"})
        series = resp.json()["results"][0].get("series")
        return int(series[0]["values"][0][0]) if series else None

    def _probe(self, label: str, measurement: str, device: str) -> None:
        t_ns = time.time_ns()
        deadline = time.monotonic() + self.timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            stamp = self._first_after(measurement, device, t_ns)
            seen = time.time_ns()
            if stamp is not None:
                self.samples[label].append((seen - stamp) / 1e6)
                return
            time.sleep(self.poll_s)
        if not self._stop.is_set():
            self.timeouts[label] += 1

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            started = time.monotonic()
            label, measurement, device = self.targets[index % len(self.targets)]
            index += 1
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                self._probe(label, measurement, device)
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def summary(self) -> dict[str, dict[str, float]]:
        """Return n, p50, p90, p99, max (ms) per target label and over all."""
        out = {}
        groups = dict(self.samples)
        groups["all"] = [v for values in self.samples.values() for v in values]
        for label, values in groups.items():
            out[label] = percentiles(values)
            out[label]["timeouts"] = (sum(self.timeouts.values()) if label == "all"
                                      else self.timeouts[label])
        return out


def percentiles(values: list[float]) -> dict[str, float]:
    """Return n, p50, p90, p99 and max of a list (NaN when empty)."""
    if not values:
        return {"n": 0, "p50": float("nan"), "p90": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": ordered[-1]}


# --------------------------------------------------------------------- the floor
@dataclass
class RobotSpec:
    """One simulated robot = one ros2 device on its own DDS domain."""

    device: str
    domain: int
    rate_hz: float = 100.0
    arms: str = ROBOT_ARMS
    topics: tuple[str, ...] = ROBOT_TOPICS
    events: bool = True
    writer_depth: int = 100
    reader_depth: int = 100
    batch_window_ms: float | None = None  # None: the driver's default

    def device_config(self) -> dict[str, Any]:
        """Return the gateway config entry of this robot."""
        options: dict[str, Any] = {
            "domain_id": self.domain, "patterns": ["/PSM*/*", "/ECM*/*"],
            "default_rate_hz": self.rate_hz, "stale_periods": 20,
            "qos": {"reliability": "reliable", "durability": "volatile",
                    "depth": self.reader_depth}}
        if self.batch_window_ms is not None:
            options["batch_window_ms"] = self.batch_window_ms
        return {"name": self.device, "driver": "ros2", "options": options}

    def argv(self, seconds: float) -> list[str]:
        """Return the simulator command line."""
        return [sys.executable, "-m", "simulators.surgical_robot.cli", "--arms", self.arms,
                "--rate", f"{self.rate_hz:g}", "--domain", str(self.domain),
                "--topics", ",".join(self.topics), "--events" if self.events else "--no-events",
                "--duration", f"{seconds:g}", "--wait-subscribers", "60",
                "--history-depth", str(self.writer_depth), "--stats"]

    def messages_per_s(self) -> float:
        """Return the nominal sampled messages per second."""
        return len(self.arms.split(",")) * len(self.topics) * self.rate_hz


@dataclass
class FloorSpec:
    """What runs on the floor and how the gateway is configured."""

    robots: list[RobotSpec] = field(default_factory=list)
    carriers: int = 0
    carrier_rate_hz: float = 10.0
    publisher: dict[str, Any] = field(default_factory=dict)
    influxdb: dict[str, Any] = field(default_factory=dict)

    def config(self, broker_port: int, influx_url: str, health_port: int,
               opcua_port: int, spool: Path) -> dict[str, Any]:
        """Return the generated gateway/ingest config."""
        devices = [r.device_config() for r in self.robots]
        if self.carriers:
            devices.append({"name": "carrier-fleet", "driver": "opcua", "options": {
                "endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/medgw/carriers",
                "security_policy": "None", "browse": [{"pattern": "Fleet/*/*"}],
                "publishing_interval_ms": 100, "sampling_interval_ms": 0,
                "queue_size": 100, "rediscover_interval_s": 0}})
        return {
            "site": SITE, "gateway": "edge-bench",
            "mqtt": {"host": "127.0.0.1", "port": broker_port},
            "publisher": dict(self.publisher),
            "spool": {"dir": str(spool)},
            "influxdb": {"backend": "v1", "url": influx_url, "database": DATABASE,
                         **self.influxdb},
            "health": {"enabled": True, "host": "127.0.0.1", "port": health_port},
            "devices": devices,
        }


def distinct_domains(n: int) -> list[int]:
    """Return n DDS domain ids above the range the tests pick from (1..200)."""
    return random.Random(time.time_ns()).sample(range(201, 232), n)


class Servers:
    """mosquitto + influxd for the whole benchmark (reused across runs)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.broker = MosquittoService(work / "mosquitto")
        self.influx = InfluxdService(work / "influxd")

    def __enter__(self) -> Servers:
        self.broker.start()
        self.influx.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.broker.stop()
        self.influx.stop()

    def fresh_database(self) -> None:
        """Drop and recreate the benchmark database."""
        self.influx.query(f'DROP DATABASE "{DATABASE}"')
        self.influx.query(f'CREATE DATABASE "{DATABASE}"')

    def children(self) -> dict[str, int | None]:
        """Return the server pids."""
        return {"mosquitto": self.broker.pid, "influxd": self.influx.pid}


@dataclass
class RunResult:
    """Everything one floor run measured."""

    seconds: float
    load_before: str
    load_after: str = ""
    received: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    points: int = 0
    cpu_percent: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    rss_trace_mb: dict[str, list[float]] = field(default_factory=dict)
    cpu_trace_percent: dict[str, list[float]] = field(default_factory=dict)
    trace_every_s: float = 5.0
    spool_trace: list[float] = field(default_factory=list)  # medgw_spool_records per sample
    pyspy: dict[str, str] = field(default_factory=dict)  # elapsed s -> raw stacks file
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    robot_published: dict[str, int] = field(default_factory=dict)
    robot_topics: dict[str, dict[str, int]] = field(default_factory=dict)
    carrier_stats: dict[str, Any] = field(default_factory=dict)
    metrics_extra: dict[str, float] = field(default_factory=dict)
    ingest_summary: str = ""
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    rings: dict[str, Any] = field(default_factory=dict)
    gateway_user_sys_percent: tuple[float, float] = (0.0, 0.0)
    gateway_threads: list[tuple[int, str, float]] = field(default_factory=list)

    @property
    def received_total(self) -> int:
        """Samples the gateway received."""
        return sum(self.received.values())

    @property
    def stored_total(self) -> int:
        """Samples InfluxDB holds (of the streams the gateway received)."""
        return sum(self.stored.get(key, 0) for key in self.received)

    def missing_streams(self) -> dict[str, tuple[int, int]]:
        """Streams whose InfluxDB count differs from the gateway's: key -> (recv, stored)."""
        keys = set(self.received) | set(self.stored)
        return {k: (self.received.get(k, 0), self.stored.get(k, 0)) for k in sorted(keys)
                if self.received.get(k, 0) != self.stored.get(k, 0)}

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict with totals."""
        doc = asdict(self)
        doc["received_total"] = self.received_total
        doc["stored_total"] = self.stored_total
        doc["missing_streams"] = {k: list(v) for k, v in self.missing_streams().items()}
        return doc


class FloorRun:
    """One run: simulators -> gateway process -> broker -> ingest process -> InfluxDB."""

    def __init__(self, servers: Servers, spec: FloorSpec, work: Path,
                 latency: bool = True, during: Callable[[FloorRun], None] | None = None,
                 sample_every_s: float = 5.0, pyspy_at: tuple[float, ...] = (),
                 pyspy_seconds: float = 20.0) -> None:
        self.servers = servers
        self.pyspy_at = sorted(pyspy_at)  # elapsed seconds at which to profile the gateway
        self.pyspy_seconds = pyspy_seconds
        self.spec = spec
        self.work = work
        self.latency = latency
        self.during = during
        self.sample_every_s = sample_every_s
        self.health_port = free_port()
        self.opcua_port = free_port()
        self.children: dict[str, Child] = {}

    def _config_file(self) -> Path:
        data = self.spec.config(self.servers.broker.port, self.servers.influx.url,
                                self.health_port, self.opcua_port, self.work / "spool")
        path = self.work / "gateway.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def _start(self, name: str, argv: list[str], stdin: bool = False) -> Child:
        child = Child(name, argv, self.work, stdin=stdin)
        self.children[name] = child
        return child

    @contextlib.contextmanager
    def _cleanup(self) -> Iterator[None]:
        try:
            yield
        finally:
            for child in reversed(list(self.children.values())):
                child.stop(10)

    def run(self, seconds: float) -> RunResult:
        """Run the floor for ``seconds`` of steady flow and measure it."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.servers.fresh_database()
        config = self._config_file()
        result = RunResult(seconds=seconds, load_before=load_average())
        with self._cleanup():
            self._start_sources_and_chain(config)
            self._steady(seconds, result)
            self._drain(result)
        result.load_after = load_average()
        return result

    def _start_sources_and_chain(self, config: Path) -> None:
        if self.spec.carriers:
            sim = self._start("carrier-sim", [
                sys.executable, "-m", "simulators.transport_carrier", "--port",
                str(self.opcua_port), "--carriers", str(self.spec.carriers), "--rate",
                f"{self.spec.carrier_rate_hz:g}", "--security", "None", "--control-stdin"],
                stdin=True)
            sim.wait_text(r"READY", 120, stream="out")
        ingest = self._start("ingest", [str(BIN / "medgw"), "ingest", "-c", str(config)])
        ingest.wait_text(r"subscribed to", 60)
        gateway = self._start("gateway", [str(BIN / "medgw"), "run", "-c", str(config)])
        gateway.wait_text(r"connected to (the )?broker", 60)
        if self.spec.carriers:
            gateway.wait_text(r"session up", 120)

    def _steady(self, seconds: float, result: RunResult) -> None:
        for robot in self.spec.robots:
            self._start(f"robot-sim-{robot.device}", robot.argv(seconds))
        gateway = self.children["gateway"]
        n_topics = sum(len(r.arms.split(",")) * (len(r.topics) + (4 if r.events else 0))
                       for r in self.spec.robots)
        if n_topics:
            gateway.wait_text(r"ros2 \S+: subscribed", 120, count=n_topics)
            for robot in self.spec.robots:
                self.children[f"robot-sim-{robot.device}"].wait_text(r"publishing", 120)
        if self.spec.carriers:
            self.children["carrier-sim"].send("start")
        probe = self._probe()
        gw_pid = self.children["gateway"].pid
        split0, threads0 = cpu_split(gw_pid), thread_cpu(gw_pid)
        cpu0 = {name: c.cpu() for name, c in self.children.items()}
        cpu0.update({name: cpu_seconds(pid) for name, pid in self.servers.children().items()
                     if pid})
        t0 = time.monotonic()
        trace: dict[str, list[float]] = {"gateway": [], "ingest": []}
        cpu_trace: dict[str, list[float]] = {"gateway": [], "ingest": []}
        last_cpu = {name: cpu0[name] for name in trace}
        next_sample = t0
        pyspy_due = list(self.pyspy_at)
        profilers: list[subprocess.Popen[bytes]] = []
        while (elapsed := time.monotonic() - t0) < seconds:
            if pyspy_due and elapsed >= pyspy_due[0]:
                at = pyspy_due.pop(0)
                out = self.work / f"pyspy-gateway-{at:.0f}s.txt"
                profilers.append(start_pyspy(gw_pid, out, self.pyspy_seconds))
                result.pyspy[f"{at:.0f}"] = str(out)
            if time.monotonic() >= next_sample:
                with contextlib.suppress(requests.RequestException):
                    spool = scrape(self.health_port).get("medgw_spool_records", {})
                    result.spool_trace.append(sum(spool.values()))
                for name in trace:
                    child = self.children[name]
                    trace[name].append(round(child.memory().get("VmRSS", 0) / 1024, 1))
                    now_cpu = child.cpu()
                    if next_sample > t0:
                        cpu_trace[name].append(round(
                            100 * (now_cpu - last_cpu[name]) / self.sample_every_s, 1))
                    last_cpu[name] = now_cpu
                next_sample += self.sample_every_s
            if self.during is not None:
                self.during(self)
            time.sleep(min(0.5, max(0.05, seconds - elapsed)))
        wall = time.monotonic() - t0
        for profiler in profilers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(self.pyspy_seconds + 30)
        split1, threads1 = cpu_split(gw_pid), thread_cpu(gw_pid)
        result.gateway_user_sys_percent = (round(100 * (split1[0] - split0[0]) / wall, 1),
                                           round(100 * (split1[1] - split0[1]) / wall, 1))
        result.gateway_threads = sorted(
            ((tid, name, round(100 * (cpu - threads0.get(tid, (name, 0.0))[1]) / wall, 1))
             for tid, (name, cpu) in threads1.items()), key=lambda t: -t[2])
        cpu1 = {name: c.cpu() for name, c in self.children.items()}
        cpu1.update({name: cpu_seconds(pid) for name, pid in self.servers.children().items()
                     if pid})
        result.cpu_percent = {name: round(100 * (cpu1[name] - cpu0.get(name, 0.0)) / wall, 1)
                              for name in cpu1 if name in cpu0}
        for name, child in self.children.items():
            child.memory()
            result.peak_rss_mb[name] = round(child.hwm_kb / 1024, 1)
        for name, pid in self.servers.children().items():
            if pid:
                result.peak_rss_mb[name] = round(memory_kb(pid).get("VmHWM", 0) / 1024, 1)
        result.rss_trace_mb = trace
        result.cpu_trace_percent = cpu_trace
        result.trace_every_s = self.sample_every_s
        if probe is not None:
            probe.stop()
            result.latency_ms = probe.summary()

    def _probe(self) -> LatencyProbe | None:
        if not self.latency:
            return None
        targets = [(f"{r.device} joint_state", "joint_state", r.device)
                   for r in self.spec.robots]
        if self.spec.carriers:
            targets.append(("carrier-fleet carrier", "carrier", "carrier-fleet"))
        probe = LatencyProbe(self.servers.influx.url, DATABASE, targets)
        probe.start()
        return probe

    def _drain(self, result: RunResult) -> None:
        """Stop the sources, let the chain settle, then compare gateway vs InfluxDB."""
        for robot in self.spec.robots:
            child = self.children[f"robot-sim-{robot.device}"]
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(60)
            child.stop(10)
            lines = child.out().strip().splitlines()
            if lines:
                published = json.loads(lines[-1])["published"]
                result.robot_topics[robot.device] = published
                result.robot_published[robot.device] = sum(
                    published[f"/{arm}/{topic}"] for arm in robot.arms.split(",")
                    for topic in robot.topics)
        if self.spec.carriers:
            sim = self.children["carrier-sim"]
            sim.send("stop")
            with contextlib.suppress(RuntimeError):
                sim.wait_text(r"STATS ", 30, stream="out")
                stats = sim.out().split("STATS ", 1)[1].splitlines()[0]
                result.carrier_stats = json.loads(stats)
        # stale markers follow a silent source within stale_periods: wait until quiet
        result.received = self._stable(lambda: received_per_stream(scrape(self.health_port)))
        metrics = scrape(self.health_port)
        for name in ("medgw_ring_overrun_samples_total", "medgw_samples_dropped_total",
                     "medgw_samples_published_total", "medgw_malformed_messages_total"):
            result.metrics_extra[name] = sum(metrics.get(name, {}).values())
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            result.rings = ring_footprint(self.health_port)
        self.children["gateway"].memory()
        result.exit_codes["gateway"] = self.children["gateway"].stop(60)
        influx = self.servers.influx
        result.stored = self._stable(lambda: influx_samples(influx, DATABASE)[0],
                                     quiet_s=4.0, timeout_s=180.0,
                                     done=lambda got: all(got.get(k, 0) >= v for k, v in
                                                          result.received.items()))
        result.points = influx_samples(influx, DATABASE)[1]
        result.exit_codes["ingest"] = self.children["ingest"].stop(60)
        result.ingest_summary = self.children["ingest"].out().strip()[-300:]
        for name in ("gateway", "ingest"):
            result.peak_rss_mb[name] = round(self.children[name].hwm_kb / 1024, 1)

    @staticmethod
    def _stable(read: Callable[[], dict[str, int]], quiet_s: float = 3.0,
                timeout_s: float = 60.0,
                done: Callable[[dict[str, int]], bool] | None = None) -> dict[str, int]:
        """Poll ``read`` until it is unchanged for ``quiet_s`` (or ``done``), bounded."""
        deadline = time.monotonic() + timeout_s
        last = read()
        since = time.monotonic()
        while time.monotonic() < deadline:
            if done is not None and done(last):
                return last
            time.sleep(0.5)
            now = read()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return last
        return last


# --------------------------------------------------------------------- report
def print_floor(spec: FloorSpec, result: RunResult, command: str) -> None:
    """Print the soak's tables."""
    print(f"\ncommand: {command}")
    print(f"load average before: {result.load_before}   after: {result.load_after}   "
          f"({os.cpu_count()} cores)")
    nominal_robot = sum(r.messages_per_s() for r in spec.robots)
    print(f"sources: {len(spec.robots)} robots ({nominal_robot:.0f} sampled msg/s nominal), "
          f"{spec.carriers} carriers at {spec.carrier_rate_hz:g} Hz; steady window "
          f"{result.seconds:.0f} s")
    for device, n in result.robot_published.items():
        print(f"  {device}: simulator wrote {n} messages ({n / result.seconds:.0f}/s)")
    if result.carrier_stats:
        cs = result.carrier_stats
        print(f"  carrier sim: {cs.get('ticks')} ticks, {cs.get('numeric_writes')} numeric "
              f"value changes in {cs.get('seconds')} s "
              f"({cs.get('numeric_writes', 0) / max(cs.get('seconds', 1), 1e-9):.0f}/s)")
    recv, stored = result.received_total, result.stored_total
    print("\n| samples | count |\n|---|---:|")
    print(f"| received by the gateway (medgw_samples_received) | {recv} |")
    print(f"| in InfluxDB (InfluxQL count, per stream) | {stored} |")
    print(f"| difference | {recv - stored} |")
    print(f"| InfluxDB points (one per joint for joint_state) | {result.points} |")
    for name, value in result.metrics_extra.items():
        print(f"| {name} | {value:.0f} |")
    missing = result.missing_streams()
    if missing:
        print(f"streams that differ ({len(missing)}): "
              + ", ".join(f"{k} {a}->{b}" for k, a_b in list(missing.items())[:10]
                          for a, b in [a_b]))
    print("\n| latency source->InfluxDB | n | p50 ms | p90 ms | p99 ms | max ms | timeouts |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, s in result.latency_ms.items():
        print(f"| {label} | {s['n']:.0f} | {s['p50']:.0f} | {s['p90']:.0f} | {s['p99']:.0f} "
              f"| {s['max']:.0f} | {s['timeouts']:.0f} |")
    print("\n| process | CPU % of one core | peak RSS MB |\n|---|---:|---:|")
    for name in sorted(result.cpu_percent, key=lambda n: -result.cpu_percent[n]):
        print(f"| {name} | {result.cpu_percent[name]:.1f} | "
              f"{result.peak_rss_mb.get(name, float('nan')):.1f} |")
    user, system = result.gateway_user_sys_percent
    print(f"gateway CPU split: user {user} %, system {system} %; busiest threads (OS name, "
          "tid, % of one core): " + ", ".join(f"{n} {t} {p}" for t, n, p in
                                               result.gateway_threads[:8]))
    if result.spool_trace:
        print(f"spool records (medgw_spool_records) every {result.trace_every_s:g} s: first "
              f"{result.spool_trace[:3]}, max {max(result.spool_trace):.0f}, last "
              f"{result.spool_trace[-3:]}")
    for at, path in result.pyspy.items():
        print(f"py-spy of the gateway at {at} s: {path}")
    trace = result.rss_trace_mb
    if trace.get("gateway"):
        print(f"gateway RSS first/last sample: {trace['gateway'][0]} / {trace['gateway'][-1]} MB;"
              f" ingest: {trace['ingest'][0]} / {trace['ingest'][-1]} MB")
    if result.rings:
        rings = result.rings
        print(f"gateway rings: {rings['streams']:.0f} streams ({rings['event_streams']:.0f} "
              f"of them events; streams x samples: {rings['capacities']}) = "
              f"{rings['full_mb']:.0f} MB once every ring is full; {rings['filled_mb']:.0f} MB "
              "written so far (event rings' text column counted whole: it is filled at start)")
    gw_cpu = result.cpu_percent.get("gateway", float("nan"))
    gw_rss = result.peak_rss_mb.get("gateway", float("nan"))
    health = {k: v for k, v in missing.items() if k.endswith("/topic-health")}
    data_ok = len(health) == len(missing)
    overwritten = sum(a - b for a, b in health.values())
    print(f"\ntargets: lossless (data streams) {'MET' if data_ok else 'MISSED'}"
          + (f", topic-health events overwritten in InfluxDB: {overwritten}" if health else "")
          + "; gateway CPU "
          f"{gw_cpu:.0f} % (<= 50 %: {'MET' if gw_cpu <= 50 else 'MISSED'}); gateway peak RSS "
          f"{gw_rss:.0f} MB (<= 300 MB: {'MET' if gw_rss <= 300 else 'MISSED'})")
    print(f"exit codes: {result.exit_codes}; {result.ingest_summary}")


def floor_spec(carriers: int, ring_capacity: int | None = None) -> FloorSpec:
    """The hospital floor: two robots at 100 Hz and a carrier fleet at 10 Hz."""
    d1, d2 = distinct_domains(2)
    publisher = {} if ring_capacity is None else {"ring_capacity": ring_capacity}
    return FloorSpec(robots=[RobotSpec("robot-1", d1), RobotSpec("robot-2", d2)],
                     carriers=carriers, publisher=publisher)


def main() -> None:
    """Run the soak and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="steady flow duration")
    parser.add_argument("--carriers", type=int, default=50)
    parser.add_argument("--ring-capacity", type=int, default=None,
                        help="publisher.ring_capacity (default: the gateway's)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs/data here")
    parser.add_argument("--out", type=Path, default=RESULTS / "floor.json")
    parser.add_argument("--pyspy-at", default="",
                        help="comma-separated elapsed seconds at which to py-spy the gateway "
                             "for --pyspy-seconds (compare minute 1 with minute 10)")
    parser.add_argument("--pyspy-seconds", type=float, default=20.0)
    args = parser.parse_args()
    pyspy_at = tuple(float(x) for x in args.pyspy_at.split(",") if x)
    command = "python bench/bench_floor.py " + " ".join(sys.argv[1:])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medgw-floor-"))
    spec = floor_spec(args.carriers, args.ring_capacity)
    print(f"work dir (logs, data): {work}", flush=True)
    with Servers(work) as servers:
        result = FloorRun(servers, spec, work / "run", pyspy_at=pyspy_at,
                          pyspy_seconds=args.pyspy_seconds).run(args.seconds)
    print_floor(spec, result, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "spec": asdict(spec), "result": result.to_json(),
           "cores": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    png = args.out.with_suffix(".png")
    try:
        plot_traces(result, png, command)
    except ImportError as err:  # a benchmark-only package: the figures above stand alone
        print(f"wrote {args.out}; no plot ({err}: pip install matplotlib)")
        return
    print(f"wrote {args.out} and {png}")


def plot_traces(result: RunResult, path: Path, title: str) -> None:
    """RSS and CPU of the gateway and ingest over the soak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, cpu) = plt.subplots(1, 2, figsize=(11, 4))
    for name, style in (("gateway", "-"), ("ingest", "--")):
        rss = result.rss_trace_mb.get(name, [])
        mem.plot([i * result.trace_every_s for i in range(len(rss))], rss, style, label=name)
        use = result.cpu_trace_percent.get(name, [])
        cpu.plot([(i + 1) * result.trace_every_s for i in range(len(use))], use, style,
                 label=name)
    mem.axhline(300, color="red", linewidth=0.8, linestyle="-.", label="target 300 MB")
    cpu.axhline(50, color="red", linewidth=0.8, linestyle="-.", label="gateway target 50 %")
    mem.set_ylabel("RSS, MB")
    cpu.set_ylabel(f"CPU, % of one core ({result.trace_every_s:g} s windows)")
    for ax in (mem, cpu):
        ax.set_xlabel("seconds of steady flow")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"hospital floor soak: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
