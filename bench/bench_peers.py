"""Benchmark: medgw against the tool an integrator would deploy instead, side by side.

OPC UA: the carrier simulator (50 carriers x 9 numeric variables at 10 Hz) is read at
the same time, in the same run, by
- medgw: ``medgw run`` (opcua driver -> ring -> publisher with its spool -> mosquitto)
  and ``medgw ingest`` (-> InfluxDB database ``medgw_bench``), and
- Node-RED 4 + node-red-contrib-opcua + node-red-contrib-influxdb (the flow in
  bench/peers/nodered_flow.py; npm installs it into bench/peers/nodered/ on first run)
  -> the same influxd, database ``nodered_bench``.

Printed per side:
- CPU per 1,000 values (process CPU time, utime+stime from /proc, over the steady
  window; values = the simulator's numeric writes in that window, the same for both);
  medgw's figure is gateway + ingest (mosquitto shown on its own);
- peak RSS (VmHWM) of the processes;
- freshness: every 0.5 s, now - the newest source time stored in the side's database
  (p50, p99 over the steady window; the source itself ticks every 100 ms);
- values missing after a 20 s InfluxDB outage (influxd SIGKILLed, restarted on the same
  port and data dir) and after an OPC UA server restart (simulator process stopped and
  started again on the same port): how long until values flow again, and what is lost.

    .venv/bin/python bench/bench_peers.py            # ~4.5 min
    .venv/bin/python bench/bench_peers.py --quick    # ~2.5 min (shorter steady window)

ROS 2 (``--only ros2``, or after the OPC UA table with the default ``--only all``): medgw
(one chain per driver transport, rclpy and cyclonedds) against a plain rclpy node writing
line protocol over HTTP, on the same rclpy/Fast DDS publisher and influxd: see
bench/peers/ros2_side.py (``--ros2-rates``, default 100,1000 Hz; 30 s per rate and a
40 s outage phase, about 4 min more). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
import yaml
from bench_floor import (
    BIN,
    DATABASE,
    ROOT,
    Child,
    FloorSpec,
    Servers,
    cpu_seconds,
    load_average,
    percentiles,
    start_pyspy,
)
from peers import nodered_flow, ros2_side

from gateway.ops.services import free_port

RESULTS = ROOT / "bench" / "results"
NR_DATABASE = "nodered_bench"
MEDGW_FIELDS = ("route_progress", "route_position", "speed", "battery",
                "payload_temperature", "door_open", "mission_state", "specimen_count",
                "active_alarm")


# --------------------------------------------------------------------- setup
def ensure_nodered() -> None:
    """npm-install Node-RED and the two node packages into bench/peers/nodered once."""
    if (nodered_flow.NODERED_DIR / "node_modules" / "node-red" / "red.js").is_file():
        return
    if shutil.which("npm") is None:
        raise SystemExit("bench_peers needs node and npm (Debian: apt-get install nodejs npm)")
    print("installing Node-RED into bench/peers/nodered (npm install) ...", flush=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund"],
                   cwd=nodered_flow.NODERED_DIR, check=True)


def namespace_index(endpoint: str) -> int:
    """Return the simulator's namespace index (read once with asyncua)."""
    from asyncua import Client

    async def read() -> int:
        async with Client(endpoint) as client:
            return int(await client.get_namespace_index("urn:medgw:sim:transport-carrier"))

    return asyncio.run(read())


# --------------------------------------------------------------------- influx reads
def newest_ns(url: str, database: str, query: str) -> int | None:
    """Return the time of the newest point a query selects (None if none or on error)."""
    try:
        resp = requests.post(f"{url}/query", timeout=5,
                             data={"q": query, "db": database, "epoch": "ns"})
        series = resp.json()["results"][0].get("series")
    except (requests.RequestException, ValueError, KeyError):
        return None
    return int(series[0]["values"][0][0]) if series else None


def medgw_values(url: str, t0: int, t1: int) -> int:
    """Return the carrier values medgw stored with source time in [t0, t1)."""
    cols = ", ".join(f'count("{f}")' for f in MEDGW_FIELDS)
    q = f'SELECT {cols} FROM "carrier" WHERE time >= {t0} AND time < {t1}'
    return _sum_counts(url, DATABASE, q)


def nodered_values(url: str, t0: int, t1: int) -> int:
    """Return the carrier values Node-RED stored with source time in [t0, t1)."""
    q = f'SELECT count("value") FROM "carrier" WHERE time >= {t0} AND time < {t1}'
    return _sum_counts(url, NR_DATABASE, q)


def _sum_counts(url: str, database: str, query: str) -> int:
    try:
        resp = requests.post(f"{url}/query", timeout=30, data={"q": query, "db": database})
        series = resp.json()["results"][0].get("series") or []
    except (requests.RequestException, ValueError, KeyError):
        return -1
    return sum(int(v or 0) for s in series for row in s["values"] for v in row[1:])


QUERIES = {"medgw": (DATABASE, 'SELECT last("seq") FROM "carrier"'),
           "nodered": (NR_DATABASE, 'SELECT last("value") FROM "carrier"')}


class Freshness:
    """Samples now - newest stored source time of both sides every ``every_s``."""

    def __init__(self, url: str, every_s: float = 0.5) -> None:
        self.url = url
        self.every_s = every_s
        self.samples: dict[str, list[float]] = {side: [] for side in QUERIES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness", daemon=True)

    def start(self) -> Freshness:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop; return p50/p90/p99/max (ms) per side."""
        self._stop.set()
        self._thread.join(10)
        return {side: percentiles(values) for side, values in self.samples.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for side, (db, q) in QUERIES.items():
                stamp = newest_ns(self.url, db, q)
                if stamp is not None:
                    self.samples[side].append((time.time_ns() - stamp) / 1e6)


def first_after(url: str, side: str, t_ns: int, timeout_s: float) -> float | None:
    """Seconds until the side stores a value with source time >= t_ns (None: never)."""
    db, q = QUERIES[side]
    query = q + f" WHERE time >= {t_ns}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if newest_ns(url, db, query) is not None:
            return (time.time_ns() - t_ns) / 1e9
        time.sleep(0.1)
    return None


# --------------------------------------------------------------------- the run
@dataclass
class PeerResult:
    """What one run measured (both sides)."""

    load: list[str] = field(default_factory=list)
    steady_s: float = 0.0
    writes: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    freshness_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    outage: dict[str, Any] = field(default_factory=dict)
    restart: dict[str, Any] = field(default_factory=dict)


class PeerRun:
    """Simulator, medgw (gateway + ingest) and Node-RED against one influxd."""

    def __init__(self, servers: Servers, work: Path, carriers: int,
                 pyspy: bool = False, overrides: tuple[str, ...] = ()) -> None:
        self.servers = servers
        self.overrides = overrides
        self.pyspy = pyspy
        self.work = work
        self.carriers = carriers
        self.opcua_port = free_port()
        self.health_port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.opcua_port}/medgw/carriers"
        self.children: dict[str, Child] = {}
        self.result = PeerResult()

    @property
    def url(self) -> str:
        """InfluxDB URL."""
        return self.servers.influx.url

    def _start(self, name: str, argv: list[str], stdin: bool = False) -> Child:
        child = Child(name, argv, self.work, stdin=stdin)
        self.children[name] = child
        return child

    def _start_sim(self) -> Child:
        sim = self._start("carrier-sim", [
            sys.executable, "-m", "simulators.transport_carrier", "--port",
            str(self.opcua_port), "--carriers", str(self.carriers), "--rate", "10",
            "--security", "None", "--control-stdin"], stdin=True)
        sim.wait_text(r"READY", 120, stream="out")
        return sim

    def _sim_stop(self) -> int:
        """Pause the simulator; return its numeric writes since the last start."""
        sim = self.children["carrier-sim"]
        count = sim.out().count("STATS ")
        sim.send("stop")
        sim.wait_text(r"STATS ", 30, count=count + 1, stream="out")
        last = sim.out().split("STATS ")[-1].splitlines()[0]
        return int(json.loads(last)["numeric_writes"])

    def setup(self) -> None:
        """Start everything and wait until both sides are subscribed."""
        self.work.mkdir(parents=True, exist_ok=True)
        for db in (DATABASE, NR_DATABASE):
            self.servers.influx.query(f'DROP DATABASE "{db}"')
            self.servers.influx.query(f'CREATE DATABASE "{db}"')
        self._start_sim()
        spec = FloorSpec(carriers=self.carriers)
        config = spec.config(self.servers.broker.port, self.url, self.health_port,
                             self.opcua_port, self.work / "spool")
        for item in self.overrides:  # --medgw-set section.key=value
            dotted, _, text = item.partition("=")
            section, _, key = dotted.partition(".")
            config.setdefault(section, {})[key] = yaml.safe_load(text)
        path = self.work / "gateway.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        ingest = self._start("ingest", [str(BIN / "medgw"), "ingest", "-c", str(path)])
        ingest.wait_text(r"subscribed to", 60)
        gateway = self._start("gateway", [str(BIN / "medgw"), "run", "-c", str(path)])
        ns = namespace_index(self.endpoint)
        os.environ["NODE_IDS"] = ",".join(nodered_flow.node_ids(ns, self.carriers))
        settings = nodered_flow.write_user_dir(self.work / "nodered", self.endpoint,
                                               self.servers.influx.port, NR_DATABASE,
                                               free_port())
        self._start("nodered", nodered_flow.argv(settings))
        gateway.wait_text(r"session up", 120)
        want = self.carriers * len(nodered_flow.VARIABLES)
        deadline = time.monotonic() + 120
        while nodered_values(self.url, 0, 2**62) < want:
            if time.monotonic() > deadline or not self.children["nodered"].alive():
                raise RuntimeError("Node-RED did not store the initial values:\n"
                                   + self.children["nodered"].log()[-3000:])
            time.sleep(0.5)
        time.sleep(2.0)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each side's processes."""
        out = {name: self.children[name].cpu() for name in ("gateway", "ingest", "nodered")}
        out["mosquitto"] = cpu_seconds(self.servers.broker.pid or 0)
        return out

    def steady(self, seconds: float) -> None:
        """Run the fleet ``seconds``; CPU, freshness and values stored per side."""
        r = self.result
        t0 = time.time_ns()
        cpu0 = self.cpu()
        self.children["carrier-sim"].send("start")
        time.sleep(1.0)  # before: the newest stored values are the paused fleet's
        fresh = Freshness(self.url).start()
        if self.pyspy:
            for name in ("gateway", "ingest"):
                start_pyspy(self.children[name].pid, self.work / f"pyspy-{name}.txt",
                            seconds - 2.0)
        time.sleep(seconds - 1.0)
        r.freshness_ms = fresh.stop()
        r.writes = self._sim_stop()
        cpu1 = self.cpu()
        r.steady_s = seconds
        time.sleep(2.0)
        r.cpu_s = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
        t1 = time.time_ns()
        r.stored = self._settled(t0, t1)
        for name, child in self.children.items():
            child.memory()
            r.rss_mb[name] = round(child.hwm_kb / 1024, 1)
        r.load.append(load_average())

    def _settled(self, t0: int, t1: int, timeout_s: float = 90.0) -> dict[str, int]:
        """Values per side in [t0, t1) once the counts stop changing (bounded)."""
        last: dict[str, int] = {}
        since = time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            now = {"medgw": medgw_values(self.url, t0, t1),
                   "nodered": nodered_values(self.url, t0, t1)}
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > 4.0:
                break
            time.sleep(1.0)
        return last

    def influx_outage(self, before_s: float = 5.0, down_s: float = 20.0,
                      after_s: float = 15.0) -> None:
        """SIGKILL influxd for ``down_s`` while the fleet runs; count what is missing."""
        t0 = time.time_ns()
        self.children["carrier-sim"].send("start")
        time.sleep(before_s)
        self.servers.influx.kill()
        time.sleep(down_s)
        self.servers.influx.start()
        back = time.time_ns()
        recovered = {side: first_after(self.url, side, back, 60.0) for side in QUERIES}
        time.sleep(after_s)
        writes = self._sim_stop()
        t1 = time.time_ns()
        stored = self._settled(t0, t1, timeout_s=120.0)
        self.result.outage = {"down_s": down_s, "writes": writes, "stored": stored,
                              "missing": {k: writes - v for k, v in stored.items()},
                              "fresh_values_after_s": recovered}
        self.result.load.append(load_average())

    def opcua_restart(self, before_s: float = 5.0, after_s: float = 20.0) -> None:
        """Stop the simulator process and start it again on the same port."""
        self.children["carrier-sim"].send("start")
        time.sleep(before_s)
        old = self.children.pop("carrier-sim")
        old.stop(10)
        sim = self._start_sim()  # on the same port, paused
        t0 = time.time_ns()
        sim.send("start")
        resumed = {side: first_after(self.url, side, t0, after_s + 20.0) for side in QUERIES}
        left = after_s - (time.time_ns() - t0) / 1e9
        time.sleep(max(0.0, left))
        writes = self._sim_stop()
        t1 = time.time_ns()
        stored = self._settled(t0, t1)
        self.result.restart = {"writes_after_restart": writes, "stored": stored,
                               "missing": {k: writes - v for k, v in stored.items()},
                               "resumed_after_s": resumed}
        self.result.load.append(load_average())

    def close(self) -> None:
        """Stop every child."""
        for child in reversed(list(self.children.values())):
            child.stop(15)


# --------------------------------------------------------------------- report
def report(r: PeerResult, command: str) -> dict[str, Any]:
    """Print the side-by-side table; return the figures."""
    per_k = {k: 1e6 * v / max(1, r.writes) for k, v in r.cpu_s.items()}
    medgw = per_k["gateway"] + per_k["ingest"]
    nodered = per_k["nodered"]
    rss_medgw = r.rss_mb.get("gateway", 0) + r.rss_mb.get("ingest", 0)
    fm, fn = r.freshness_ms["medgw"], r.freshness_ms["nodered"]
    print(f"\n$ {command}\nload (1/5/15 min) after each phase: {' | '.join(r.load)}")
    print(f"steady {r.steady_s:.0f} s: {r.writes:,} values written by the simulator; "
          f"stored: medgw {r.stored.get('medgw'):,}, Node-RED {r.stored.get('nodered'):,}")
    rows = [
        ("CPU ms per 1,000 values (gateway+ingest / node)", f"{medgw:.1f}", f"{nodered:.1f}",
         f"{medgw / nodered:.2f}"),
        ("  gateway alone", f"{per_k['gateway']:.1f}", "", f"{per_k['gateway'] / nodered:.2f}"),
        ("  + mosquitto", f"{medgw + per_k['mosquitto']:.1f}", "",
         f"{(medgw + per_k['mosquitto']) / nodered:.2f}"),
        ("freshness p50 / p99 ms", f"{fm['p50']:.0f} / {fm['p99']:.0f}",
         f"{fn['p50']:.0f} / {fn['p99']:.0f}", f"{fm['p50'] / fn['p50']:.2f} (p50)"),
        ("peak RSS MB", f"{rss_medgw:.0f}", f"{r.rss_mb.get('nodered', 0):.0f}",
         f"{rss_medgw / max(1.0, r.rss_mb.get('nodered', 0)):.2f}"),
    ]
    o, s = r.outage, r.restart
    if o:
        rows.append((f"InfluxDB SIGKILL {o['down_s']:.0f} s: values missing of {o['writes']:,}",
                     f"{o['missing']['medgw']:,}", f"{o['missing']['nodered']:,}", ""))
        rows.append(("  fresh values again after restart (s)",
                     _s(o["fresh_values_after_s"]["medgw"]),
                     _s(o["fresh_values_after_s"]["nodered"]), ""))
    if s:
        rows.append(("OPC UA server restart: resumed after (s)", _s(s["resumed_after_s"]["medgw"]),
                     _s(s["resumed_after_s"]["nodered"]), ""))
        rows.append((f"  values missing of {s['writes_after_restart']:,} after it",
                     f"{s['missing']['medgw']:,}", f"{s['missing']['nodered']:,}", ""))
    print("\n| | medgw | Node-RED | medgw / Node-RED |\n|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return {"command": command, "cpu_ms_per_1000": per_k, "medgw_cpu_ms_per_1000": medgw,
            "ratio_cpu": medgw / nodered, "result": r.__dict__}


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def main() -> None:
    """Run the side-by-side benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s steady window (~2.5 min)")
    parser.add_argument("--seconds", type=float, default=None, help="steady window (s)")
    parser.add_argument("--carriers", type=int, default=50)
    parser.add_argument("--no-faults", action="store_true", help="skip outage and restart")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--medgw-set", action="append", default=[], metavar="SECTION.KEY=V",
                        help="override one key of medgw's config (e.g. influxdb.flush_ms=100)")
    parser.add_argument("--pyspy", action="store_true",
                        help="py-spy the gateway over the steady window (WORKDIR/run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/peers.json (--only ros2: peers_ros2.json)")
    parser.add_argument("--only", choices=("opcua", "ros2", "all"), default="all",
                        help="which peers to run (ROS 2: bench/peers/ros2_side.py)")
    parser.add_argument("--ros2", dest="only", action="store_const", const="ros2",
                        help="same as --only ros2")
    parser.add_argument("--ros2-rates", default="100,1000", help="Hz, comma list")
    parser.add_argument("--ros2-transports", default=",".join(ros2_side.TRANSPORTS))
    args = parser.parse_args()
    seconds = args.seconds or (30.0 if args.quick else 120.0)
    args.out = args.out or RESULTS / ("peers_ros2.json" if args.only == "ros2" else "peers.json")
    command = "python bench/bench_peers.py " + " ".join(sys.argv[1:])
    if args.only != "ros2":
        ensure_nodered()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medgw-peers-"))
    print(f"work dir (logs, data): {work}; load {load_average()}", flush=True)
    ros2: dict[str, Any] = {}
    with Servers(work) as servers:
        if args.only != "ros2":
            run = PeerRun(servers, work / "run", args.carriers, args.pyspy,
                          tuple(args.medgw_set))
            try:
                run.setup()
                run.steady(seconds)
                if not args.no_faults:
                    run.influx_outage()
                    run.opcua_restart()
            finally:
                run.close()
        if args.only != "opcua":
            ros2 = ros2_side.run_side(
                servers, work, min(seconds, 30.0),
                tuple(float(r) for r in args.ros2_rates.split(",") if r),
                tuple(t for t in args.ros2_transports.split(",") if t), not args.no_faults)
    doc = report(run.result, command) if args.only != "ros2" else {"command": command}
    if ros2:
        ros2_side.report(ros2, command)
        doc["ros2"] = ros2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
