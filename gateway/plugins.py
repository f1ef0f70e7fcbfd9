"""The driver registry: drivers are found by their ``medgw.drivers`` entry points.

A driver package declares itself in pyproject.toml
(``[project.entry-points."medgw.drivers"] name = "drivers.name:DRIVER"``), so the contracts
here never import a driver: the registry loads it by name when a config asks for it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from gateway.driver import DriverInfo
from gateway.errors import ConfigError

ENTRY_POINT_GROUP = "medgw.drivers"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def driver_names() -> list[str]:
    """Return the names of all registered drivers, sorted."""
    return sorted(_entry_points())


def load_driver(name: str) -> DriverInfo:
    """Load the driver registered as ``name`` and return its DriverInfo."""
    points = _entry_points()
    if not points:
        raise ConfigError("no drivers are registered: medgw is not installed "
                          "(run `pip install -e .` or python3 -m gateway.ops.bootstrap setup)")
    if name not in points:
        raise ConfigError(f"unknown driver {name!r}; known drivers: {', '.join(sorted(points))}")
    info = points[name].load()
    if not isinstance(info, DriverInfo):
        raise ConfigError(f"entry point {points[name].value} is not a DriverInfo")
    return info
