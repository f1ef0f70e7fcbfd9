"""Broker killed with SIGKILL mid-run and restarted on the same port: nothing lost, no duplicate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.ops.services import MosquittoService
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import (
    STREAMS,
    InProcessChain,
    config_data,
    figures,
    gaps,
    load,
    report,
)

pytestmark = pytest.mark.integration


def test_broker_sigkill_and_restart_loses_nothing(mosquitto: MosquittoService,
                                                  influxdb: InfluxTarget,
                                                  tmp_path: Path) -> None:
    data = config_data(mosquitto, influxdb, tmp_path / "spool", None)
    chain = InProcessChain(load(data)).start()
    try:
        wait_until(lambda: chain.produced() > 300, 10, message="first samples")
        wait_until(lambda: chain.ingest.stats.samples > 0, 10, message="first writes")
        mosquitto.kill()
        time.sleep(1.5)  # samples keep arriving into the spool while the broker is down
        assert not chain.gateway.publisher.connected.is_set()
        mosquitto.start()
        wait_until(lambda: chain.gateway.publisher.connected.is_set(), 40,
                   message="publisher to reconnect")
        time.sleep(1.0)
        chain.stop_gateway(30)
        produced = chain.produced_by_stream()
        expected = sum(produced.values())
        wait_until(lambda: chain.ingest.stats.samples >= expected, 40, interval=0.1,
                   message=f"ingest to write {expected} samples")
        assert chain.gateway.publisher.broker_state_losses == 1
    finally:
        chain.close()
    for stream in STREAMS:
        fig = figures(influxdb, stream)
        sent = produced[str(stream["name"])]
        report(f"broker SIGKILL ({stream['name']})", sent, fig.points, fig.duplicates, "0")
        assert fig.duplicates == 0
        assert fig.seqs == list(range(sent))  # every sample, once, in order
    assert gaps(influxdb) == []
    assert chain.ingest.stats.gaps == 0
