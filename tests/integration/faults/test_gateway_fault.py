"""Gateway killed with SIGKILL and restarted; spool full while the broker is down.

No assertion here is on a wall-clock time. The SIGKILL window is checked in samples: the
first run's own counters (``/metrics``, scraped while it runs and right before the kill)
say how many samples sat in the ring, not yet spooled, i.e. what a SIGKILL at that instant
loses; that count must stay within the stated window expressed in samples at the stream's
rate. After the kill, sequence numbers in InfluxDB show that every sample spooled before
the kill was stored, and that the gap record covers exactly the hole.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.ops.services import MosquittoService, free_port
from gateway.server.ingest import Ingest
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import (
    DEVICE,
    STREAMS,
    InProcessChain,
    MedgwProcess,
    config_data,
    figures,
    gaps,
    load,
    report,
    write_config,
)

pytestmark = pytest.mark.integration
MAX_LATENCY_MS = 100.0
FLUSH_MS = 200.0
TICK_MS = 50.0  # publisher tick bound
DRIVER_TICK_MS = 10.0
# The documented SIGKILL window (gateway/edge/publisher.py), in seconds of samples, plus
# scheduling slack on a busy box; both are turned into samples at each stream's rate.
WINDOW_S = (min(MAX_LATENCY_MS, FLUSH_MS) + TICK_MS + DRIVER_TICK_MS) / 1000.0
SLACK_S = 1.0
SCRAPES = 35  # looks at the first run's counters before the kill


def _samples(seconds: float, rate_hz: float) -> int:
    """A span of sample time as a count of samples at ``rate_hz``."""
    return math.ceil(seconds * rate_hz) + 1


def _counters(port: int) -> dict[str, tuple[float, float]]:
    """Scrape a gateway's /metrics: stream key -> (samples received, samples spooled)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found: dict[str, dict[str, float]] = {"received": {}, "spooled": {}}
    for family in text_string_to_metric_families(text):
        name = family.name.removeprefix("medgw_samples_")
        if name in found:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[name][sample.labels["stream"]] = sample.value
    return {key: (received, found["spooled"].get(key, 0.0))
            for key, received in found["received"].items()}


def test_gateway_sigkill_loses_at_most_the_window_and_records_the_gap(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path) -> None:
    port = free_port()
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None,
                       publisher={"max_latency_ms": MAX_LATENCY_MS},
                       spool={"flush_interval_ms": FLUSH_MS},
                       health={"enabled": True, "port": port})
    config = write_config(tmp_path / "medgw.yaml", data)
    ingest = Ingest(load(data))
    ingest.start()
    ingest.wait_subscribed(15)
    first = MedgwProcess("run", config, tmp_path / "gw1.log")
    second = MedgwProcess("run", config, tmp_path / "gw2.log")
    at_risk: dict[str, list[float]] = {}
    try:
        first.start()
        wait_until(lambda: ingest.stats.samples > 500, 30, interval=0.1,
                   message="first run to deliver samples")
        for _ in range(SCRAPES):
            last = _counters(port)
            for key, (received, spooled) in last.items():
                at_risk.setdefault(key, []).append(received - spooled)
            time.sleep(0.02)
        first.kill()  # right after the last scrape
        seen_first_run = ingest.stats.samples
        second.start()
        wait_until(lambda: ingest.stats.samples > seen_first_run + 500, 30, interval=0.1,
                   message="second run to deliver samples")
        assert second.terminate(30) == 0, second.log_tail()
        wait_until(lambda: ingest.stats.gaps >= len(STREAMS), 15, interval=0.1,
                   message="a gap per stream to be recorded")
        time.sleep(0.3)
    finally:
        first.close()
        second.close()
        ingest.stop()
    recorded = {row["stream"]: row for row in gaps(influxdb)}
    for stream in STREAMS:
        key = f"fault-site/{DEVICE}/{stream['name']}"
        fig = figures(influxdb, stream)
        rate = float(str(stream["rate_hz"]))
        assert fig.duplicates == 0
        # first run: 0..L without a hole; second run resumes after the reservation
        resume = next(i for i in range(1, len(fig.seqs)) if fig.seqs[i] != fig.seqs[i - 1] + 1)
        last_first = fig.seqs[resume - 1]
        assert fig.seqs[:resume] == list(range(last_first + 1))
        assert fig.seqs[resume:] == list(range(fig.seqs[resume], fig.seqs[-1] + 1))
        gap = recorded[str(stream["name"])]
        assert (gap["from_seq"], gap["to_seq"]) == (last_first + 1, fig.seqs[resume] - 1)
        # nothing spooled before the kill is lost: the spool survives SIGKILL
        received, spooled = last[key]
        assert resume >= spooled > 0
        # and the second run resumed above every number the first one handed out, so the
        # gap record covers whatever was lost with the process
        assert fig.seqs[resume] >= received
        # what a SIGKILL loses (received, not yet spooled) stays within the stated window
        window = _samples(WINDOW_S, rate)
        worst = max(at_risk[key])
        assert len(at_risk[key]) == SCRAPES
        sent = int(received) + len(fig.seqs) - resume  # at least: the first run's last look
        report(f"gateway SIGKILL ({stream['name']})", sent, fig.points, fig.duplicates,
               f"at risk before the kill {received - spooled:.0f} samples, worst of "
               f"{SCRAPES} looks {worst:.0f} (stated {window} samples = "
               f"{WINDOW_S * 1000:.0f} ms at {rate:.0f} Hz); stored {resume - received:+.0f} "
               f"vs received at the last look; gap record {gap['from_seq']}..{gap['to_seq']}")
        assert worst <= window + _samples(SLACK_S, rate)


def test_spool_full_drops_are_counted_and_recorded_as_gaps(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path) -> None:
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None,
                       spool={"max_bytes": 64 * 1024, "policy": "drop_oldest",
                              "replay_window_s": 0})
    chain = InProcessChain(load(data)).start()
    try:
        wait_until(lambda: chain.ingest.stats.samples > 300, 15, message="first writes")
        mosquitto.kill()
        spool = chain.gateway.publisher.spool
        wait_until(lambda: sum(spool.dropped.values()) > 1000, 30, interval=0.1,
                   message="the full spool to drop samples")
        mosquitto.start()
        wait_until(lambda: chain.gateway.publisher.connected.is_set(), 40,
                   message="publisher to reconnect")
        time.sleep(0.5)
        chain.stop_gateway(30)
        produced = chain.produced_by_stream()
        dropped = dict(spool.dropped)
        unconfirmed = dict(spool.evicted_unconfirmed)
        registry = chain.gateway.metrics.registry
        expected = sum(produced.values()) - sum(dropped.values())
        wait_until(lambda: chain.ingest.stats.samples >= expected, 40, interval=0.1,
                   message=f"ingest to write {expected} samples")
        wait_until(lambda: chain.ingest.stats.missing >= sum(dropped.values()), 20,
                   interval=0.1, message="gaps for every dropped sample")
        time.sleep(0.5)
    finally:
        chain.close()
    recorded = gaps(influxdb)
    for stream in STREAMS:
        name = str(stream["name"])
        key = f"fault-site/gen/{name}"
        fig = figures(influxdb, stream)
        missing = sum(int(g["missing"]) for g in recorded if g["stream"] == name)
        lost = dropped.get(key, 0)
        maybe = unconfirmed.get(key, 0)  # evicted after the broker's ack: stored or not
        report(f"spool full, drop_oldest ({name})", produced[name], fig.points, fig.duplicates,
               f"by policy: dropped={lost} evicted_unconfirmed={maybe} gap_missing={missing}")
        assert fig.duplicates == 0
        assert fig.points == produced[name] - missing  # every hole is recorded as a gap
        assert lost <= missing <= lost + maybe
        assert registry.get_sample_value("medgw_samples_dropped_total",
                                         {"stream": key, "reason": "spool_full_oldest"}) == lost
        holes = sorted(set(range(produced[name])) - set(fig.seqs))
        assert len(holes) == missing
    assert sum(dropped.values()) > 0


SEQ_DAMAGE = {
    "lost": None,  # deleted, the spool directory still holds the previous run's files
    "negative": -1,  # used to kill the publisher thread
    "float": 1e30,  # used to be a traceback at start
    "near_limit": 2**63 - 10,  # used to put the synthetic driver in a crash loop
}


@pytest.mark.parametrize("damage", sorted(SEQ_DAMAGE))
def test_lost_or_corrupt_seq_json_restarts_under_a_new_epoch_and_loses_nothing(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path,
        damage: str) -> None:
    total = 100  # per stream and run (2 s of the 50 Hz event stream)
    spool = tmp_path / "spool"
    loaded = load(config_data(mosquitto, influxdb, spool, total))
    ingest = Ingest(loaded)
    ingest.start()
    ingest.wait_subscribed(15)
    reports: list[tuple[dict[str, Any], Gateway]] = []
    try:
        for run in (1, 2):
            if run == 2:
                seq_json = spool / "seq.json"
                keys = orjson.loads(seq_json.read_bytes())
                value = SEQ_DAMAGE[damage]
                if value is None:
                    seq_json.unlink()
                else:
                    seq_json.write_bytes(orjson.dumps({k: value for k in keys}))
            gateway = Gateway(loaded)
            runner = GatewayThread(gateway)
            runner.start()
            try:
                devices = gateway.devices
                wait_until(lambda: all(d.finished for d in devices), 30,  # noqa: B023
                           interval=0.1, message=f"run {run}: every sample produced")
                reports.append((gateway.health_report(), gateway))
            finally:
                assert runner.stop(30), f"run {run}: not every sample was acknowledged"
        expected = 2 * total * len(STREAMS)
        wait_until(lambda: ingest.stats.samples >= expected, 40, interval=0.1,
                   message=f"ingest to write {expected} samples (both epochs)")
        time.sleep(0.3)
        assert ingest.stats.duplicates == 0
    finally:
        ingest.stop()
    (first, _), (second, second_gw) = reports
    assert first["warnings"] == [] and first["seq_state"]["reset"] is None
    reason = "lost" if damage == "lost" else "corrupt"
    assert second["seq_state"]["reset"].startswith(reason) and len(second["warnings"]) == 1
    assert second["epoch"] != first["epoch"]
    assert second_gw.metrics.registry.get_sample_value(
        "medgw_seq_state_resets_total", {"reason": reason}) == 1
    assert all(d["restarts"] == 0 and d["last_crash"] is None
               for d in second["devices"].values())
    assert second["publisher"]["thread_alive"] and second["publisher"]["loop_errors"] == 0
    assert [r.start_seq for r in second_gw.store.rings()] == [0] * len(STREAMS)
    for stream in STREAMS:
        fig = figures(influxdb, stream)
        # both runs numbered 0..total-1, under two epochs: every sample stored, none dropped
        assert fig.points == 2 * total
        assert Counter(fig.seqs) == {seq: 2 for seq in range(total)}
        report(f"seq.json {damage} ({stream['name']})", 2 * total, fig.points, 0,
               f"reset: {second['seq_state']['reset'].rsplit('seq.json', 1)[-1][:70]}")
    assert gaps(influxdb) == []  # a clean stop each time: nothing is missing


def test_unreachable_opcua_device_is_down_in_health_while_the_rest_flows(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    endpoint = f"opc.tcp://127.0.0.1:{dead}"
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None)
    data["devices"].append({"name": "carriers", "driver": "opcua", "options": {
        "endpoint": endpoint, "security_policy": "None", "browse": [{"pattern": "Fleet/*/*"}],
        "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "request_timeout_s": 1.0}})
    gateway = Gateway(load(data))
    runner = GatewayThread(gateway)
    server = HealthServer("127.0.0.1", 0, gateway.metrics.registry, gateway.health_report,
                          store=gateway.store)
    server.start()
    runner.start()
    url = f"http://127.0.0.1:{server.port}"

    def health() -> tuple[int, dict[str, Any]]:
        resp = requests.get(f"{url}/health", timeout=10)
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status_code, orjson.loads(resp.content)  # never an empty reply

    try:
        wait_until(lambda: health()[1]["devices"]["carriers"]["last_error"], 20, interval=0.1,
                   message="the OPC UA driver's first failed attempt")
        wait_until(lambda: health()[1]["broker_connected"], 15, message="the broker")
        code, doc = health()
        streams = requests.get(f"{url}/api/streams", timeout=10).json()
    finally:
        runner.stop(15)
        server.stop()
    carriers = doc["devices"]["carriers"]
    print(f"\n/health with an unreachable OPC UA endpoint: {code} {carriers}")
    assert code == 503 and doc["status"] == "degraded"
    assert carriers["state"] == "down" and carriers["connected"] is False
    assert isinstance(carriers["last_error"], str) and str(dead) in carriers["last_error"]
    assert carriers["restarts"] == 0  # the driver retries on its own; it did not crash
    assert doc["devices"][DEVICE]["state"] == "connected"  # the synthetic device flows
    assert doc["problems"] == [f"device carriers is down: {carriers['last_error']}"]
    page = {d["name"]: d["state"] for d in streams["devices"]}
    assert page["carriers"] == "down" and page[DEVICE] == "connected"
    assert gateway.metrics.registry.get_sample_value(
        "medgw_device_connected", {"device": "carriers"}) == 0
