"""ROS 2 driver: CRTK/ROS 2 topics over Cyclone DDS (ROS 2 wire conventions) into the rings."""

from drivers.ros2.driver import Ros2Driver, Ros2Options, TopicOptions
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="ros2",
    options_model=Ros2Options,
    create=Ros2Driver,
    description="ROS 2 topics (JointState, poses, twists, wrenches, CRTK state) over DDS",
)

__all__ = ["DRIVER", "Ros2Driver", "Ros2Options", "TopicOptions"]
