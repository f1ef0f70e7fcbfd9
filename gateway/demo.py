"""``medgw demo``: broker, InfluxDB, sources, gateway and ingest on one box, with a live table."""

from __future__ import annotations

import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.config import LoadedConfig, parse_config
from gateway.daemon import Gateway, GatewayThread
from gateway.health import HealthServer
from gateway.ingest import Ingest
from gateway.model import StreamSpec
from gateway.services import InfluxdService, MosquittoService

console = Console(width=max(120, shutil.get_terminal_size().columns))


def demo_config_data(config: Path | None) -> tuple[dict[str, Any], str]:
    """Return the demo config as data, and its name for error messages."""
    if config is not None:
        return yaml.safe_load(config.read_text(encoding="utf-8")), str(config)
    text = resources.files("gateway").joinpath("demo.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text), "<embedded demo config gateway/demo.yaml>"


def count_in_influx(influx: InfluxdService, database: str, spec: StreamSpec) -> int:
    """Return how many samples of a stream InfluxDB holds (per channel: the smallest count)."""
    group = f' GROUP BY "{spec.channel_tag}"' if spec.channel_tag else ""
    rows = influx.query(
        f'SELECT count("seq") FROM "{spec.measurement}" WHERE "site"=\'{spec.site}\' '
        f'AND "device"=\'{spec.device}\' AND "stream"=\'{spec.stream}\'{group}', database)
    counts = [int(row.get("count") or 0) for row in rows]
    return min(counts) if counts else 0


def _live_table(gateway: Gateway, ingest: Ingest, rates: dict[str, float], elapsed: float,
                seconds: float) -> Table:
    table = Table(title=f"medgw demo — {elapsed:5.1f} / {seconds:.0f} s", expand=False)
    for column in ("device", "stream", "kind", "rate /s", "produced", "published", "ingested"):
        table.add_column(column, justify="right" if column[0] in "rpi" else "left")
    for ring in gateway.store.rings():
        key = ring.stream.key
        counters = gateway.publisher.counters.get(key)
        table.add_row(ring.stream.device, ring.stream.stream, ring.stream.kind.value,
                      f"{rates.get(key, 0.0):8.1f}", str(ring.write_seq),
                      str(counters.acked if counters else 0),
                      str(ingest.stats.by_stream.get(key, 0)))
    return table


def _watch(gateway: Gateway, ingest: Ingest, seconds: float) -> None:
    start = time.monotonic()
    last: dict[str, tuple[float, int]] = {}
    rates: dict[str, float] = {}
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while (elapsed := time.monotonic() - start) < seconds:
            now = time.monotonic()
            for ring in gateway.store.rings():
                t0, n0 = last.get(ring.stream.key, (start, 0))
                if now - t0 >= 1.0:
                    rates[ring.stream.key] = (ring.write_seq - n0) / (now - t0)
                    last[ring.stream.key] = (now, ring.write_seq)
            live.update(_live_table(gateway, ingest, rates, elapsed, seconds))
            time.sleep(0.25)


def _wait_ingested(gateway: Gateway, ingest: Ingest, timeout: float) -> None:
    target = sum(c.acked for c in gateway.publisher.counters.values())
    deadline = time.monotonic() + timeout
    while ingest.stats.samples < target and time.monotonic() < deadline:
        time.sleep(0.1)


def _summary(gateway: Gateway, influx: InfluxdService, loaded: LoadedConfig) -> bool:
    database = loaded.config.influxdb.database
    table = Table(title="end of demo: samples per stream")
    for column in ("stream", "produced", "published", "in InfluxDB", "lost"):
        table.add_column(column, justify="left" if column == "stream" else "right")
    ok = True
    for ring in gateway.store.rings():
        produced = ring.write_seq
        counters = gateway.publisher.counters.get(ring.stream.key)
        published = counters.acked if counters else 0
        stored = count_in_influx(influx, database, ring.stream)
        ok = ok and produced == published == stored
        table.add_row(ring.stream.key, str(produced), str(published), str(stored),
                      str(produced - stored))
    console.print(table)
    return ok


def run_demo(seconds: float, workdir: Path | None, config: Path | None) -> bool:
    """Run the whole chain for ``seconds``; True when InfluxDB holds every produced sample."""
    work = Path(workdir or tempfile.mkdtemp(prefix="medgw-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    data, name = demo_config_data(config)
    console.print(f"[bold]medgw demo[/bold]: servers' data and logs in {work}")
    with MosquittoService(work / "mosquitto") as broker, InfluxdService(work / "influxd") as influx:
        console.print(f"mosquitto on 127.0.0.1:{broker.port}, influxd on {influx.url}")
        data.setdefault("mqtt", {}).update({"host": "127.0.0.1", "port": broker.port})
        data.setdefault("influxdb", {})["url"] = influx.url
        loaded = parse_config(data, name)
        influx.create_database(loaded.config.influxdb.database)
        ingest = Ingest(loaded)
        ingest.start()
        ingest.wait_subscribed(15)
        gateway = Gateway(loaded)
        health = HealthServer("127.0.0.1", loaded.config.health.port, gateway.metrics.registry,
                              gateway.health_report)
        health.start()
        console.print(f"health: http://127.0.0.1:{health.port}/health   "
                      f"metrics: http://127.0.0.1:{health.port}/metrics")
        runner = GatewayThread(gateway)
        runner.start()
        gateway.publisher.wait_connected(15)
        try:
            _watch(gateway, ingest, seconds)
        finally:
            all_acked = runner.stop()
            _wait_ingested(gateway, ingest, 30)
            ingest.stop()
            health.stop()
        ok = _summary(gateway, influx, loaded) and all_acked
        console.print(
            f"the data stays in {work}/influxd; to look at it later: influxd run -config "
            f"{influx.config_path}, then curl -G {influx.url}/query --data-urlencode "
            f"db={loaded.config.influxdb.database} --data-urlencode 'q=SHOW MEASUREMENTS'")
    verdict = "[green]every produced sample is in InfluxDB[/green]" if ok else \
        "[red]samples are missing: see the table above[/red]"
    console.print(verdict)
    return ok
