"""Simulated dVRK-like surgical robot publishing CRTK topics over DDS (ROS 2 conventions)."""

from simulators.surgical_robot.sim import EVENT_TOPICS, SAMPLED_TOPICS, RobotSimulator, SimConfig

__all__ = ["EVENT_TOPICS", "SAMPLED_TOPICS", "RobotSimulator", "SimConfig"]
