"""rclpy node that runs the medgw gateway (gateway.edge.daemon) inside a ROS 2 system.

The node owns no subscriptions of its own: the gateway's ros2 driver reads the robot's
topics over DDS (read-only) and the publisher streams them to MQTT. The node gives the
gateway a ROS lifecycle: parameters, launch files, logging and shutdown with the system.

Parameters:
  config (string)          path of the gateway config file (required)
  health_period_s (double) how often the gateway's health is logged (default 10)
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node

from gateway.config import load_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.errors import MedgwError


class MedgwNode(Node):
    """Loads the config named by the ``config`` parameter and runs the gateway in a thread."""

    def __init__(self) -> None:
        super().__init__("medgw")
        self.declare_parameter("config", "")
        self.declare_parameter("health_period_s", 10.0)
        path = self.get_parameter("config").get_parameter_value().string_value
        if not path:
            raise MedgwError("parameter 'config' (path of the gateway config) is required")
        loaded = load_config(path)
        self.gateway = Gateway(loaded)
        self.thread = GatewayThread(self.gateway)
        self.thread.start()
        names = ", ".join(d.name for d in self.gateway.devices) or "none"
        self.get_logger().info(f"medgw gateway {loaded.config.gateway} running; devices: {names}")
        period = self.get_parameter("health_period_s").get_parameter_value().double_value
        self.create_timer(max(period, 1.0), self._log_health)

    def _log_health(self) -> None:
        """Log the gateway's health document (warn when degraded)."""
        report = self.gateway.health_report()
        if report.get("status") == "ok":
            self.get_logger().debug(f"health: {report}")
        else:
            self.get_logger().warning(f"health: {report}")

    def shutdown(self) -> bool:
        """Stop drivers and drain the publisher; True if every sample was acknowledged."""
        acked = self.thread.stop()
        self.get_logger().info(f"medgw stopped (all samples acknowledged: {acked})")
        return acked


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run medgw_ros medgw_node``."""
    rclpy.init(args=args)
    try:
        node = MedgwNode()
    except MedgwError as err:
        get_logger("medgw").fatal(str(err))
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        acked = node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if acked else 1


if __name__ == "__main__":
    sys.exit(main())
