"""``medgw sim agv``: run the VDA 5050 fleet simulator against an MQTT broker.

Faults are scripted with ``--fault AT:ACTION:SERIAL[:ARG]`` (seconds after start), e.g.
``--fault 10:fatal:agv-02 --fault 20:clear:agv-02 --fault 15:drop:agv-01:5
--fault 30:disconnect:agv-03 --fault 40:connect:agv-03 --fault 50:restart:agv-04``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Annotated

import typer

from simulators.agv.fleet import AgvFleet, FleetConfig

app = typer.Typer(help="VDA 5050 AGV fleet simulator (state, connection with a Will, faults).")

ACTIONS = ("fatal", "warning", "clear", "estop", "release", "drop", "disconnect", "connect",
           "restart", "offline", "malformed", "mode")


def parse_fault(text: str) -> tuple[float, str, str, str]:
    """Parse ``AT:ACTION:SERIAL[:ARG]`` into (seconds, action, serial, arg)."""
    parts = text.split(":", 3)
    if len(parts) < 3 or parts[1] not in ACTIONS:
        raise typer.BadParameter(f"--fault {text!r}: want AT:ACTION:SERIAL[:ARG], ACTION one "
                                 f"of {', '.join(ACTIONS)}")
    try:
        at = float(parts[0])
    except ValueError as err:
        raise typer.BadParameter(f"--fault {text!r}: AT must be seconds") from err
    return at, parts[1], parts[2], parts[3] if len(parts) > 3 else ""


def apply_fault(fleet: AgvFleet, action: str, serial: str, arg: str) -> None:
    """Run one scripted fault on the fleet."""
    if serial not in fleet.vehicles:
        raise typer.BadParameter(f"no vehicle {serial!r}; have {', '.join(fleet.vehicles)}")
    calls = {
        "fatal": lambda: fleet.error(serial, arg or "batteryFault", "FATAL"),
        "warning": lambda: fleet.error(serial, arg or "lowSignal", "WARNING"),
        "clear": lambda: fleet.clear_errors(serial),
        "estop": lambda: fleet.estop(serial, arg or "MANUAL"),
        "release": lambda: fleet.estop(serial, "NONE"),
        "drop": lambda: fleet.drop_states(serial, int(arg or "1")),
        "disconnect": lambda: fleet.disconnect(serial),
        "connect": lambda: fleet.connect(serial),
        "restart": lambda: fleet.restart(serial),
        "offline": lambda: fleet.offline(serial),
        "malformed": lambda: fleet.malformed(serial, arg or "json"),
        "mode": lambda: fleet.mode(serial, arg or "MANUAL"),
    }
    calls[action]()


@app.callback(invoke_without_command=True)
def agv(
    host: Annotated[str, typer.Option(help="fleet broker host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="fleet broker port")] = 1883,
    vehicles: Annotated[int, typer.Option(help="fleet size")] = 4,
    rate: Annotated[float, typer.Option(help="state rate per vehicle, Hz (the spec: 1-10)")] = 2.0,
    versions: Annotated[str, typer.Option(
        help="comma list assigned round-robin: 2.0.0, 2.1.0, 3.0.0")] = "2.0.0,3.0.0",
    interface: Annotated[str, typer.Option(help="interfaceName topic level")] = "uagv",
    manufacturer: Annotated[str, typer.Option(help="manufacturer topic level")] = "medgw-sim",
    username: Annotated[str | None, typer.Option(help="broker username")] = None,
    password_env: Annotated[str | None, typer.Option(
        help="environment variable holding the broker password")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    fault: Annotated[list[str] | None, typer.Option(
        help="AT:ACTION:SERIAL[:ARG], repeatable: at AT seconds one of fatal, warning, clear, "
             "estop, release, drop (ARG states), disconnect (the Will), connect, restart, "
             "offline, malformed (ARG json|type|version), mode (ARG e.g. MANUAL); "
             "e.g. 10:fatal:agv-02 15:drop:agv-01:5")] = None,
) -> None:
    """Connect the fleet and publish until interrupted (or ``--duration``)."""
    if not 0.1 <= rate <= 50:
        raise typer.BadParameter("--rate must be within 0.1-50 Hz")
    script = sorted(parse_fault(f) for f in fault or [])
    password = os.environ.get(password_env) if password_env else None
    config = FleetConfig(host=host, port=port, vehicles=vehicles, rate_hz=rate,
                         versions=tuple(v.strip() for v in versions.split(",") if v.strip()),
                         interface=interface, manufacturer=manufacturer, username=username,
                         password=password)
    fleet = AgvFleet(config)
    fleet.start()
    typer.echo(f"READY {host}:{port} vehicles={vehicles} rate={rate}Hz "
               f"versions={','.join(config.versions)}")
    fleet.run(duration)
    start = time.monotonic()
    done = threading.Event()
    with contextlib.suppress(KeyboardInterrupt):
        for at, action, serial, arg in script:
            if done.wait(max(0.0, start + at - time.monotonic())):
                break
            apply_fault(fleet, action, serial, arg)
            typer.echo(f"{time.monotonic() - start:7.2f} s  {action} {serial} {arg}".rstrip())
        while duration is None or time.monotonic() - start < duration:
            time.sleep(0.2)
    fleet.stop()
    sent = len(fleet.sent())
    typer.echo(f"sent {sent} states, dropped {len(fleet.history) - sent} on purpose")
