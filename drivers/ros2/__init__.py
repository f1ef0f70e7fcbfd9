"""ROS 2 driver: CRTK/ROS 2 topics over Cyclone DDS (ROS 2 wire conventions) into the rings.

The names below are the package's public face; the rest of gateway/ imports nothing else
of it (the dependency rule in the README's Layout section).
"""

from drivers.ros2.driver import Ros2Driver
from drivers.ros2.mapping import CRTK_STATES, TYPE_TABLE
from drivers.ros2.options import Ros2Options, TopicOptions
from drivers.ros2.replay import replay_from_config
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="ros2",
    options_model=Ros2Options,
    create=Ros2Driver,
    description="ROS 2 topics (JointState, poses, twists, wrenches, CRTK state) over DDS",
)

__all__ = ["CRTK_STATES", "DRIVER", "TYPE_TABLE", "Ros2Driver", "Ros2Options", "TopicOptions",
           "replay_from_config"]
