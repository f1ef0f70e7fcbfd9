"""Simulated dVRK-like surgical robot publishing CRTK topics with ROS 2 conventions.

Over Cyclone DDS with its own IdlStruct types (default) or as a real rclpy node.
"""

from simulators.surgical_robot.dds import NetworkOptions, QosOptions, pick_domain_id
from simulators.surgical_robot.sim import EVENT_TOPICS, SAMPLED_TOPICS, RobotSimulator, SimConfig

__all__ = ["EVENT_TOPICS", "SAMPLED_TOPICS", "NetworkOptions", "QosOptions", "RobotSimulator",
           "SimConfig", "pick_domain_id"]
