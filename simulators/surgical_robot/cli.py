"""``medgw sim robot``: run the surgical robot simulator on its own.

Mounted by the main CLI as ``medgw sim robot``; also runnable as
``python -m simulators.surgical_robot.cli --arms PSM1,PSM2 --rate 100 --domain 7``.
"""

from __future__ import annotations

import enum
import json
import signal
import threading
import time
from typing import Annotated

import typer

from simulators.surgical_robot import dds
from simulators.surgical_robot.sim import SAMPLED_TOPICS, RobotSimulator, SimConfig


class Transport(str, enum.Enum):
    """How the simulator publishes."""

    CYCLONEDDS = "cyclonedds"
    RCLPY = "rclpy"


app = typer.Typer(help="Simulated dVRK-like surgical robot publishing CRTK topics over DDS.")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [part.strip() for part in value.split(",") if part.strip()]
    return items or None


@app.callback(invoke_without_command=True)
def robot(
    arms: Annotated[str, typer.Option(help="comma-separated arm names")] = "PSM1,PSM2,PSM3,ECM",
    rate: Annotated[float, typer.Option(min=1, max=1000, help="sampled topics, Hz")] = 100.0,
    domain: Annotated[int, typer.Option(min=0, max=dds.MAX_DOMAIN_ID,
                                        help="DDS domain (ROS_DOMAIN_ID)")] = 0,
    topics: Annotated[str | None, typer.Option(
        help=f"sampled topic suffixes to publish (default all: {','.join(SAMPLED_TOPICS)})")
    ] = None,
    events: Annotated[bool, typer.Option(help="publish operating_state/error/warning/status")
                      ] = True,
    count: Annotated[int | None, typer.Option(min=1, help="stop after N samples per topic")
                     ] = None,
    duration: Annotated[float | None, typer.Option(min=0, help="stop after this many seconds")
                        ] = None,
    cycle: Annotated[float, typer.Option(min=1, help="procedure cycle length, s")] = 60.0,
    transport: Annotated[Transport, typer.Option(
        help="cyclonedds (own IdlStruct types) or rclpy (a real node on the system's RMW)")
    ] = Transport.CYCLONEDDS,
    interface: Annotated[str, typer.Option(help="network interface for DDS")] = "lo",
    wait_subscribers: Annotated[float, typer.Option(
        help="wait up to this many seconds for a reader on every topic before publishing")
    ] = 0.0,
    history_depth: Annotated[int, typer.Option(
        min=1, help="writer keep-last depth (ROS default 10)")] = 10,
    stats: Annotated[bool, typer.Option(help="print per-topic counts as JSON at exit")] = False,
) -> None:
    """Publish the robot's topics until Ctrl-C, --duration or --count."""
    config = SimConfig(
        arms=_split(arms) or ["PSM1"], rate_hz=rate, domain_id=domain, topics=_split(topics),
        events=events, max_samples=count, cycle_s=cycle, transport=transport.value,
        network=dds.NetworkOptions(interface=interface),
        qos=dds.QosOptions(depth=history_depth),
    )
    sim = RobotSimulator(config).open()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if wait_subscribers > 0 and not sim.wait_for_subscribers(wait_subscribers):
            typer.echo("warning: not every topic has a subscriber; publishing anyway", err=True)
        sim.start()
        typer.echo(f"publishing {len(sim.topics())} topics of {','.join(config.arms)} at "
                   f"{rate:g} Hz on DDS domain {domain} ({transport.value})", err=True)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if count is not None and sim.emitted >= count:
                break
            stop.wait(0.05)
    finally:
        sim.stop()
    if stats:
        typer.echo(json.dumps({"published": {t: sim.published(t) for t in sim.topics()},
                               "start_ns": sim.start_ns(), "period_ns": sim.period_ns}))


if __name__ == "__main__":
    app()
