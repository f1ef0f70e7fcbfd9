"""Two ingest workers share one subscription; one is SIGKILLed mid-run: nothing is lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from gateway.edge.daemon import Gateway, GatewayThread
from gateway.ops.services import MosquittoService
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import (
    STREAMS,
    MedgwProcess,
    config_data,
    figures,
    gaps,
    load,
    report,
    write_config,
)

pytestmark = pytest.mark.integration
GRACE_S = 6.0  # above the gateways' confirm timeout (3 s): resent messages come first


def count_points(influx: InfluxTarget) -> int:
    """Points of every fault-test stream in InfluxDB."""
    return sum(influx.count(str(s["measurement"]), where=f"\"stream\"='{s['name']}'")
               for s in STREAMS)


def test_two_workers_split_the_load_and_a_killed_one_loses_nothing(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path) -> None:
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None,
                       ingest={"gap_grace_s": GRACE_S})
    workers = []
    for name in ("a", "b"):
        worker_data = {**data, "ingest": {**data["ingest"], "client_id": f"ingest-{name}"}}
        config = write_config(tmp_path / f"ingest-{name}.yaml", worker_data)
        workers.append(MedgwProcess("ingest", config, tmp_path / f"ingest-{name}.log"))
    gateway = Gateway(load(data))
    runner = GatewayThread(gateway)
    running = False
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_until(lambda w=worker: "subscribed" in w.log_tail(), 20, interval=0.1,  # type: ignore[misc]
                       message="ingest worker to subscribe")
        runner.start()
        running = True
        gateway.publisher.wait_connected(15)
        wait_until(lambda: count_points(influxdb) > 300, 20, interval=0.2,
                   message="first points")
        # Freeze worker a first so it certainly holds unacknowledged messages when it dies
        # (killed between two writes it might hold none); the gateway resends them to b.
        assert workers[0].proc is not None
        workers[0].proc.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        workers[0].kill()
        time.sleep(4.0)
        resent = wait_until(lambda: gateway.publisher.spool.resent, 10, interval=0.1,
                            message="the gateway to resend what the dead worker held")
        runner.stop(30)
        running = False
        produced = {r.stream.stream: r.write_seq - r.start_seq for r in gateway.store.rings()}
        total = sum(produced.values())
        wait_until(lambda: count_points(influxdb) >= total, 40, interval=0.2,
                   message=f"{total} points")
        time.sleep(GRACE_S + 1.5)  # both workers settle their holes: no false gaps
        assert workers[1].terminate(20) == 0
    finally:
        if running:
            runner.stop(10)
        for worker in workers:
            worker.close()
    logs = [w.log_tail() for w in workers]
    for stream in STREAMS:
        fig = figures(influxdb, stream)
        sent = produced[str(stream["name"])]
        report(f"scale-out, 1 of 2 ingest workers SIGKILL ({stream['name']})", sent,
               fig.points, fig.duplicates, "0")
        assert fig.duplicates == 0
        assert fig.seqs == list(range(sent))
    assert gaps(influxdb) == []  # holes seen by one worker were filled by the other
    # worker a had its share when it died (the gateway had to resend what it held), and b
    # wrote the rest: it reports its count at exit
    assert resent > 0
    assert "ingest:" in logs[1], logs[1]
