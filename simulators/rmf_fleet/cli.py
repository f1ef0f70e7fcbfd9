"""``medgw sim rmf``: run the Open-RMF fleet simulator on its own.

Also runnable as ``python -m simulators.rmf_fleet.cli --domain 7 --ticks 600``.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from simulators.rmf_fleet.sim import RmfSimConfig, RmfSimulator
from simulators.surgical_robot import dds

app = typer.Typer(help="Simulated Open-RMF hospital fleet (robots, doors, a lift) over DDS.")


@app.callback(invoke_without_command=True)
def rmf(
    domain: Annotated[int, typer.Option(min=0, max=dds.MAX_DOMAIN_ID,
                                        help="DDS domain (ROS_DOMAIN_ID)")] = 0,
    rate: Annotated[float, typer.Option(min=0.1, max=200, help="FleetState ticks, Hz")] = 10.0,
    ticks: Annotated[int | None, typer.Option(min=1, help="stop after N ticks")] = None,
    drop: Annotated[str, typer.Option(
        help="comma-separated ticks whose FleetState is not sent (seq holes)")] = "30,31,72",
    interface: Annotated[str, typer.Option(help="network interface for DDS")] = "lo",
    wait_subscribers: Annotated[float, typer.Option(
        help="wait up to this many seconds for a reader on every topic first")] = 0.0,
) -> None:
    """Publish /fleet_states, /door_states and /lift_states until the ticks or Ctrl-C."""
    drops = [int(part) for part in drop.split(",") if part.strip()]
    config = RmfSimConfig(domain_id=domain, rate_hz=rate, ticks=ticks, drop_ticks=drops,
                          network=dds.NetworkOptions(interface=interface))
    sim = RmfSimulator(config).open()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        if wait_subscribers > 0 and not sim.wait_for_subscribers(wait_subscribers):
            typer.echo("no reader on every topic yet; publishing anyway", err=True)
        sim.start()
        typer.echo(f"rmf fleet {config.fleet_name}: {len(config.robots)} robots, "
                   f"{len(config.doors)} doors, lift {config.lift} on domain {domain}")
        while not stopping.is_set() and not sim.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    typer.echo(f"{sim.ticks_done} ticks, {len(sim.published['/fleet_states'])} fleet states")


if __name__ == "__main__":
    app()
