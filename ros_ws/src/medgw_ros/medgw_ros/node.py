"""rclpy node that runs the medgw gateway (gateway.edge.daemon) inside a ROS 2 system.

The gateway's ros2 devices read through this node: before the gateway starts, the node
is shared with the ros2 driver's rclpy transport (``transport: auto`` or ``rclpy``), so
their raw subscriptions live on this node, on its context, domain, RMW and executor,
and the process runs one DDS stack. The node never publishes robot data; the publisher
streams the rings to MQTT. The node gives the gateway a ROS lifecycle: parameters,
launch files, logging and shutdown with the system (SIGINT/SIGTERM drain the gateway).

Parameters:
  config (string)          path of the gateway config file (required)
  health_period_s (double) how often the gateway's health is logged (default 10)
"""

from __future__ import annotations

import logging
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node

from drivers.ros2 import rclpy_transport
from gateway.config import LoadedConfig, load_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.errors import MedgwError
from gateway.logs import setup_logging


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
        self._warn_second_stack(loaded)
        self.health: HealthServer | None = None
        rclpy_transport.share_node(self)
        try:
            self.gateway = Gateway(loaded)
            self._start_health(loaded)
            self.thread = GatewayThread(self.gateway)
            self.thread.start()
        except BaseException:
            self._stop_health()
            rclpy_transport.share_node(None)
            raise
        names = ", ".join(d.name for d in self.gateway.devices) or "none"
        self.get_logger().info(f"medgw gateway {loaded.config.gateway} running; devices: {names}"
                               f" (ros2 devices read through this node)")
        period = self.get_parameter("health_period_s").get_parameter_value().double_value
        self.create_timer(max(period, 1.0), self._log_health)

    def _start_health(self, loaded: LoadedConfig) -> None:
        """Serve /health, /metrics and the status page as ``medgw run`` does."""
        cfg = loaded.config.health
        if not cfg.enabled:
            return
        self.health = HealthServer(cfg.host, cfg.port, self.gateway.metrics.registry,
                                   self.gateway.health_report, store=self.gateway.store)
        self.health.start()
        self.get_logger().info(f"health and metrics on http://{cfg.host}:{self.health.port}/")

    def _stop_health(self) -> None:
        if self.health is not None:
            self.health.stop()
            self.health = None

    def _warn_second_stack(self, loaded: LoadedConfig) -> None:
        """Warn about ros2 devices that asked for their own Cyclone DDS participant."""
        for device in loaded.config.devices:
            if device.driver == "ros2" and device.options.get("transport") == "cyclonedds":
                self.get_logger().warning(
                    f"device {device.name}: transport cyclonedds opens a second DDS stack in "
                    f"this ROS process; 'auto' or 'rclpy' reads through this node instead")

    def _log_health(self) -> None:
        """Log the gateway's health document (warn when degraded)."""
        report = self.gateway.health_report()
        if report.get("status") == "ok":
            self.get_logger().debug(f"health: {report}")
        else:
            self.get_logger().warning(f"health: {report}")

    def shutdown(self) -> bool:
        """Stop drivers and drain the publisher; True if every sample was acknowledged."""
        try:
            acked = self.thread.stop()
        finally:
            self._stop_health()
            rclpy_transport.share_node(None)
        # Python logging: after SIGINT the context is gone and rosout cannot take the line
        logging.getLogger("medgw").info("medgw stopped (all samples acknowledged: %s)", acked)
        return acked


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run medgw_ros medgw_node``."""
    rclpy.init(args=args)
    setup_logging(json_lines=False, verbose=False)  # the gateway's own log lines, on stderr
    try:
        node = MedgwNode()
    except MedgwError as err:
        get_logger("medgw").fatal(str(err))
        rclpy.try_shutdown()
        return 2
    executor = rclpy_transport.make_executor(node.context)  # EventsExecutor where it exists
    executor.add_node(node)
    try:
        # spin_once, not spin(): the EventsExecutor's spin() keeps the gateway's threads
        # from creating subscriptions on this node
        while node.context.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        acked = node.shutdown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if acked else 1


if __name__ == "__main__":
    sys.exit(main())
