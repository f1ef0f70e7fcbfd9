"""InfluxDB killed and restarted; the ingest killed (SIGKILL) and restarted: nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.ops.services import MosquittoService
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import (
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


def check_all_stored(influx: InfluxTarget, produced: dict[str, int], fault: str) -> None:
    """Every produced sample is in InfluxDB exactly once; no gap recorded."""
    for stream in STREAMS:
        fig = figures(influx, stream)
        sent = produced[str(stream["name"])]
        report(f"{fault} ({stream['name']})", sent, fig.points, fig.duplicates, "0")
        assert fig.duplicates == 0
        assert fig.seqs == list(range(sent))
    assert gaps(influx) == []


def test_influxdb_sigkill_and_restart_loses_nothing(mosquitto: MosquittoService,
                                                    influxd_private: InfluxTarget,
                                                    tmp_path: Path) -> None:
    data = config_data(mosquitto, influxd_private, tmp_path / "spool", None)
    chain = InProcessChain(load(data)).start()
    try:
        wait_until(lambda: chain.ingest.stats.samples > 100, 15, message="first writes")
        influxd_private.service.kill()
        retries = chain.ingest.stats.retries
        time.sleep(2.0)
        wait_until(lambda: chain.ingest.stats.retries > retries, 10,
                   message="ingest to retry the failed write")
        influxd_private.service.start()
        time.sleep(1.0)
        chain.stop_gateway(30)
        produced = chain.produced_by_stream()
        wait_until(lambda: chain.ingest.stats.samples >= sum(produced.values()), 40,
                   interval=0.1, message="ingest to catch up")
    finally:
        chain.close()
    check_all_stored(influxd_private, produced, "influxd SIGKILL")


def test_ingest_sigkill_and_restart_loses_nothing(mosquitto: MosquittoService,
                                                  influxdb: InfluxTarget,
                                                  tmp_path: Path) -> None:
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None)
    config = write_config(tmp_path / "medgw.yaml", data)
    ingest = MedgwProcess("ingest", config, tmp_path / "ingest.log").start()
    loaded = load(data)
    from gateway.edge.daemon import Gateway, GatewayThread

    gateway = Gateway(loaded)
    runner = GatewayThread(gateway)
    stopped = False
    try:
        wait_until(lambda: "subscribed" in ingest.log_tail(), 20, interval=0.1,
                   message="ingest subprocess to subscribe")
        runner.start()
        gateway.publisher.wait_connected(15)
        counts = [stream_count(influxdb)]
        wait_until(lambda: stream_count(influxdb) > 200, 20, interval=0.2,
                   message="first points from the ingest subprocess")
        ingest.kill()  # unacknowledged messages stay in its broker session
        time.sleep(1.5)
        counts.append(stream_count(influxdb))
        ingest.start()
        wait_until(lambda: ingest.log_tail().count("subscribed to") == 2, 20, interval=0.1,
                   message="the restarted ingest to subscribe")
        time.sleep(1.0)
        runner.stop(30)  # drains: waits for the restarted worker's confirmations
        stopped = True
        produced = {r.stream.stream: r.write_seq - r.start_seq for r in gateway.store.rings()}
        total = sum(produced.values())
        wait_until(lambda: stream_count(influxdb) >= total, 40, interval=0.2,
                   message=f"{total} points in InfluxDB")
        time.sleep(0.5)
    finally:
        if not stopped:
            runner.stop(10)
        ingest.terminate()
        ingest.close()
    assert counts[1] < total  # the kill happened mid-run
    check_all_stored(influxdb, produced, "ingest SIGKILL")


def stream_count(influx: InfluxTarget) -> int:
    """Points of every fault-test stream in InfluxDB."""
    return sum(influx.count(str(s["measurement"]), where=f"\"stream\"='{s['name']}'")
               for s in STREAMS)
