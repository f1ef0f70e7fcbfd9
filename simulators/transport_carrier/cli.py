"""``medgw sim carriers``: run the carrier-fleet OPC UA simulator alone (loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from simulators.transport_carrier.certs import CertPair, client_certificate, server_certificate
from simulators.transport_carrier.server import SECURITY_CHOICES, CarrierSim, SimConfig

app = typer.Typer(help="OPC UA simulator of a smart-transport carrier fleet.")


@app.callback(invoke_without_command=True)
def carriers(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1")] = 4840,
    count: Annotated[int, typer.Option("--carriers", help="fleet size")] = 20,
    rate: Annotated[float, typer.Option(help="update rate in Hz (1-100)")] = 10.0,
    security: Annotated[str, typer.Option(
        help="comma list of None, Basic256Sha256_Sign, Basic256Sha256_SignAndEncrypt")] = "None",
    cert_dir: Annotated[Path, typer.Option(
        help="where the server (and a client) certificate are created if missing")] = Path(
        "carrier-sim-pki"),
    user: Annotated[list[str] | None, typer.Option(
        help="username:password accepted by the server (repeatable); default anonymous")] = None,
    trust_client: Annotated[list[Path] | None, typer.Option(
        help="pin these client certificates (repeatable); default: any")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    control_stdin: Annotated[bool, typer.Option(
        help="start paused; stdin lines 'start'/'stop' run/pause the clock and print stats")]
        = False,
) -> None:
    """Serve the fleet on opc.tcp://127.0.0.1:PORT/medgw/carriers until interrupted."""
    policies = tuple(p.strip() for p in security.split(",") if p.strip())
    bad = [p for p in policies if p not in SECURITY_CHOICES]
    if bad:
        raise typer.BadParameter(f"unknown security {bad}; choose from {SECURITY_CHOICES}")
    server_cert = None
    if any(p != "None" for p in policies):
        server_cert = _ensure_certificates(cert_dir)
    users = dict(_parse_user(u) for u in user or [])
    config = SimConfig(port=port, carriers=count, rate_hz=rate, security=policies,
                       server_cert=server_cert, users=users or None,
                       trusted_clients=tuple(trust_client or ()))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, duration, control_stdin))


def _parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise typer.BadParameter(f"--user must be username:password, got {text.split(':')[0]!r}")
    return name, password


def _ensure_certificates(cert_dir: Path) -> CertPair:
    """Create the server certificate (and a client one for the gateway) if missing."""
    server = CertPair(cert_dir / "carrier-sim.der", cert_dir / "carrier-sim.pem")
    if not (server.cert.is_file() and server.key.is_file()):
        server = server_certificate(cert_dir)
        client = client_certificate(cert_dir)
        typer.echo(f"created {server.cert}, {server.key}, {client.cert}, {client.key}")
    return server


async def _serve(config: SimConfig, duration: float | None, control_stdin: bool) -> None:
    sim = CarrierSim(config)
    async with sim:
        typer.echo(f"READY {sim.endpoint} carriers={config.carriers} rate={config.rate_hz}Hz")
        sys.stdout.flush()
        if control_stdin:
            sim.paused = True
            await _control_loop(sim)
        elif duration is not None:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()


async def _control_loop(sim: CarrierSim) -> None:
    """Read 'start' / 'stop' / 'quit' lines from stdin (the benchmark drives the clock)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def reader() -> None:
        """Forward stdin lines to the loop (a thread: stdin is blocking)."""
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "quit")

    threading.Thread(target=reader, daemon=True).start()
    started = (0, 0, 0, time.monotonic())
    while True:
        command = await lines.get()
        if command == "start":
            started = (sim.stats.ticks, sim.stats.writes, sim.stats.numeric_writes,
                       time.monotonic())
            sim.paused = False
        elif command == "stop":
            sim.paused = True
            ticks, writes, numeric, t0 = started
            typer.echo("STATS " + json.dumps({
                "ticks": sim.stats.ticks - ticks, "writes": sim.stats.writes - writes,
                "numeric_writes": sim.stats.numeric_writes - numeric,
                "seconds": round(time.monotonic() - t0, 3)}))
            sys.stdout.flush()
        elif command == "quit":
            return
