"""``medgw demo``: broker, InfluxDB, sources, gateway and ingest on one box, with a live table."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
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


AGV_VERSIONS = ("2.0.0", "3.0.0", "2.1.0", "3.0.0")  # one fleet, VDA 5050 2.x and 3.0
AGV_RATE_HZ = 5.0
RMF_RATE_HZ = 10.0


def _rmf_ticks(seconds: float) -> int:
    return round(seconds * RMF_RATE_HZ)


class Simulators:
    """The demo's stand-ins for hardware: a dVRK-style robot (DDS), a carrier fleet (OPC UA),
    a VDA 5050 AGV fleet (on its own MQTT broker) and an Open-RMF fleet (DDS)."""

    def __init__(self, data: dict[str, Any], fleet_port: int, carriers: int = 12,
                 arms: tuple[str, ...] = ("PSM1", "PSM2", "ECM")) -> None:
        import os

        from gateway.ops.services import free_port
        from simulators.surgical_robot import pick_domain_id

        self.domain = pick_domain_id()
        self.rmf_domain = self.domain % 200 + 1  # its own domain, beside the robot's
        # the demo's DDS stays on this machine, rclpy/Fast DDS included (the ros2 driver picks
        # rclpy when it imports): Fast DDS otherwise announces only non-loopback addresses
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.opcua_port = free_port()
        self.fleet_port = fleet_port
        self.carriers = carriers
        self.arms = arms
        for device in data.get("devices", []):
            self._fill_in(device)
        self._robot: Any = None
        self._agv: Any = None
        self._rmf: Any = None
        self._carrier_sim: Any = None
        self._carrier_stop: asyncio.Event | None = None
        self._carrier_loop: asyncio.AbstractEventLoop | None = None
        self._carrier_ready = threading.Event()
        self._carrier_error: BaseException | None = None
        self._carrier_thread = threading.Thread(target=self._run_carriers, daemon=True,
                                                name="demo-carrier-sim")
        self._stop = threading.Event()
        self._incidents = threading.Thread(target=self._run_incidents, daemon=True,
                                           name="demo-incidents")

    def _fill_in(self, device: dict[str, Any]) -> None:
        """Put what is only known at run time into one device's options."""
        options = device.setdefault("options", {})
        driver = device.get("driver")
        if driver == "ros2":
            rmf = any(str(t.get("type", "")).startswith("rmf_")
                      for t in options.get("topics", []) if isinstance(t, dict))
            options["domain_id"] = self.rmf_domain if rmf else self.domain
        elif driver == "opcua":
            options["endpoint"] = f"opc.tcp://127.0.0.1:{self.opcua_port}/medgw/carriers"
        elif driver == "vda5050":
            options.setdefault("broker", {}).update({"host": "127.0.0.1",
                                                     "port": self.fleet_port})

    def _run_carriers(self) -> None:
        from simulators.transport_carrier.server import CarrierSim, SimConfig

        async def main() -> None:
            self._carrier_loop = asyncio.get_running_loop()
            self._carrier_stop = asyncio.Event()
            config = SimConfig(port=self.opcua_port, carriers=self.carriers, rate_hz=10.0,
                               security=("None",), warmup_s=5.0)
            async with CarrierSim(config) as sim:
                self._carrier_sim = sim
                self._carrier_ready.set()
                await self._carrier_stop.wait()

        try:
            asyncio.run(main())
        except BaseException as err:  # reported by start(); the thread must not die silently
            self._carrier_error = err
            self._carrier_ready.set()

    def _on_carriers(self, action: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """Run one of the carrier simulator's coroutines on its loop and wait for it."""
        assert self._carrier_loop is not None
        asyncio.run_coroutine_threadsafe(action(self._carrier_sim),
                                         self._carrier_loop).result(10)

    def script(self) -> list[tuple[float, str, Callable[[], None] | None]]:
        """The incidents, seconds after ``go``, so the event lanes have something to show."""
        agv = self._agv
        return [
            (2.0, "agv-01 (VDA 5050) loses 3 state messages at the source",
             lambda: agv.drop_states("agv-01", 3)),
            (2.5, "agv-02 (VDA 5050 3.0) reports a FATAL batteryFault",
             lambda: agv.error("agv-02", "batteryFault", "FATAL", "cell 3 over temperature")),
            (3.0, "a payload leaves 2-8 °C on carrier-03",
             lambda: self._on_carriers(lambda s: s.temperature_excursion("carrier-03"))),
            (3.0, "the Open-RMF fleet adapter loses 2 FleetStates at the source", None),
            (4.0, "a door opens in transit on carrier-07",
             lambda: self._on_carriers(lambda s: s.open_door_in_transit("carrier-07"))),
            (4.5, "agv-03 (VDA 5050 2.1) e-stop pressed", lambda: agv.estop("agv-03", "MANUAL")),
            (5.0, "Open-RMF tug2 in EMERGENCY", None),
            (6.0, "PSM2 faults", lambda: self._robot.fault("PSM2", "instrument not recognized")),
            (7.0, "Open-RMF tug2 back to normal", None),
            (8.0, "Open-RMF tug3 reports an ADAPTER_ERROR", None),
            (9.0, "agv-02's error cleared, agv-03's e-stop released", self._agv_recover),
        ]

    def _agv_recover(self) -> None:
        self._agv.clear_errors("agv-02")
        self._agv.estop("agv-03", "NONE")

    def _rmf_config(self) -> Any:
        """The RMF fleet with its faults at the script's times (``None`` incidents above)."""
        from simulators.rmf_fleet import RmfSimConfig
        from simulators.rmf_fleet.fleet import MODE_ADAPTER_ERROR, MODE_EMERGENCY, Fault

        t = _rmf_ticks
        return RmfSimConfig(
            domain_id=self.rmf_domain, rate_hz=RMF_RATE_HZ, ticks=None,
            drop_ticks=[t(3.0), t(3.0) + 1],
            faults=[Fault(robot="tug2", mode=MODE_EMERGENCY, start=t(5.0), end=t(7.0)),
                    Fault(robot="tug3", mode=MODE_ADAPTER_ERROR, start=t(8.0), end=t(9.0))])

    def _run_incidents(self) -> None:
        start = time.monotonic()
        for at, what, action in self.script():
            if self._stop.wait(max(0.0, start + at - time.monotonic())):
                return  # the demo is over before this incident
            console.print(f"[yellow]incident:[/yellow] {what}")
            try:
                if action is not None:
                    action()
            except Exception as err:  # the demo goes on; the failure is shown
                console.print(f"[red]incident failed:[/red] {what}: {err}")

    def start(self) -> None:
        """Start the simulators (servers first: the drivers connect to them)."""
        from simulators.agv import AgvFleet, FleetConfig
        from simulators.rmf_fleet import RmfSimulator
        from simulators.surgical_robot import QosOptions, RobotSimulator
        from simulators.surgical_robot import SimConfig as RobotConfig

        self._carrier_thread.start()
        self._carrier_ready.wait(30)
        if self._carrier_error is not None:
            raise ServiceError(f"carrier simulator failed: {self._carrier_error}")
        self._robot = RobotSimulator(RobotConfig(arms=list(self.arms), rate_hz=100.0,
                                                 domain_id=self.domain,
                                                 qos=QosOptions(depth=100))).start()
        self._agv = AgvFleet(FleetConfig(port=self.fleet_port, vehicles=len(AGV_VERSIONS),
                                         rate_hz=AGV_RATE_HZ, versions=AGV_VERSIONS))
        try:
            self._agv.start()
        except ConnectionError as err:
            raise ServiceError(f"AGV simulator: {err}") from err
        self._agv.run()
        self._rmf = RmfSimulator(self._rmf_config()).open()

    def go(self, gateway: Gateway, timeout: float = 15.0) -> None:
        """Once the gateway runs: wait for its devices, start the RMF fleet and the script."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
                d.ctx.state.connected for d in gateway.devices):
            time.sleep(0.1)
        for device in gateway.devices:
            if not device.ctx.state.connected:
                console.print(f"[red]device {device.name} not connected after {timeout:.0f} s"
                              f"[/red]: {device.last_error or 'no error reported'}")
        if not self._rmf.wait_for_subscribers(max(1.0, deadline - time.monotonic())):
            console.print("[red]the ros2 driver did not subscribe every Open-RMF topic[/red]")
        self._rmf.start()
        self._incidents.start()

    def stop(self) -> None:
        """Stop every simulator that started (the AGVs say OFFLINE)."""
        self._stop.set()
        if self._incidents.is_alive():
            self._incidents.join(15)
        sims, self._rmf, self._agv, self._robot = (self._rmf, self._agv, self._robot), None, \
            None, None  # stop each once
        for sim in sims:
            if sim is not None:
                sim.stop()
        loop, self._carrier_loop = self._carrier_loop, None
        if loop is not None and self._carrier_stop is not None:
            loop.call_soon_threadsafe(self._carrier_stop.set)
        if self._carrier_thread.is_alive():
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
    table = Table(title=f"medgw demo — {elapsed:5.1f} / {seconds:.0f} s", expand=False,
                  caption="event streams appear with their first event; the end summary "
                          "lists every stream")
    for column in ("device", "stream", "kind", "rate /s", "produced", "published", "ingested"):
        table.add_column(column, justify="right" if column[0] in "rpi" else "left")
    for ring in sorted(gateway.store.rings(), key=lambda r: r.stream.key):
        key = ring.stream.key
        if ring.stream.is_event and ring.write_seq == ring.start_seq:
            continue  # the four sources have more streams than a terminal has rows
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
    fleet_broker = MosquittoService(work / "fleet-mosquitto")  # the AGVs' own broker
    simulators = Simulators(data, fleet_broker.port)
    with MosquittoService(work / "mosquitto") as broker, fleet_broker, \
            InfluxdService(work / "influxd") as influx:
        console.print(f"mosquitto on 127.0.0.1:{broker.port} (medgw), 127.0.0.1:"
                      f"{fleet_broker.port} (the AGV fleet's); influxd on {influx.url}")
        data.setdefault("mqtt", {}).update({"host": "127.0.0.1", "port": broker.port})
        data.setdefault("influxdb", {})["url"] = influx.url
        loaded = parse_config(data, name)
        influx.create_database(loaded.config.influxdb.database)
        _render_grafana(loaded, work / "grafana")
        try:
            simulators.start()
            _print_sources(simulators)
            ok = _run_chain(loaded, simulators, influx, seconds)
        finally:
            simulators.stop()
        console.print(
            f"the data stays in {work}/influxd; to look at it later: influxd run -config "
            f"{influx.config_path}, then curl -G {influx.url}/query --data-urlencode "
            f"db={loaded.config.influxdb.database} --data-urlencode 'q=SHOW MEASUREMENTS'")
    verdict = "[green]every sample the gateway received is in InfluxDB[/green]" if ok else \
        "[red]samples are missing: see the table above[/red]"
    console.print(verdict)
    return ok


def _print_sources(sims: Simulators) -> None:
    console.print(
        f"simulators: robot arms {', '.join(sims.arms)} on DDS domain {sims.domain}; "
        f"{sims.carriers} carriers on opc.tcp://127.0.0.1:{sims.opcua_port}; "
        f"{len(AGV_VERSIONS)} VDA 5050 AGVs ({', '.join(AGV_VERSIONS)}) at {AGV_RATE_HZ:g} Hz "
        f"on mqtt://127.0.0.1:{sims.fleet_port}; an Open-RMF fleet (3 tugs, 2 doors, a lift) "
        f"at {RMF_RATE_HZ:g} Hz on DDS domain {sims.rmf_domain}")


def _run_chain(loaded: LoadedConfig, simulators: Simulators, influx: InfluxdService,
               seconds: float) -> bool:
    """Ingest, gateway and status page for ``seconds``; the summary's verdict."""
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
        simulators.go(gateway)
        _watch(gateway, ingest, seconds)
    finally:
        all_acked = runner.stop()  # drivers first, so they do not see the devices vanish
        simulators.stop()
        _wait_ingested(gateway, ingest, 30)
        ingest.stop()
        health.stop()
    return _summary(gateway, influx, loaded) and all_acked


def _render_grafana(loaded: LoadedConfig, out: Path) -> None:
    from gateway.ops.grafana.render import render

    render(loaded, out)
    console.print(f"Grafana dashboards and provisioning for this config: {out} "
                  "(point a Grafana's provisioning at it, see configs/grafana/README.md)")
