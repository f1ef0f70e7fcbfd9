"""``python -m simulators.transport_carrier``: same as ``medgw sim carriers``."""

from simulators.transport_carrier.cli import app

app(prog_name="carrier-sim")
