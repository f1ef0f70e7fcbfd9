"""The ROS 2 side of bench_peers.py: medgw against a plain rclpy node, same publisher run.

One publisher: the surgical-robot simulator as an rclpy node on Fast DDS (``--transport
rclpy``), 4 arms x ``/<arm>/measured_js`` (sensor_msgs/JointState), reliable, keep-last
depth = 1 s of samples. Read at the same time by

- medgw, once per driver transport: ``medgw run`` with the ros2 driver (``transport:
  rclpy``, raw CDR on Fast DDS; ``transport: cyclonedds``, its own Cyclone participant,
  which reads Fast DDS by ignoring its type information) -> mosquitto (a topic prefix per
  chain) -> ``medgw ingest`` -> InfluxDB database ``medgw_ros2_<transport>``;
- the peer, bench/peers/ros2_peer.py (a plain rclpy node: JointState callbacks -> line
  protocol -> batched HTTP /write with requests; a batch is retried 3 times, then
  dropped) -> the same influxd, database ``rclpy_ros2``.

Readers use the same QoS (reliable, volatile, depth = 1 s of samples). Phases, each
with fresh processes and databases: ``rate`` Hz steady, and 100 Hz with influxd
SIGKILLed for 20 s (restarted on the same port and data dir). Measured per reader from
/proc: CPU per 1,000 messages (medgw = gateway + ingest) over the publishing window,
peak RSS (VmHWM), freshness p50/p99 (every 0.5 s: now - the newest source time stored),
and messages missing of those the simulator published (per topic, from its own counts).
Every process: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a DDS domain of its own per
phase, Cyclone on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ (also as a script)

import requests
import yaml
from bench_floor import (
    BIN,
    Child,
    Servers,
    distinct_domains,
    load_average,
    percentiles,
)

from gateway.ops.services import free_port

ARMS = ("PSM1", "PSM2", "PSM3", "ECM")
PEER = Path(__file__).resolve().parent / "ros2_peer.py"
PEER_DB = "rclpy_ros2"
TRANSPORTS = ("rclpy", "cyclonedds")
SITE = "bench-peers"
DEVICE = "robot"


def medgw_db(transport: str) -> str:
    """Return the InfluxDB database of one medgw chain."""
    return f"medgw_ros2_{transport}"


def _query(url: str, database: str, q: str) -> list[dict[str, Any]]:
    """Return the series of an InfluxQL query ([] on any error)."""
    try:
        resp = requests.post(f"{url}/query", timeout=30,
                             data={"q": q, "db": database, "epoch": "ns"})
        return list(resp.json()["results"][0].get("series") or [])
    except (requests.RequestException, ValueError, KeyError):
        return []


def newest_ns(url: str, database: str) -> int | None:
    """Return the source time of the newest joint_state point in a database."""
    series = _query(url, database, 'SELECT * FROM "joint_state" ORDER BY time DESC LIMIT 1')
    return int(series[0]["values"][0][0]) if series else None


def stored_per_arm(url: str, database: str) -> dict[str, int]:
    """Messages per arm stored in a database (medgw: GOOD samples; peer: lines)."""
    if database == PEER_DB:
        q, tag = 'SELECT count(*) FROM "joint_state" GROUP BY "arm"', "arm"
    else:
        q = 'SELECT count("seq") FROM "joint_state" WHERE "quality"=0 GROUP BY *'
        tag = "stream"
    out: dict[str, int] = {}
    for s in _query(url, database, q):
        arm = str(s.get("tags", {}).get(tag, "")).split(".")[0]
        counts = [int(v or 0) for row in s["values"] for v in row[1:]]
        out[arm] = max(out.get(arm, 0), max(counts, default=0))  # a point per joint: max
    return out


class Freshness:
    """Every ``every_s``: now - newest stored source time, per database."""

    def __init__(self, url: str, databases: list[str], every_s: float = 0.5) -> None:
        self.url, self.every_s = url, every_s
        self.samples: dict[str, list[float]] = {db: [] for db in databases}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for db, values in self.samples.items():
                stamp = newest_ns(self.url, db)
                if stamp is not None:
                    values.append((time.time_ns() - stamp) / 1e6)

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop; return p50/p90/p99/max (ms) per database."""
        self._stop.set()
        self._thread.join(30)
        return {db: percentiles(v) for db, v in self.samples.items()}


@dataclass
class Phase:
    """What one phase measured, per reader (``rclpy``/``cyclonedds`` = medgw, ``peer``)."""

    rate_hz: float
    seconds: float
    outage_s: float = 0.0
    load: list[str] = field(default_factory=list)
    published: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    freshness_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    peer_stats: dict[str, Any] = field(default_factory=dict)
    middleware_lost: dict[str, float] = field(default_factory=dict)


class Ros2Run:
    """One phase: simulator, one medgw chain per transport, the peer node, one influxd."""

    def __init__(self, servers: Servers, work: Path, domain: int, rate_hz: float,
                 transports: tuple[str, ...]) -> None:
        self.servers, self.work, self.domain, self.rate = servers, work, domain, rate_hz
        self.transports = transports
        self.depth = max(100, int(rate_hz))  # 1 s of samples, on every reader and the writer
        self.children: dict[str, Child] = {}
        self.health: dict[str, int] = {}

    @property
    def readers(self) -> list[str]:
        """Reader names: one per medgw transport, then the peer."""
        return [*self.transports, "peer"]

    def database(self, reader: str) -> str:
        """Return a reader's database."""
        return PEER_DB if reader == "peer" else medgw_db(reader)

    def _start(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, self.work)
        self.children[name] = child
        return child

    def config(self, transport: str) -> Path:
        """Write one medgw chain's config (own topic prefix, database, health port, spool)."""
        self.health[transport] = free_port()
        options = {"transport": transport, "domain_id": self.domain,
                   "topics": [{"name": f"/{arm}/measured_js",
                               "type": "sensor_msgs/msg/JointState"} for arm in ARMS],
                   "default_rate_hz": self.rate, "stale_periods": 20,
                   "qos": {"reliability": "reliable", "durability": "volatile",
                           "depth": self.depth}}
        doc = {"site": SITE, "gateway": f"edge-{transport}",
               "mqtt": {"host": "127.0.0.1", "port": self.servers.broker.port,
                        "topic_prefix": f"medgw_{transport}/v1"},
               "spool": {"dir": str(self.work / f"spool-{transport}")},
               "ingest": {"group": f"medgw-{transport}", "client_id": f"ingest-{transport}"},
               "influxdb": {"backend": "v1", "url": self.servers.influx.url,
                            "database": medgw_db(transport)},
               "health": {"enabled": True, "host": "127.0.0.1",
                          "port": self.health[transport]},
               "devices": [{"name": DEVICE, "driver": "ros2", "options": options}]}
        path = self.work / f"medgw-{transport}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def setup(self) -> None:
        """Fresh databases; start the chains and the peer; wait until every reader is up."""
        self.work.mkdir(parents=True, exist_ok=True)
        for reader in self.readers:
            db = self.database(reader)
            self.servers.influx.query(f'DROP DATABASE "{db}"')
            self.servers.influx.query(f'CREATE DATABASE "{db}"')
        for transport in self.transports:
            path = self.config(transport)
            ingest = self._start(f"ingest-{transport}",
                                 [str(BIN / "medgw"), "ingest", "-c", str(path)])
            ingest.wait_text(r"subscribed to", 60)
            self._start(f"gateway-{transport}", [str(BIN / "medgw"), "run", "-c", str(path)])
        peer = self._start("peer", [
            sys.executable, str(PEER), "--domain", str(self.domain), "--arms", ",".join(ARMS),
            "--url", self.servers.influx.url, "--database", PEER_DB,
            "--depth", str(self.depth)])
        peer.wait_text(r"READY", 60, stream="out")
        for transport in self.transports:
            gateway = self.children[f"gateway-{transport}"]
            gateway.wait_text(r"connected to (the )?broker", 60)
            # explicit topics: every reader exists before the publisher does
            gateway.wait_text(r"ros2 \S+: subscribed .* via", 120, count=len(ARMS))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per reader (medgw: gateway + ingest)."""
        out = {t: self.children[f"gateway-{t}"].cpu() + self.children[f"ingest-{t}"].cpu()
               for t in self.transports}
        out["peer"] = self.children["peer"].cpu()
        for t in self.transports:
            out[f"{t}:gateway"] = self.children[f"gateway-{t}"].cpu()
        return out

    def run(self, seconds: float, outage_s: float = 0.0) -> Phase:
        """Publish for ``seconds`` (influxd SIGKILLed for ``outage_s`` after 5 s); measure.

        The publisher (:func:`publish`) starts once every reader exists and holds its
        first sample until every reader matched every topic.
        """
        phase = Phase(self.rate, seconds, outage_s, load=[load_average()])
        sim = self._start("robot-sim", [
            sys.executable, str(Path(__file__).resolve()), "--domain", str(self.domain),
            "--rate", f"{self.rate:g}", "--seconds", f"{seconds:g}", "--depth",
            str(self.depth), "--readers", str(len(self.readers))])
        sim.wait_text(r"publishing", 120)
        cpu0 = self.cpu()
        fresh = Freshness(self.servers.influx.url, [self.database(r) for r in self.readers])
        if outage_s:
            time.sleep(5.0)
            self.servers.influx.kill()
            time.sleep(outage_s)
            self.servers.influx.start()
        with contextlib.suppress(Exception):
            sim.proc.wait(seconds + 120)
        cpu1 = self.cpu()
        phase.freshness_ms = {r: v for r, v in zip(self.readers, fresh.stop().values(),
                                                   strict=True)}
        phase.cpu_s = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1}
        lines = sim.out().strip().splitlines()
        published = json.loads(lines[-1])["published"] if lines else {}
        phase.published = sum(published.values())
        self._settle(phase, published)
        phase.load.append(load_average())
        return phase

    def _settle(self, phase: Phase, published: dict[str, int], timeout_s: float = 120.0
                ) -> None:
        """Wait until every reader's counts are quiet; missing, RSS, the peer's counts."""
        url = self.servers.influx.url
        last: dict[str, dict[str, int]] = {}
        since = time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            now = {r: stored_per_arm(url, self.database(r)) for r in self.readers}
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > 5.0:
                break
            time.sleep(1.0)
        want = {topic.split("/")[1]: n for topic, n in published.items()}
        for reader in self.readers:
            got = last.get(reader, {})
            phase.stored[reader] = sum(got.values())
            phase.missing[reader] = sum(max(0, n - got.get(arm, 0)) for arm, n in want.items())
        for transport in self.transports:
            phase.middleware_lost[transport] = self._middleware_lost(transport)
        for name, child in self.children.items():
            child.memory()
            phase.rss_mb[name] = round(child.hwm_kb / 1024, 1)
        peer = self.children["peer"]
        peer.stop(30)
        with contextlib.suppress(ValueError, IndexError):
            phase.peer_stats = json.loads(peer.out().strip().splitlines()[-1])

    def _middleware_lost(self, transport: str) -> float:
        try:
            text = requests.get(f"http://127.0.0.1:{self.health[transport]}/metrics",
                                timeout=10).text
        except requests.RequestException:
            return float("nan")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("medgw_middleware_samples_lost_total{")
                   and 'kind="reader_history_full"' not in line)

    def close(self) -> None:
        """Stop every child."""
        for child in reversed(list(self.children.values())):
            child.stop(15)


def run_side(servers: Servers, work: Path, seconds: float, rates: tuple[float, ...],
             transports: tuple[str, ...] = TRANSPORTS, faults: bool = True,
             outage_s: float = 20.0) -> dict[str, Any]:
    """Run every phase; return {"phases": [...]} for the report."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    plan: list[tuple[float, float, float]] = [(r, seconds, 0.0) for r in rates]
    if faults:
        plan.append((100.0, outage_s + 20.0, outage_s))
    domains = distinct_domains(len(plan))
    phases = []
    for i, (rate, secs, outage) in enumerate(plan):
        run = Ros2Run(servers, work / f"ros2-{i}-{rate:g}hz", domains[i], rate, transports)
        try:
            run.setup()
            phases.append(run.run(secs, outage))
        finally:
            run.close()
        print(f"ros2 phase {rate:g} Hz{' outage' if outage else ''}: "
              f"{json.dumps(phases[-1].__dict__, default=str)}", flush=True)
    return {"transports": list(transports), "phases": [p.__dict__ for p in phases]}


def report(side: dict[str, Any], command: str) -> None:
    """Print the ROS 2 table (one column per medgw transport, then the peer)."""
    transports = side["transports"]
    head = " | ".join(f"medgw ({t})" for t in transports)
    ratio = " | ".join(f"{t} / peer" for t in transports)
    print(f"\n$ {command}  (ROS 2 side)\n| | {head} | plain rclpy node | {ratio} |")
    print("|---|" + "---:|" * (2 * len(transports) + 1))
    for p in side["phases"]:
        tag = (f"{p['rate_hz']:g} Hz, influxd SIGKILL {p['outage_s']:.0f} s" if p["outage_s"]
               else f"{p['rate_hz']:g} Hz")
        print(f"| **4 arms x JointState at {tag}**, {p['published']:,} published; load "
              f"{' -> '.join(p['load'])} |" + " |" * (2 * len(transports) + 1))
        if not p["outage_s"]:
            per_k = {r: 1e6 * p["cpu_s"][r] / max(1, p["published"]) for r in
                     [*transports, "peer"]}
            _row("CPU ms per 1,000 messages (gateway+ingest / node)", transports,
                 lambda r, pk=per_k: f"{pk[r]:.1f}", lambda t, pk=per_k: pk[t] / pk["peer"])
            gw = {t: 1e6 * p["cpu_s"][f"{t}:gateway"] / max(1, p["published"])
                  for t in transports}
            _row("  gateway alone", transports,
                 lambda r, g=gw: f"{g[r]:.1f}" if r in g else "",
                 lambda t, g=gw, pk=per_k: g[t] / pk["peer"])
            fr = p["freshness_ms"]
            _row("freshness p50 / p99 ms", transports,
                 lambda r, f=fr: f"{f[r]['p50']:.0f} / {f[r]['p99']:.0f}",
                 lambda t, f=fr: f[t]["p50"] / f["peer"]["p50"])
            rss = {t: p["rss_mb"].get(f"gateway-{t}", 0) + p["rss_mb"].get(f"ingest-{t}", 0)
                   for t in transports}
            rss["peer"] = p["rss_mb"].get("peer", 0)
            _row("peak RSS MB (gateway+ingest / node)", transports,
                 lambda r, m=rss: f"{m[r]:.0f}", lambda t, m=rss: m[t] / max(1.0, m["peer"]))
        _row(f"messages missing of {p['published']:,}", transports,
             lambda r, m=p["missing"]: f"{m[r]:,}", None)
        _row("  counted by medgw as middleware loss", transports,
             lambda r, m=p["middleware_lost"]: f"{m[r]:.0f}" if r in m else "", None)
        ps = p.get("peer_stats", {})
        if ps:
            print(f"| peer: received {ps.get('received', 0):,}, batches dropped "
                  f"{ps.get('batches_dropped', 0)} ({ps.get('lines_dropped', 0):,} lines) |"
                  + " |" * (2 * len(transports) + 1))


def _row(label: str, transports: list[str], cell: Any, ratio: Any) -> None:
    cells = [cell(t) for t in transports] + [cell("peer")]
    ratios = [f"{ratio(t):.2f}" if ratio else "" for t in transports]
    print("| " + " | ".join([label, *cells, *ratios]) + " |")


def publish(domain: int, rate_hz: float, seconds: float, depth: int, readers: int) -> None:
    """The publisher process: the simulator in rclpy mode, held until ``readers`` matched.

    The simulator's CLI waits for one reader per topic; here every reader of the run
    must have matched every topic before the first sample, so none misses the start.
    """
    import signal

    from simulators.surgical_robot import dds
    from simulators.surgical_robot.sim import RobotSimulator, SimConfig

    config = SimConfig(arms=list(ARMS), rate_hz=rate_hz, domain_id=domain,
                       topics=["measured_js"], events=False, transport="rclpy",
                       network=dds.NetworkOptions(interface="lo"),
                       qos=dds.QosOptions(depth=depth))
    sim = RobotSimulator(config).open()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if not sim.wait_for_subscribers(120.0, count=readers):
            print("warning: not every reader matched every topic; publishing anyway",
                  file=sys.stderr, flush=True)
        time.sleep(1.0)  # matched on the writer side; let the readers' side settle too
        sim.start()
        print(f"publishing {len(sim.topics())} topics at {rate_hz:g} Hz on domain {domain}",
              file=sys.stderr, flush=True)
        stop.wait(seconds)
    finally:
        sim.stop()
    print(json.dumps({"published": {t: sim.published(t) for t in sim.topics()}}), flush=True)


if __name__ == "__main__":
    import argparse

    _p = argparse.ArgumentParser(description="the ROS 2 side's publisher process")
    _p.add_argument("--domain", type=int, required=True)
    _p.add_argument("--rate", type=float, required=True)
    _p.add_argument("--seconds", type=float, required=True)
    _p.add_argument("--depth", type=int, required=True)
    _p.add_argument("--readers", type=int, required=True)
    _a = _p.parse_args()
    publish(_a.domain, _a.rate, _a.seconds, _a.depth, _a.readers)
