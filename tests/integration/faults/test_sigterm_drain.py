"""`medgw run` stopped with SIGTERM while the broker is down: the ring drains into the spool,
the process exits, and the next start delivers every sample (nothing lost, nothing twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ops.services import MosquittoService
from gateway.server.ingest import Ingest
from tests.helpers import InfluxTarget, wait_until
from tests.integration.faults.kit import (
    STREAMS,
    MedgwProcess,
    config_data,
    figures,
    load,
    report,
    write_config,
)

pytestmark = pytest.mark.integration
TOTAL = 250  # per stream; the synthetic source stops after that many (5 s at 50 Hz)


def test_sigterm_with_broker_down_spools_and_the_next_start_delivers(
        mosquitto: MosquittoService, influxdb: InfluxTarget, tmp_path: Path) -> None:
    data = config_data(mosquitto, influxdb, tmp_path / "spool", TOTAL)
    config = write_config(tmp_path / "medgw.yaml", data)
    mosquitto.stop()
    first = MedgwProcess("run", config, tmp_path / "gw1.log").start()
    try:
        wait_until(lambda: "driver finished" in first.log_tail(), 30, interval=0.1,
                   message="the source to produce every sample while the broker is down")
        code = first.terminate(30)
        assert code == 3, f"exit {code}: expected 3 (not everything acknowledged)\n" \
            + first.log_tail()
        assert "kept in the spool" in first.log_tail()
    finally:
        first.close()
    assert any((tmp_path / "spool").iterdir()), "the spool directory holds the records"

    mosquitto.start()
    ingest = Ingest(load(data))
    ingest.start()
    ingest.wait_subscribed(15)
    second_config = write_config(tmp_path / "medgw2.yaml", {**data, "devices": []})
    second = MedgwProcess("run", second_config, tmp_path / "gw2.log").start()
    try:
        expected = TOTAL * len(STREAMS)
        wait_until(lambda: ingest.stats.samples >= expected, 40, interval=0.1,
                   message="the spooled samples to reach InfluxDB")
        assert second.terminate(30) == 0, second.log_tail()
    finally:
        second.close()
        ingest.stop()
    for stream in STREAMS:
        found = figures(influxdb, stream)
        report(f"SIGTERM with broker down, restart ({stream['name']})", TOTAL, found.points,
               found.duplicates, "0 (spooled)")
        assert found.points == TOTAL and found.duplicates == 0
        assert found.seqs == list(range(TOTAL))
