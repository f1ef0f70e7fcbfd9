"""OPC UA simulator of a smart-transport carrier fleet (lab-sample robots, AGVs, tube carriers)."""

from simulators.transport_carrier.certs import CLIENT_URI, SERVER_URI, CertPair
from simulators.transport_carrier.fleet import VARIABLES, Alarm, MissionState, carrier_name
from simulators.transport_carrier.server import (
    NAMESPACE_URI,
    CarrierSim,
    SimConfig,
    SimStats,
    WriteRecord,
    run_carrier_sim,
)

__all__ = [
    "CLIENT_URI",
    "NAMESPACE_URI",
    "SERVER_URI",
    "VARIABLES",
    "Alarm",
    "CarrierSim",
    "CertPair",
    "MissionState",
    "SimConfig",
    "SimStats",
    "WriteRecord",
    "carrier_name",
    "run_carrier_sim",
]
