"""Day-one commands: ``discover opcua|ros2``, ``opcua cert``, ``config init``, ``run --test``.

Registered on the main app in cli.py; each command is a thin shell over gateway/ops
modules (discover.py, discover_ros2.py, configinit.py, dryrun.py) and the drivers'
public names. ``discover vda5050``: discover_vda5050.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.errors import MedgwError

discover_app = typer.Typer(help="Look at a device and print what is there, and a device block.",
                           no_args_is_help=True)
opcua_app = typer.Typer(help="OPC UA tools: the gateway's application certificate.",
                        no_args_is_help=True)
console = Console(stderr=True)

Out = Annotated[Path | None, typer.Option("--out", "-o",
                                          help="also write the device block to this file")]


def fail(err: MedgwError, code: int = 1) -> typer.Exit:
    """Print a medgw error the CLI way and return the exit to raise."""
    console.print(f"[red]error:[/red] {err}", highlight=False)
    return typer.Exit(code)


@opcua_app.command("cert")
def opcua_cert(
    directory: Annotated[Path, typer.Option("--dir", help="where to write the files")] = Path(
        "pki"),
    name: Annotated[str, typer.Option(help="file name stem and certificate CN")] = "medgw-client",
    uri: Annotated[str | None, typer.Option(
        "--uri", help="application URI (SAN); default urn:medgw:gateway:opcua-client")] = None,
    days: Annotated[int, typer.Option(help="validity in days", min=1, max=3650)] = 730,
    host: Annotated[list[str] | None, typer.Option(
        help="host names/addresses in the SAN (repeatable; default: this host)")] = None,
    key_bits: Annotated[int, typer.Option(help="RSA key size", min=2048, max=8192)] = 2048,
    force: Annotated[bool, typer.Option(help="replace existing files")] = False,
) -> None:
    """Make the gateway's OPC UA application certificate and key; print its thumbprint."""
    from drivers.opcua import make_certificate
    from gateway.ops.discover import cert_report

    try:
        files = make_certificate(directory, name, uri, days,
                                 tuple(host or ()), key_bits, force=force)
    except MedgwError as err:
        raise fail(err) from err
    print(cert_report(files))


@discover_app.command("opcua")
def discover_opcua(
    endpoint: Annotated[str, typer.Argument(help="opc.tcp://host:port/path")],
    save_cert: Annotated[Path | None, typer.Option(
        help="write the server certificate here (DER, as server_certificate pins it)")] = None,
    certificate: Annotated[Path | None, typer.Option(
        help="the gateway's certificate (from `medgw opcua cert`), to browse a secure server")]
        = None,
    private_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    username: Annotated[str | None, typer.Option(help="user name, if the server wants one")]
        = None,
    password_env: Annotated[str | None, typer.Option(
        help="environment variable holding the password (default MEDGW_OPCUA_PASSWORD)")]
        = None,
    password_file: Annotated[Path | None, typer.Option(help="file holding the password")] = None,
    nodes: Annotated[bool, typer.Option(
        "--nodes", help="explicit node ids in the device block instead of browse patterns")]
        = False,
    name: Annotated[str, typer.Option(help="device name in the block")] = "opcua-device",
    out: Out = None,
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 5.0,
) -> None:
    """Endpoints, server certificate, a browse summary, and a device block for the config."""
    from gateway.ops.discover import (
        credentials,
        device_block,
        device_yaml,
        run_survey,
        survey_report,
        write_device_yaml,
    )

    if certificate is not None and private_key is None:
        certificate_key = certificate.with_suffix(".key")
        private_key = certificate_key if certificate_key.is_file() else None
    cred = credentials(certificate, private_key, username, password_env, password_file)
    try:
        found = run_survey(endpoint, cred, save_cert, timeout)
    except MedgwError as err:
        raise fail(err) from err
    print(survey_report(found))
    text = device_yaml(device_block(found, name, cred, save_cert, nodes), found)
    print("\n" + text)
    if out is not None:
        write_device_yaml(out, text)
        console.print(f"device block written to {out}", highlight=False)


@discover_app.command("ros2")
def discover_ros2(
    domain: Annotated[int, typer.Option(help="ROS_DOMAIN_ID", min=0, max=232)] = 0,
    seconds: Annotated[float, typer.Option(help="how long to listen", min=0.5)] = 5.0,
    transport: Annotated[str, typer.Option(help="auto, cyclonedds or rclpy")] = "auto",
    interface: Annotated[str | None, typer.Option(
        help="network interface (cyclonedds; default lo, loopback)")] = None,
    peer: Annotated[list[str] | None, typer.Option(
        help="unicast discovery peer (cyclonedds; repeatable; default 127.0.0.1)")] = None,
    name: Annotated[str, typer.Option(help="device name in the block")] = "ros2-device",
    out: Out = None,
) -> None:
    """Topics, types, publishers and vendors, QoS, rates seen; a device block for the config."""
    from gateway.ops.discover import write_device_yaml
    from gateway.ops.discover_ros2 import ros2_report

    try:
        report, text = ros2_report(domain, seconds, name, transport, interface,
                                   tuple(peer or ()))
    except MedgwError as err:
        raise fail(err) from err
    except ValueError as err:  # pydantic: options the driver refuses
        raise fail(MedgwError(str(err))) from err
    print(report + "\n\n" + text)
    if out is not None:
        write_device_yaml(out, text)
        console.print(f"device block written to {out}", highlight=False)


@discover_app.command("vda5050")
def discover_vda5050(
    broker: Annotated[str, typer.Option(help="the fleet's MQTT broker, HOST[:PORT]")]
        = "127.0.0.1:1883",
    seconds: Annotated[float, typer.Option(help="how long to listen", min=0.5)] = 5.0,
    interface: Annotated[str | None, typer.Option(
        help="interface name (topic level 1; default: any)")] = None,
    username: Annotated[str | None, typer.Option(help="user name on the fleet broker")] = None,
    password_env: Annotated[str | None, typer.Option(
        help="environment variable holding the password (default MEDGW_FLEET_PASSWORD)")]
        = None,
    password_file: Annotated[Path | None, typer.Option(help="file holding the password")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="TLS: the CA to trust")] = None,
    cert_file: Annotated[Path | None, typer.Option(help="TLS: client certificate")] = None,
    key_file: Annotated[Path | None, typer.Option(help="TLS: its key")] = None,
    protocol: Annotated[str, typer.Option(help="MQTT 3.1.1 or 5")] = "3.1.1",
    name: Annotated[str, typer.Option(help="device name in the block")] = "fleet",
    out: Out = None,
) -> None:
    """Vehicles, manufacturers, versions, topics, state rates seen (subscribe only); a block."""
    from gateway.ops.discover import write_device_yaml
    from gateway.ops.discover_vda5050 import options_for, vda5050_report

    tls = {k: v for k, v in (("ca_file", ca_file), ("cert_file", cert_file),
                             ("key_file", key_file)) if v is not None}
    try:
        options = options_for(broker, interface, username, password_env, password_file,
                              tls or None, protocol)
        report, text = vda5050_report(options, seconds, name)
    except MedgwError as err:
        raise fail(err) from err
    print(report + "\n\n" + text)
    if out is not None:
        write_device_yaml(out, text)
        console.print(f"device block written to {out}", highlight=False)


def config_init(
    out: Annotated[Path, typer.Option("--out", "-o", help="config file to write")],
    device: Annotated[list[Path] | None, typer.Option(
        help="a device block file from `medgw discover ... --out` (repeatable)")] = None,
    site: Annotated[str | None, typer.Option(help="site name ([A-Za-z0-9_-])")] = None,
    gateway: Annotated[str | None, typer.Option(help="gateway (edge box) name")] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker host")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port", min=1, max=65535)] = 1883,
    influx_url: Annotated[str, typer.Option(help="InfluxDB URL")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="InfluxDB database")] = "medgw",
    spool_dir: Annotated[Path | None, typer.Option(help="the spool directory")] = Path(
        "/var/lib/medgw/spool"),
    health_port: Annotated[int, typer.Option(help="loopback /health port", min=0,
                                             max=65535)] = 9108,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
    interactive: Annotated[bool | None, typer.Option(
        "--interactive/--no-interactive",
        help="ask for what is not given (default: when run at a terminal)")] = None,
) -> None:
    """Write a complete, commented config from device blocks and answers; it passes check."""
    from gateway.ops.configinit import Answers, write_config

    if interactive is None:
        interactive = sys.stdin.isatty()
    if site is None:
        site = typer.prompt("site name", default="my-site") if interactive else "my-site"
    if gateway is None:
        gateway = typer.prompt("gateway name", default="edge-01") if interactive else "edge-01"
    answers = Answers(site=site, gateway=gateway, mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                      influx_url=influx_url, database=database, spool_dir=spool_dir,
                      health_port=health_port)
    try:
        summary = write_config(out, answers, tuple(device or ()), force)
    except MedgwError as err:
        raise fail(err, 2) from err
    print(summary)


def run_test(config: Path, seconds: float, samples: int, connect_timeout: float = 20.0) -> None:
    """``medgw run --test``: the drivers alone for a while, what would be published."""
    from gateway.config import load_config
    from gateway.ops.dryrun import dry_run

    try:
        ok = dry_run(load_config(config), seconds, samples, connect_timeout)
    except MedgwError as err:
        raise fail(err, 2) from err
    raise typer.Exit(0 if ok else 1)
