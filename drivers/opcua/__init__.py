"""OPC UA driver: subscriptions on a carrier fleet server (or any OPC UA server), read-only."""

from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.mapping import EVENT_LABELS
from drivers.opcua.options import BrowseSpec, EventOptions, NodeSpec, OpcUaOptions
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="opcua",
    options_model=OpcUaOptions,
    create=OpcUaDriver,
    description="OPC UA subscriptions (asyncua), Basic256Sha256, carrier events",
)

__all__ = ["DRIVER", "EVENT_LABELS", "BrowseSpec", "EventOptions", "NodeSpec", "OpcUaDriver",
           "OpcUaOptions"]
