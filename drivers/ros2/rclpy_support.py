"""Helpers of the rclpy transport: executor choice, type support, QoS, graph endpoints.

Kept apart from :mod:`drivers.ros2.rclpy_transport` (the session and its threads) so both
stay short; nothing here keeps state.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from typing import Any

from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from drivers.ros2.options import QosOptions
from drivers.ros2.transport import Publication, ReaderRefused

log = logging.getLogger("medgw.ros2.rclpy")
EXECUTOR_ENV = "MEDGW_RCLPY_EXECUTOR"  # "single": the SingleThreadedExecutor (see make_executor)
# DDSI vendor ids as the OMG assigns them; Fast DDS and Cyclone put theirs first in a GUID
VENDORS = {(1, 1): "RTI Connext", (1, 15): "eProsima Fast DDS", (1, 16): "Eclipse Cyclone DDS",
           (1, 17): "GurumDDS"}


def make_executor(context: Context) -> Any:
    """Return the executor of a private node: rclpy's EventsExecutor where it exists.

    The EventsExecutor (rclpy >= 9, ``rclpy.experimental``) dispatches in C++: per message
    it costs a fraction of the SingleThreadedExecutor's Python wait-set loop (bench_rclpy).
    ``MEDGW_RCLPY_EXECUTOR=single`` forces the SingleThreadedExecutor. Spin it with
    ``spin_once(timeout_sec=...)`` in a loop: its ``spin()`` starves other Python threads
    (a subscription created from another thread never gets made).
    """
    if os.environ.get(EXECUTOR_ENV, "events") != "single":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            pass
        else:
            try:
                return EventsExecutor(context=context)
            except (OSError, ValueError, RuntimeError) as err:
                # it calls faulthandler.enable(), which needs a real stderr file descriptor
                # (absent under a redirected or captured stderr): the portable executor works
                log.warning("rclpy EventsExecutor unavailable (%s: %s); using the "
                            "SingleThreadedExecutor", type(err).__name__, err)
    return SingleThreadedExecutor(context=context)


def message_type(ros_type: str) -> Any:
    """Return the Python message class of ``pkg/msg/Type``; ReaderRefused if none imports."""
    pkg, _, name = ros_type.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as err:
        raise ReaderRefused(
            f"rclpy transport: no type support for {ros_type} in this Python ({err}); a raw "
            f"rclpy subscription still needs it: install or build the ROS package {pkg} and "
            f"source its workspace, or read this device with transport: cyclonedds, which "
            f"needs none") from err


def qos_profile(qos: QosOptions) -> QoSProfile:
    """Return the rclpy QoS profile for the driver's QoS options (keep last ``depth``)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=qos.depth,
        reliability=(ReliabilityPolicy.RELIABLE if qos.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def vendor_of(gid: bytes) -> str | None:
    """Return the DDS vendor a gid's GUID prefix names (Fast DDS, Cyclone put it first)."""
    name = VENDORS.get((gid[0], gid[1])) if len(gid) >= 2 else None
    return f"{name} ({gid[0]}.{gid[1]})" if name else None


def publication_of(topic: str, info: Any) -> Publication:
    """Return the :class:`Publication` of one rclpy ``TopicEndpointInfo`` on ``topic``."""
    gid = bytes(info.endpoint_gid)
    ns = info.node_namespace.rstrip("/")
    qos = info.qos_profile
    reliability = {ReliabilityPolicy.RELIABLE: "reliable",
                   ReliabilityPolicy.BEST_EFFORT: "best_effort"}.get(qos.reliability)
    durability = {DurabilityPolicy.VOLATILE: "volatile",
                  DurabilityPolicy.TRANSIENT_LOCAL: "transient_local"}.get(qos.durability)
    ros_type = info.topic_type if "/msg/" in info.topic_type else None
    return Publication(
        topic=topic, ros_type=ros_type, type_name=info.topic_type, key=gid.hex(),
        participant=gid[:12].hex(), node=f"{ns}/{info.node_name}" if info.node_name else None,
        vendor=vendor_of(gid), reliability=reliability, durability=durability)


def policy_name(kind: Any) -> str:
    """Return a QoS policy kind as the driver names it ("reliability", "durability")."""
    name = str(getattr(kind, "name", kind)).lower()
    return name.removesuffix("_qos_policy").removeprefix("rmw_qos_policy_")


def gone(pub: Publication) -> Publication:
    """Return ``pub`` marked as gone from the graph."""
    return dataclasses.replace(pub, alive=False)
