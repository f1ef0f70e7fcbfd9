"""Fixtures for the ROS 2 driver unit tests: rosbags' typestore and a ring-backed context."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from drivers.ros2.msgs import CRTK_OPERATING_STATE_MSG, RMF_MSG_DEFINITIONS, ros_type_name
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore

ROOT = Path(__file__).resolve().parents[4]
MEDGW_MSG_DIR = ROOT / "ros_ws" / "src" / "medgw_msgs" / "msg"


def make_typestore() -> Typestore:
    """Return ROS 2 Humble's typestore plus crtk_msgs, medgw_msgs and the Open-RMF types."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = get_types_from_msg(CRTK_OPERATING_STATE_MSG, "crtk_msgs/msg/OperatingState")
    for ros_type, definition in RMF_MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(definition, ros_type))
    for msg in sorted(MEDGW_MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(msg.read_text(), f"medgw_msgs/msg/{msg.stem}"))
    store.register(types)
    return store


@pytest.fixture(scope="session")
def typestore() -> Typestore:
    """Return the shared typestore."""
    return make_typestore()


def to_rosbags(obj: Any, store: Typestore) -> Any:
    """Convert an IdlStruct message (recursively) into the equal rosbags message object."""
    ros_type = ros_type_name(type(obj).__idl_typename__)
    cls = store.types[ros_type]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if hasattr(value, "__idl_typename__"):
            kwargs[f.name] = to_rosbags(value, store)
        elif isinstance(value, list) and value and hasattr(value[0], "__idl_typename__"):
            kwargs[f.name] = [to_rosbags(v, store) for v in value]
        elif f.name == "available_modes":  # uint8[] (rmf_lift_msgs/LiftState)
            kwargs[f.name] = np.asarray(value, dtype=np.uint8)
        elif isinstance(value, list) and (not value or isinstance(value[0], float)) and \
                f.name != "name":
            kwargs[f.name] = np.asarray(value, dtype=np.float64)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


@pytest.fixture
def ctx() -> DriverContext:
    """Return a DriverContext over a fresh RingStore and metrics registry."""
    return DriverContext("site-a", "robot-1", RingStore(4096), GatewayMetrics(),
                         logging.getLogger("test.ros2"), ring_capacity=4096)


@pytest.fixture(scope="session")
def rosify(typestore: Typestore) -> Any:
    """Return a function converting an IdlStruct message into its rosbags twin."""
    return lambda obj: to_rosbags(obj, typestore)


@pytest.fixture(scope="session")
def ros_cdr(typestore: Typestore) -> Any:
    """Return a function serializing an IdlStruct message with rosbags (little endian)."""
    def serialize(obj: Any, little_endian: bool = True) -> bytes:
        ros_type = ros_type_name(type(obj).__idl_typename__)
        return bytes(typestore.serialize_cdr(to_rosbags(obj, typestore), ros_type,
                                             little_endian=little_endian))
    return serialize
