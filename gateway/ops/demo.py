"""``medgw demo``: broker, InfluxDB, sources, gateway and ingest on one box, with a live table."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.config import LoadedConfig, parse_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.errors import ServiceError
from gateway.model import StreamSpec
from gateway.ops.services import InfluxdService, MosquittoService
from gateway.server.ingest import Ingest

console = Console(width=max(120, shutil.get_terminal_size().columns))


def demo_config_data(config: Path | None) -> tuple[dict[str, Any], str]:
    """Return the demo config as data, and its name for error messages."""
    if config is not None:
        return yaml.safe_load(config.read_text(encoding="utf-8")), str(config)
    text = resources.files(__package__).joinpath("demo.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text), "<embedded demo config gateway/demo.yaml>"


class Simulators:
    """The demo's stand-ins for hardware: a dVRK-style robot (DDS) and a carrier fleet (OPC UA)."""

    def __init__(self, data: dict[str, Any], carriers: int = 12, arms: tuple[str, ...] = (
            "PSM1", "PSM2", "ECM")) -> None:
        import os

        from gateway.ops.services import free_port
        from simulators.surgical_robot import pick_domain_id

        self.domain = pick_domain_id()
        # the demo's DDS stays on this machine, rclpy/Fast DDS included (the ros2 driver picks
        # rclpy when it imports): Fast DDS otherwise announces only non-loopback addresses
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.opcua_port = free_port()
        self.carriers = carriers
        self.arms = arms
        for device in data.get("devices", []):
            options = device.setdefault("options", {})
            if device.get("driver") == "ros2":
                options["domain_id"] = self.domain
            elif device.get("driver") == "opcua":
                options["endpoint"] = f"opc.tcp://127.0.0.1:{self.opcua_port}/medgw/carriers"
        self._robot: Any = None
        self._carrier_stop: asyncio.Event | None = None
        self._carrier_loop: asyncio.AbstractEventLoop | None = None
        self._carrier_ready = threading.Event()
        self._carrier_error: BaseException | None = None
        self._carrier_thread = threading.Thread(target=self._run_carriers, daemon=True,
                                                name="demo-carrier-sim")

    def _run_carriers(self) -> None:
        from simulators.transport_carrier.server import CarrierSim, SimConfig

        async def main() -> None:
            self._carrier_loop = asyncio.get_running_loop()
            self._carrier_stop = asyncio.Event()
            config = SimConfig(port=self.opcua_port, carriers=self.carriers, rate_hz=10.0,
                               security=("None",), warmup_s=5.0)
            async with CarrierSim(config) as sim:
                self._carrier_ready.set()
                await self._scripted_faults(sim)
                await self._carrier_stop.wait()

        try:
            asyncio.run(main())
        except BaseException as err:  # reported by start(); the thread must not die silently
            self._carrier_error = err
            self._carrier_ready.set()

    async def _scripted_faults(self, sim: Any) -> None:
        """A few incidents so the event lane and the alarms have something to show."""
        assert self._carrier_stop is not None
        script = ((3.0, "a payload leaves 2-8 °C on carrier-03",
                   lambda: sim.temperature_excursion("carrier-03")),
                  (2.0, "a door opens in transit on carrier-07",
                   lambda: sim.open_door_in_transit("carrier-07")),
                  (2.0, "PSM2 faults", None))
        for delay, what, action in script:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._carrier_stop.wait(), delay)
                return  # the demo is over before this incident
            console.print(f"[yellow]incident:[/yellow] {what}")
            if action is not None:
                await action()
            elif self._robot is not None:
                self._robot.fault("PSM2", "instrument not recognized")

    def start(self) -> None:
        """Start both simulators (the carrier server first: the driver connects to it)."""
        from simulators.surgical_robot import QosOptions, RobotSimulator
        from simulators.surgical_robot import SimConfig as RobotConfig

        self._carrier_thread.start()
        self._carrier_ready.wait(30)
        if self._carrier_error is not None:
            raise ServiceError(f"carrier simulator failed: {self._carrier_error}")
        self._robot = RobotSimulator(RobotConfig(arms=list(self.arms), rate_hz=100.0,
                                                 domain_id=self.domain,
                                                 qos=QosOptions(depth=100))).start()

    def stop(self) -> None:
        """Stop both simulators."""
        if self._robot is not None:
            self._robot.stop()
        if self._carrier_loop is not None and self._carrier_stop is not None:
            self._carrier_loop.call_soon_threadsafe(self._carrier_stop.set)
        self._carrier_thread.join(10)


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
    for ring in sorted(gateway.store.rings(), key=lambda r: r.stream.key):
        key = ring.stream.key
        counters = gateway.publisher.counters.get(key)
        table.add_row(ring.stream.device, ring.stream.stream, ring.stream.kind.value,
                      f"{rates.get(key, 0.0):8.1f}", str(ring.write_seq - ring.start_seq),
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
    for ring in sorted(gateway.store.rings(), key=lambda r: r.stream.key):
        produced = ring.write_seq - ring.start_seq
        counters = gateway.publisher.counters.get(ring.stream.key)
        published = counters.acked if counters else 0
        stored = count_in_influx(influx, database, ring.stream)
        ok = ok and produced == published == stored
        table.add_row(ring.stream.key, str(produced), str(published), str(stored),
                      str(produced - stored))
    console.print(table)
    return ok


def run_demo(seconds: float, workdir: Path | None, config: Path | None) -> bool:
    """Run the whole chain for ``seconds``; True when InfluxDB holds every received sample."""
    work = Path(workdir or tempfile.mkdtemp(prefix="medgw-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    data, name = demo_config_data(config)
    console.print(f"[bold]medgw demo[/bold]: servers' data and logs in {work}")
    simulators = Simulators(data)
    with MosquittoService(work / "mosquitto") as broker, InfluxdService(work / "influxd") as influx:
        console.print(f"mosquitto on 127.0.0.1:{broker.port}, influxd on {influx.url}")
        data.setdefault("mqtt", {}).update({"host": "127.0.0.1", "port": broker.port})
        data.setdefault("influxdb", {})["url"] = influx.url
        loaded = parse_config(data, name)
        influx.create_database(loaded.config.influxdb.database)
        _render_grafana(loaded, work / "grafana")
        simulators.start()
        console.print(f"simulators: robot arms {', '.join(simulators.arms)} on DDS domain "
                      f"{simulators.domain}; {simulators.carriers} carriers on "
                      f"opc.tcp://127.0.0.1:{simulators.opcua_port}")
        ingest = Ingest(loaded)
        ingest.start()
        ingest.wait_subscribed(15)
        gateway = Gateway(loaded)
        health = HealthServer("127.0.0.1", loaded.config.health.port, gateway.metrics.registry,
                              gateway.health_report, store=gateway.store)
        health.start()
        console.print(f"status page: http://127.0.0.1:{health.port}/   health: /health   "
                      "metrics: /metrics")
        runner = GatewayThread(gateway)
        runner.start()
        try:
            gateway.publisher.wait_connected(15)
            _watch(gateway, ingest, seconds)
        finally:
            all_acked = runner.stop()  # drivers first, so they do not see the devices vanish
            simulators.stop()
            _wait_ingested(gateway, ingest, 30)
            ingest.stop()
            health.stop()
        ok = _summary(gateway, influx, loaded) and all_acked
        console.print(
            f"the data stays in {work}/influxd; to look at it later: influxd run -config "
            f"{influx.config_path}, then curl -G {influx.url}/query --data-urlencode "
            f"db={loaded.config.influxdb.database} --data-urlencode 'q=SHOW MEASUREMENTS'")
    verdict = "[green]every sample the gateway received is in InfluxDB[/green]" if ok else \
        "[red]samples are missing: see the table above[/red]"
    console.print(verdict)
    return ok


def _render_grafana(loaded: LoadedConfig, out: Path) -> None:
    from gateway.ops.grafana.render import render

    render(loaded, out)
    console.print(f"Grafana dashboards and provisioning for this config: {out} "
                  "(point a Grafana's provisioning at it, see configs/grafana/README.md)")
