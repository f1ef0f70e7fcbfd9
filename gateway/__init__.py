"""medgw: a read-only telemetry gateway for hospital robotics (ROS 2, OPC UA -> MQTT -> InfluxDB).

Importing this package must stay stdlib-only: ``python3 -m gateway.ops.bootstrap`` runs it
before any dependency is installed.
"""

__version__ = "0.1.0"
