"""The simulator's encoders are checked against rosbags with the ros2 tests' typestore."""

from tests.unit.drivers.ros2.conftest import ros_cdr, typestore

__all__ = ["ros_cdr", "typestore"]
