"""The IdlStruct ROS 2 types serialize byte-identically to rosbags' CDR serializer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ros2 import msgs
from tests.unit.drivers.ros2.strategies import MESSAGES


def test_every_idl_type_has_a_strategy() -> None:
    assert set(MESSAGES) == set(msgs.IDL_TYPES)


@pytest.mark.parametrize("ros_type", sorted(msgs.IDL_TYPES))
def test_idl_type_names_follow_ros2_convention(ros_type: str) -> None:
    cls = msgs.idl_type(ros_type)
    assert cls.__idl_typename__ == msgs.dds_type_name(ros_type)
    assert msgs.ros_type_name(cls.__idl_typename__) == ros_type


@pytest.mark.parametrize("ros_type", sorted(msgs.IDL_TYPES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cdr_identical_to_rosbags(ros_type: str, data: st.DataObject, ros_cdr: Any,
                                  typestore: Any) -> None:
    message = data.draw(MESSAGES[ros_type])
    ours = message.serialize()
    theirs = ros_cdr(message)
    assert ours[:4] == b"\x00\x01\x00\x00"  # XCDR1 little endian, as rmw_cyclonedds sends
    assert ours == theirs
    assert type(message).deserialize(theirs) == message
    back = typestore.deserialize_cdr(ours, ros_type)
    assert bytes(typestore.serialize_cdr(back, ros_type, little_endian=True)) == ours


def test_name_conversions() -> None:
    assert msgs.dds_type_name("sensor_msgs/msg/JointState") == "sensor_msgs::msg::dds_::JointState_"
    assert msgs.dds_type_name("std_msgs/String") == "std_msgs::msg::dds_::String_"
    assert msgs.dds_topic_name("/PSM1/measured_js") == "rt/PSM1/measured_js"
    assert msgs.ros_topic_name("rt/PSM1/jaw/measured_js") == "/PSM1/jaw/measured_js"
    assert msgs.ros_topic_name("DCPSParticipant") is None
    with pytest.raises(ValueError):
        msgs.ros_type_name("JointState")
    with pytest.raises(ValueError):
        msgs.dds_topic_name("/")
    with pytest.raises(KeyError, match="nav_msgs/msg/Odometry"):
        msgs.idl_type("nav_msgs/msg/Odometry")
