"""Launch the medgw node: ros2 launch medgw_ros medgw.launch.py config:=/etc/medgw/gw.yaml"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Declare the config/log-level arguments and start the medgw node."""
    default_config = PathJoinSubstitution([FindPackageShare("medgw_ros"), "config", "medgw.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="path of the medgw gateway config file"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="ROS log level of the medgw node"),
        DeclareLaunchArgument("health_period_s", default_value="10.0",
                              description="seconds between health log lines"),
        # no RMW_IMPLEMENTATION here: the node reads through its own rclpy context, so it
        # uses whatever middleware the rest of the ROS system uses
        Node(
            package="medgw_ros",
            executable="medgw_node",
            name="medgw",
            output="screen",
            parameters=[{
                "config": LaunchConfiguration("config"),
                "health_period_s": LaunchConfiguration("health_period_s"),
            }],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        ),
    ])
