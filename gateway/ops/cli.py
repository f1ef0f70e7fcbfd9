"""The ``medgw`` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.config import LoadedConfig, load_config
from gateway.errors import MedgwError
from gateway.logs import setup_logging

app = typer.Typer(help="medgw: read-only telemetry gateway for hospital robotics.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Work with gateway config files.", no_args_is_help=True)
sim_app = typer.Typer(help="Run a simulator alone.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(sim_app, name="sim")

console = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="gateway config file (YAML)")]
LogJson = Annotated[bool, typer.Option("--log-json", help="structured JSON log lines")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def _load(path: Path) -> LoadedConfig:
    try:
        return load_config(path)
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", markup=True, highlight=False)
        raise typer.Exit(2) from err


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="config file to validate")]) -> None:
    """Validate a config file: every key, every device's driver options, every secret."""
    loaded = _load(file)
    cfg = loaded.config
    try:
        loaded.secret(cfg.mqtt.password, "mqtt.password")
        loaded.secret(cfg.influxdb.password, "influxdb.password")
        loaded.secret(cfg.influxdb.token, "influxdb.token")
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(2) from err
    print(f"{file}: ok — site {cfg.site}, gateway {cfg.gateway}, {len(cfg.devices)} device(s): "
          + ", ".join(f"{d.name} ({d.driver})" for d in cfg.devices))


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


@app.command()
def run(config: ConfigOption, log_json: LogJson = False, verbose: Verbose = False,
        test: Annotated[bool, typer.Option("--test", help="dry run: the drivers alone for"
                        " --seconds, print streams and samples; no broker")] = False,
        seconds: Annotated[float, typer.Option(help="with --test: how long", min=0.5)] = 5.0,
        connect_timeout: Annotated[float, typer.Option(
            help="with --test: wait this long at most for the devices to connect", min=0)]
        = 20.0,
        ) -> None:
    """Run the edge daemon: drivers -> ring buffer -> MQTT, until SIGTERM/SIGINT."""
    setup_logging(log_json, verbose)
    if test:
        from gateway.ops.discover_cli import run_test

        run_test(config, seconds, samples=3, connect_timeout=connect_timeout)
    loaded = _load(config)
    if loaded.config.spool.dir is None:
        logging.getLogger("medgw").warning(
            "spool.dir is not set: the spool lives in a temporary directory and does not "
            "survive a restart; set spool.dir (e.g. /var/lib/medgw/spool) on an edge box")
    from gateway.edge.daemon import Gateway
    from gateway.edge.health import HealthServer

    async def main() -> bool:
        gateway = Gateway(loaded)
        stop = asyncio.Event()
        _install_stop(asyncio.get_running_loop(), stop)
        health = None
        if loaded.config.health.enabled:
            health = HealthServer(loaded.config.health.host, loaded.config.health.port,
                                  gateway.metrics.registry, gateway.health_report,
                                  store=gateway.store)
            health.start()
            logging.getLogger("medgw").info("health and metrics on http://%s:%d/",
                                            loaded.config.health.host, health.port)
        try:
            return await gateway.run(stop)
        finally:
            if health is not None:
                health.stop()

    try:
        all_acked = asyncio.run(main())
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from err
    raise typer.Exit(0 if all_acked else 3)


@app.command()
def ingest(config: ConfigOption, log_json: LogJson = False, verbose: Verbose = False,
           health_port: Annotated[int | None, typer.Option(
               help="serve /health and /metrics on this loopback port (overrides "
               "ingest.health_port; 0: any free port)", min=0, max=65535)] = None) -> None:
    """Run an ingest worker: MQTT shared subscription -> InfluxDB, until SIGTERM/SIGINT."""
    setup_logging(log_json, verbose)
    loaded = _load(config)
    from gateway.server.ingest import Ingest

    port = health_port if health_port is not None else loaded.config.ingest.health_port
    try:
        worker = Ingest(loaded)
        if port is not None:  # /health and /metrics
            worker.serve_status(loaded.config.health.host, port)
        worker.start()
        worker.wait_subscribed(30)
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from err
    stopped = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        _install_stop(loop, stopped)
        worker.on_failure = lambda: loop.call_soon_threadsafe(stopped.set)
        if worker.failed.is_set():
            return
        await stopped.wait()

    asyncio.run(wait())
    worker.stop()
    print(f"ingest: {worker.stats.samples} samples in {worker.stats.writes} writes, "
          f"{worker.stats.malformed} malformed")
    if worker.failure is not None:  # non-zero: systemd restarts the worker
        console.print(f"[red]error:[/red] ingest worker failed: {worker.failure}",
                      highlight=False)
        raise typer.Exit(1)


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="how long the sources run")] = 20.0,
    workdir: Annotated[Path | None, typer.Option(help="keep servers' data and logs here")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                      help="gateway config (default: the embedded demo config)")] = None,
) -> None:
    """Start mosquitto, influxd, the sources, the gateway and the ingest; show the flow."""
    setup_logging(False, False, quiet=True)
    from gateway.ops.demo import run_demo

    try:
        ok = run_demo(seconds, workdir, config)
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from err
    raise typer.Exit(0 if ok else 1)


@app.command()
def check(
    config: ConfigOption,
    timeout: Annotated[float, typer.Option(help="seconds per network check")] = 5.0,
) -> None:
    """Preflight: test the broker, InfluxDB and every device of a config; non-zero on failure."""
    from rich.table import Table

    from gateway.ops.check import FAIL, OK, run_checks

    loaded = _load(config)
    results = run_checks(loaded, timeout)
    table = Table(title=f"medgw check: {config}", show_lines=False)
    for column in ("component", "target", "status", "detail"):
        table.add_column(column)
    colors = {OK: "green", FAIL: "bold red"}
    for r in results:
        color = colors.get(r.status, "yellow")
        table.add_row(r.component, r.target, f"[{color}]{r.status}[/{color}]", r.detail)
    Console(width=max(Console().width, 120)).print(table)
    failed = [r for r in results if r.failed]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed[/red]", highlight=False)
        raise typer.Exit(1)


grafana_app = typer.Typer(help="Grafana dashboards, provisioning and alert rules.",
                          no_args_is_help=True)
app.add_typer(grafana_app, name="grafana")
PromUrl = Annotated[str, typer.Option("--prometheus-url",
                                      help="Prometheus (or VictoriaMetrics) scraping /metrics")]
LowBattery = Annotated[float, typer.Option(help="fleet alert: vehicle battery below this %")]
SourceGaps = Annotated[float, typer.Option(
    help="fleet alert: messages lost at the source per minute (10-minute average) above this")]


@grafana_app.command("render")
def grafana_render(
    config: ConfigOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    prometheus_url: PromUrl = "http://127.0.0.1:9090",
    dashboards_path: Annotated[str | None, typer.Option(
        help="dashboards directory as Grafana sees it (default: OUT/dashboards)")] = None,
    low_battery_pct: LowBattery = 20.0,
    source_gap_per_min: SourceGaps = 1.0,
) -> None:
    """Generate dashboards, datasource/provider provisioning and alert rules from a config."""
    from gateway.ops.grafana import Thresholds, render

    rendered = render(_load(config), out, prometheus_url, dashboards_path,
                      Thresholds(low_battery_pct, source_gap_per_min))
    for path in rendered.files:
        print(path)
    for note in rendered.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


@grafana_app.command("push")
def grafana_push(
    config: ConfigOption,
    url: Annotated[str, typer.Option("--url", help="Grafana base URL (required, no default)")],
    token: Annotated[str, typer.Option("--token", envvar="MEDGW_GRAFANA_TOKEN",
                                       help="service-account token (or $MEDGW_GRAFANA_TOKEN)")],
    prometheus_url: PromUrl = "http://127.0.0.1:9090",
    low_battery_pct: LowBattery = 20.0,
    source_gap_per_min: SourceGaps = 1.0,
) -> None:
    """Upload the generated datasources, dashboards and alert rules to a Grafana server."""
    import tempfile

    from gateway.ops.grafana import Thresholds, render
    from gateway.ops.grafana.push import connect, push
    from gateway.ops.grafana.render import datasources_yaml

    loaded = _load(config)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render(loaded, Path(tmp), prometheus_url,
                          thresholds=Thresholds(low_battery_pct, source_gap_per_min))
    datasources = datasources_yaml(loaded, prometheus_url)["datasources"]
    try:
        result = push(connect(url, token), rendered.dashboards, datasources, rendered.alerts)
    except MedgwError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from err
    print(f"pushed to {url}: folder {result.folder}, dashboards {', '.join(result.dashboards)}; "
          f"datasources {', '.join(result.datasources)}; "
          f"alert rules {', '.join(result.alert_rules)}")


@app.command()
def replay(
    bag: Annotated[Path, typer.Argument(help="rosbag2 directory or file (MCAP or sqlite3)")],
    config: ConfigOption,
    device: Annotated[str | None, typer.Option(help="ros2 device whose mapping to use")] = None,
    verbose: Verbose = False,
) -> None:
    """Replay a recorded procedure through the ROS 2 mapping into MQTT (marked historical)."""
    setup_logging(False, verbose)
    loaded = _load(config)
    from drivers.ros2 import replay_from_config
    from gateway.edge.publisher import MqttPublisher
    from gateway.metrics import GatewayMetrics
    from gateway.ring import RingStore, StreamRing

    metrics = GatewayMetrics()
    store = RingStore(loaded.config.publisher.ring_capacity)
    publisher = MqttPublisher(loaded, store, metrics)
    publisher.historical = True

    def backpressure(ring: StreamRing) -> None:
        # a bag is usually larger than the ring: wait until the publisher caught up
        while publisher.reader.pending(ring) > ring.capacity // 2:
            time.sleep(0.01)

    try:
        publisher.start()
        publisher.wait_connected(30)
        result = replay_from_config(bag, loaded, store, metrics, device, backpressure)
    except MedgwError as err:
        publisher.stop(drain_timeout=5)
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from err
    all_acked = publisher.stop(drain_timeout=120)
    acked = sum(c.acked for c in publisher.counters.values())
    print(f"replayed {bag}: {result.total_appended} samples appended, {acked} acknowledged "
          f"by the broker{'' if all_acked else ' (NOT all acknowledged)'}")
    raise typer.Exit(0 if all_acked else 3)


def _mount_dayone() -> None:
    """Register the day-one commands: discover, opcua cert, config init (discover_cli.py)."""
    from gateway.ops.discover_cli import config_init, discover_app, opcua_app

    app.add_typer(discover_app, name="discover")
    app.add_typer(opcua_app, name="opcua")
    config_app.command("init")(config_init)


_mount_dayone()


def _mount_simulators() -> None:
    """Mount the simulators' own CLIs under ``medgw sim`` where they are installed."""
    import importlib

    for name, module in (("carriers", "simulators.transport_carrier.cli"),
                         ("robot", "simulators.surgical_robot.cli"),
                         ("agv", "simulators.agv.cli"),
                         ("rmf", "simulators.rmf_fleet.cli")):
        try:
            sub = importlib.import_module(module)
        except ImportError:
            continue
        sim_app.add_typer(sub.app, name=name)


def main() -> None:
    """Console-script entry point."""
    _mount_simulators()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
