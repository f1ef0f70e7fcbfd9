"""The simulator's messages are checked against rosbags, a peer library with its own typestore."""

from __future__ import annotations

import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from simulators.surgical_robot.msgs import OPERATING_STATE_MSG


@pytest.fixture(scope="session")
def typestore() -> Typestore:
    """Return ROS 2 Humble's typestore plus crtk_msgs/msg/OperatingState."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(OPERATING_STATE_MSG, "crtk_msgs/msg/OperatingState"))
    return store
