"""A VDA 5050 AGV fleet simulator (paho, a real MQTT broker); a peer, not medgw code."""

from simulators.agv.fleet import AgvFleet, FleetConfig, Published
from simulators.agv.vehicle import ROUTE, STATIONS, AgvVehicle

__all__ = ["ROUTE", "STATIONS", "AgvFleet", "AgvVehicle", "FleetConfig", "Published"]
