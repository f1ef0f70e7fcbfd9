"""Synthetic driver: sines, ramps, noise and square waves at configurable rates and widths."""

from drivers.synthetic.driver import SyntheticDriver, SyntheticOptions, SyntheticStream
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="synthetic",
    options_model=SyntheticOptions,
    create=SyntheticDriver,
    description="generated waveforms for tests, load and the demo",
)

__all__ = ["DRIVER", "SyntheticDriver", "SyntheticOptions", "SyntheticStream"]
