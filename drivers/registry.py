"""The driver registry: every package under drivers/ that exposes ``DRIVER`` is a driver."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import drivers
from gateway.driver import DriverInfo
from gateway.errors import ConfigError


def driver_names() -> list[str]:
    """Return the names of all driver packages, sorted."""
    return sorted(
        module.name for module in pkgutil.iter_modules(drivers.__path__) if module.ispkg
    )


def load_driver(name: str) -> DriverInfo:
    """Import driver package ``name`` and return its DriverInfo."""
    if name not in driver_names():
        raise ConfigError(f"unknown driver {name!r}; known drivers: {', '.join(driver_names())}")
    module = importlib.import_module(f"drivers.{name}")
    info = getattr(module, "DRIVER", None)
    if not isinstance(info, DriverInfo):
        raise ConfigError(f"driver package drivers.{name} does not define DRIVER")
    return info


def sample_config_path(name: str) -> Path:
    """Return the path of a driver's sample gateway config (drivers/<name>/sample.yaml)."""
    return Path(drivers.__path__[0]) / name / "sample.yaml"
