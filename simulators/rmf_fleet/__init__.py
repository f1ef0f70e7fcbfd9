"""Open-RMF fleet simulator: robots, doors and a lift of a hospital over DDS (ROS 2 wire)."""

from simulators.rmf_fleet.sim import RmfSimConfig, RmfSimulator

__all__ = ["RmfSimConfig", "RmfSimulator"]
