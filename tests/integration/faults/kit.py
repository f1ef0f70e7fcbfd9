"""Shared pieces of the fault tests: configs, medgw subprocesses, InfluxDB accounting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config import LoadedConfig, parse_config
from gateway.ops.services import MosquittoService
from tests.chain import Chain
from tests.helpers import InfluxTarget, wait_until

MEDGW = [str(Path(sys.executable).with_name("medgw"))]  # the installed console script
STREAMS = [
    {"name": "joints", "fields": 3, "rate_hz": 300, "waveform": "sine",
     "measurement": "joint_state"},
    {"name": "state", "fields": 1, "rate_hz": 50, "waveform": "square", "kind": "event",
     "measurement": "robot_event"},
]
DEVICE = "gen"


def device(total: int | None) -> dict[str, Any]:
    """The synthetic device every fault test runs (``total`` samples per stream, or forever)."""
    options: dict[str, Any] = {"streams": STREAMS, "tick_ms": 10}
    if total is not None:
        options["total_samples"] = total
    return {"name": DEVICE, "driver": "synthetic", "options": options}


def config_data(broker: MosquittoService, influx: InfluxTarget, spool_dir: Path,
                total: int | None, **sections: Any) -> dict[str, Any]:
    """A complete gateway config (as a dict) for the fault tests."""
    data: dict[str, Any] = {
        "site": "fault-site",
        "gateway": "gw-fault",
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5},
        "publisher": {"max_batch_samples": 200, "max_latency_ms": 100},
        "spool": {"dir": str(spool_dir), "flush_interval_ms": 200, "ingest_wait_s": 20,
                  "confirm_timeout_s": 3},
        "influxdb": {"backend": "v1", "url": influx.url, "database": influx.database,
                     "flush_ms": 100, "batch_lines": 5000},
        "ingest": {"gap_grace_s": 5.0},  # above confirm_timeout_s: resends come first
        "health": {"enabled": False},
        "devices": [device(total)],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def load(data: dict[str, Any]) -> LoadedConfig:
    """Validate a config dict."""
    return parse_config(data, "<fault test>")


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a config dict as YAML and return its path."""
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class MedgwProcess:
    """``medgw <command> -c FILE`` as a child process (killed at close)."""

    def __init__(self, command: str, config: Path, log_path: Path) -> None:
        self.argv = [*MEDGW, command, "-c", str(config)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MedgwProcess:
        """Start the child (logs appended to ``log_path``)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=Path(__file__).resolve().parents[3],
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def kill(self) -> int:
        """SIGKILL the child; return the kill time in ns."""
        assert self.proc is not None
        when = time.time_ns()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return when

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful stop) and wait; return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def close(self) -> None:
        """Kill the child if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(10)

    def log_tail(self) -> str:
        """Return the end of the child's log."""
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


@dataclass
class StreamFigures:
    """What InfluxDB holds for one stream."""

    stream: str
    points: int
    distinct: int
    seqs: list[int]
    times: list[int]

    @property
    def duplicates(self) -> int:
        """Return points sharing a sequence number with another point."""
        return self.points - self.distinct


def figures(influx: InfluxTarget, stream: dict[str, Any]) -> StreamFigures:
    """Read every point of one synthetic stream (seq and time) from InfluxDB."""
    rows = influx.query(f'SELECT "seq" FROM "{stream["measurement"]}" WHERE '
                        f"\"device\"='{DEVICE}' AND \"stream\"='{stream['name']}' ORDER BY time")
    seqs = [int(row["seq"]) for row in rows]
    counts = Counter(seqs)
    return StreamFigures(str(stream["name"]), len(seqs), len(counts), seqs,
                         [int(row["time"]) for row in rows])


def gaps(influx: InfluxTarget) -> list[dict[str, Any]]:
    """Return the recorded medgw_gap points."""
    return influx.query('SELECT "from_seq", "to_seq", "missing", "stream" FROM "medgw_gap"')


def report(fault: str, sent: int, stored: int, duplicates: int, window: str) -> None:
    """Print one line of per-fault figures for the closing note."""
    print(f"\nFAULT {fault}: sent={sent} in_influxdb={stored} duplicates={duplicates} "
          f"loss_window={window}")


class InProcessChain(Chain):
    """tests/chain.Chain, stopped without assuming exact broker acks (faults in between)."""

    def __init__(self, loaded: LoadedConfig) -> None:
        super().__init__(loaded)
        self.gateway_stopped = False

    def stop_gateway(self, timeout: float = 30.0) -> bool:
        """Stop the drivers and drain the publisher; True if the broker acked everything."""
        self.gateway_stopped = True
        return self.runner.stop(timeout)

    def produced_by_stream(self) -> dict[str, int]:
        """Samples appended per stream name."""
        return {r.stream.stream: r.write_seq - r.start_seq for r in self.gateway.store.rings()}

    def start(self) -> InProcessChain:
        """Start the ingest, then the gateway."""
        self.__enter__()
        return self

    def finish(self, expected_samples: int, timeout: float = 40.0) -> bool:
        """Stop the gateway (drain) and wait until the ingest wrote ``expected_samples``."""
        all_acked = self.stop_gateway(timeout)
        wait_until(lambda: self.ingest.stats.samples >= expected_samples, timeout,
                   interval=0.1, message=f"ingest to write {expected_samples} samples")
        return all_acked

    def close(self) -> None:
        """Stop whatever still runs."""
        try:
            if not self.gateway_stopped:
                self.stop_gateway(10)
        finally:
            self.ingest.stop()
