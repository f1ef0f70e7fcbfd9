"""The seam between the ros2 driver and a ROS 2 middleware: what a transport must give it.

A transport finds publications (DDS discovery or the ROS graph), opens readers on request
and hands over raw CDR payloads (4-byte encapsulation header included), so the decode
pipeline, mapping table, quarantine and streams are the same whatever the middleware.
Two implementations: :mod:`drivers.ros2.cyclone_transport` (a Cyclone DDS participant of
our own) and :mod:`drivers.ros2.rclpy_transport` (rclpy subscriptions with ``raw=True`` on
the system's RMW), chosen by the ``transport`` option through :func:`make_transport`.

Threading contract: :meth:`Ros2Transport.run` blocks in a thread the driver owns; every
:class:`TransportSink` call is made from one thread at a time (never concurrently), and
the sink may call :meth:`Ros2Transport.open_reader` from inside those calls. Nothing here
ever writes to the device: a transport creates readers only.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.ros2.options import QosOptions, Ros2Options
from gateway.errors import DeviceError

ROS_EXTRA_HINT = "pip install 'medgw[ros]' (the ROS 2 wheels) or source a ROS 2 install"


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication (DataWriter / ROS publisher) seen by discovery."""

    topic: str  # ROS name, "/PSM1/measured_js"
    ros_type: str | None  # "sensor_msgs/msg/JointState"; None if not a ROS 2 type name
    type_name: str  # the type as discovered (DDS "pkg::msg::dds_::T_" or ROS "pkg/msg/T")
    key: str  # unique id of the publication (endpoint GUID as hex, or the ROS gid)
    participant: str  # the publishing participant's GUID (hex), or "" when unknown
    node: str | None = None  # "/namespace/node" when the transport knows it
    vendor: str | None = None  # e.g. "eProsima Fast DDS (1.15)"; None when unknown
    reliability: str | None = None  # offered: "reliable" / "best_effort"; None if unknown
    durability: str | None = None  # offered: "volatile" / "transient_local" / ...
    alive: bool = True  # False: the publication went away (disposed / node gone)

    def describe(self) -> str:
        """Return "type from vendor participant/node" for log lines and ``medgw check``."""
        who = self.node or (self.participant[:16] if self.participant else "?")
        return f"{self.ros_type or self.type_name} from {self.vendor or 'unknown vendor'} {who}"


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """What the driver asks a transport to read: one topic with its type and QoS."""

    topic: str  # ROS name
    ros_type: str  # a mapped type, "sensor_msgs/msg/JointState"
    qos: QosOptions
    rate_hz: float  # nominal rate (a transport may size its batching by it)
    urgent: bool = False  # event topics: deliver each sample at once, never hold for a batch
    max_hold_ns: int | None = None  # never hold this reader's samples longer (None: no cap)


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Raw samples of one reader, in arrival order, taken at one moment."""

    payloads: list[bytes]  # CDR with the 4-byte encapsulation header
    receive_ns: int  # wall clock (time.time_ns()) when the batch was taken
    source_ns: tuple[int, ...] | None = None  # DDS source timestamps when the middleware tells


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """Cumulative status of one reader as the middleware reports it (counts only grow)."""

    matched: int  # publications matched now
    matched_total: int  # publications ever matched
    lost: int = 0  # samples the middleware says were lost (DDS SAMPLE_LOST / message_lost)
    rejected: int = 0  # samples rejected for lack of resources (DDS SAMPLE_REJECTED)
    matched_keys: frozenset[str] | None = None  # keys of matched publications, when known
    incompatible_qos: int = 0  # offers refused for QoS (DDS REQUESTED_INCOMPATIBLE_QOS)
    incompatible_policy: str | None = None  # the last refused policy, e.g. "reliability"
    history_full: int = 0  # takes that found our keep-last history full: samples may have
    # been overwritten before we took them (DDS reports no count for that)
    seq_lost: int = 0  # holes in the writers' sequence numbers (drivers.ros2.seqgaps)
    exact: bool = False  # True: seq_lost is the middleware's whole loss on this reader, so
    # neither ``lost`` (SAMPLE_LOST, the same samples) nor the stamp-gap estimate is added


class ReaderRefused(DeviceError):
    """The middleware refused a reader for one topic; the session (and every other topic)
    goes on, the driver quarantines that topic alone."""


class TransportSink(Protocol):
    """What the driver gives a transport: where discoveries, samples and ticks go."""

    def publication(self, pub: Publication) -> None:
        """A publication appeared, changed or (``alive=False``) went away."""
        ...

    def samples(self, topic: str, batch: RawBatch) -> None:
        """Raw samples arrived on the reader opened for ``topic``."""
        ...

    def tick(self, now_mono_ns: int) -> None:
        """Housekeeping (staleness, status): called at least every ``poll_ms`` while running."""
        ...


class Ros2Transport(Protocol):
    """A ROS 2 middleware binding: discovery, readers of raw CDR, reader status."""

    name: str  # "cyclonedds" / "rclpy"

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Open a session and deliver to ``sink`` until ``stop`` is set, then close it.

        Raises DeviceError (or the middleware's error) when the session fails; the driver
        backs off and calls run() again. Readers do not survive a session: the sink opens
        them again when discovery reports the publications anew.
        """
        ...

    def open_reader(self, spec: ReaderSpec) -> None:
        """Start reading ``spec.topic`` (idempotent); only while :meth:`run` is running."""
        ...

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """Return the status of the reader of ``topic``, or None if there is none."""
        ...

    def publications(self) -> list[Publication]:
        """Return the publications currently known to discovery (alive ones)."""
        ...


_FACTORIES = {
    "cyclonedds": ("drivers.ros2.cyclone_transport", "CycloneTransport"),
    "rclpy": ("drivers.ros2.rclpy_transport", "RclpyTransport"),
}


def rclpy_available() -> bool:
    """Return True when ``import rclpy`` works in this process."""
    try:
        importlib.import_module("rclpy")
    except Exception:  # a broken ROS install raises more than ImportError
        return False
    return True


def in_ros_environment() -> bool:
    """True in a sourced ROS 2 environment (``AMENT_PREFIX_PATH`` set by its setup script)."""
    return bool(os.environ.get("AMENT_PREFIX_PATH"))


def resolve_transport(requested: str) -> str:
    """Return the transport to use: ``auto`` means rclpy in a sourced ROS 2 environment where
    rclpy imports, else cyclonedds.

    rclpy needs a Python package per message type; PyPI's ROS wheels alone carry the common
    ones but not crtk_msgs or the Open-RMF messages, which the cyclonedds transport reads
    from its own definitions. A sourced workspace is where those packages are built.
    """
    if requested == "auto":
        return "rclpy" if in_ros_environment() and rclpy_available() else "cyclonedds"
    if requested not in _FACTORIES:
        raise DeviceError(f"ros2 option transport: unknown transport {requested!r} "
                          f"(one of auto, {', '.join(_FACTORIES)})")
    return requested


def make_transport(options: Ros2Options, log: logging.Logger, *,
                   node: Any | None = None) -> Ros2Transport:
    """Build the transport named by ``options.transport`` (its module imported lazily).

    ``node``: an existing rclpy Node to read through (the ros_ws node shares its own, so a
    ROS process runs one DDS stack); only the rclpy transport accepts it. The constructors
    are ``CycloneTransport(options, log)`` and ``RclpyTransport(options, log, node=None)``.
    """
    name = "rclpy" if node is not None and options.transport == "auto" else (
        resolve_transport(options.transport))
    if node is not None and name != "rclpy":
        raise DeviceError(f"ros2 option transport: {name} cannot read through an rclpy node")
    if name == "rclpy" and not rclpy_available():
        raise DeviceError(f"ros2 option transport: rclpy does not import in this Python; "
                          f"install it: {ROS_EXTRA_HINT}")
    module_name, class_name = _FACTORIES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if options.transport == "auto" and node is None and name == "rclpy":
            log.warning("ros2 option transport auto: rclpy imports but the rclpy transport "
                        "does not (%s); using cyclonedds", err)
            return make_transport(options.model_copy(update={"transport": "cyclonedds"}), log)
        raise DeviceError(f"ros2 option transport: cannot load {module_name}: {err}") from err
    factory = getattr(module, class_name)
    if node is not None:
        return factory(options, log, node=node)
    return factory(options, log)
