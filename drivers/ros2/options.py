"""Typed options of the ros2 driver (pydantic): topics, QoS, network, transport, batching.

No DDS library is imported here, so every transport (cyclonedds, rclpy) and the bag replay
share these models without pulling in the other's middleware.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.ros2.mapping import stream_name, type_mapping
from drivers.ros2.pipeline import TopicSettings

MAX_DOMAIN_ID = 232
TransportName = Literal["auto", "cyclonedds", "rclpy"]
IGNORE_TYPE_INFORMATION = ("1.15", "1.17")
"""Vendor ids (DDSI-RTPS, as the OMG assigns them) whose type information Cyclone ignores."""


class NetworkOptions(BaseModel):
    """Which interface Cyclone DDS uses and how it finds peers (loopback by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interface: str = Field(default="lo", description="network interface name")
    peers: list[str] = Field(default_factory=lambda: ["127.0.0.1"],
                             description="unicast discovery peers")
    multicast: bool = Field(default=False, description="allow multicast discovery and data")
    max_participants: int = Field(default=50, ge=1, le=120,
                                  description="participant indexes probed per peer")
    ignore_type_information: list[str] = Field(
        default_factory=lambda: list(IGNORE_TYPE_INFORMATION),
        description="DDSI vendor ids (major.minor, decimal) whose XTypes type information "
                    "Cyclone ignores, matching by type name as ROS 2 does: 1.15 eProsima Fast "
                    "DDS (Cyclone 11 rejects its type objects for string sequences, so a "
                    "JointState reader never matches), 1.17 GurumDDS. RTI Connext is 1.1, "
                    "which Cyclone 11.0 parses but never applies (it tests 1 < minor)")
    config_xml: str | None = Field(default=None,
                                   description="complete CycloneDDS XML; overrides the above")

    @field_validator("ignore_type_information")
    @classmethod
    def _vendor_ids(cls, value: list[str]) -> list[str]:
        for vid in value:
            if not re.fullmatch(r"1\.([1-9]|[12][0-9]|3[0-2])", vid):
                raise ValueError(f"vendor id {vid!r} is not 1.N with 1 <= N <= 32")
        return value


class QosOptions(BaseModel):
    """The subset of DDS QoS that matters for matching ROS 2 publishers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = Field(default=10, ge=1, le=1_000_000, description="keep-last history depth")


ROS_DEFAULT_QOS = QosOptions()
"""rmw's default profile: reliable, volatile, keep last 10."""
SENSOR_DATA_QOS = QosOptions(reliability="best_effort", depth=5)
"""rmw's sensor-data profile: best effort, volatile, keep last 5."""


class TopicOptions(BaseModel):
    """One explicitly configured topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^/?[A-Za-z_~{][A-Za-z0-9_/{}~]*$", description="ROS topic")
    type: str | None = Field(default=None, description="ROS type, e.g. sensor_msgs/msg/JointState;"
                             " taken from discovery when omitted")
    stream: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$",
                               description="stream name (default: topic with '/' -> '.')")
    rate_hz: float | None = Field(default=None, gt=0, description="nominal rate for staleness")
    qos: QosOptions | None = None

    @property
    def topic(self) -> str:
        """Return the topic with its leading slash."""
        return "/" + self.name.lstrip("/")


class Ros2Options(BaseModel):
    """Options of the ros2 driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain_id: int = Field(default=0, ge=0, le=MAX_DOMAIN_ID, description="ROS_DOMAIN_ID")
    transport: TransportName = Field(
        default="auto", description="how to read DDS: 'cyclonedds' (a Cyclone DDS participant "
        "of our own), 'rclpy' (rclpy subscriptions on the system's RMW; needs "
        "pip install 'medgw[ros]' or a ROS 2 install), 'auto' (rclpy in a sourced ROS 2 "
        "environment where it imports, else cyclonedds)")
    network: NetworkOptions = Field(default_factory=NetworkOptions)
    topics: list[TopicOptions] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list,
                                description="globs over discovered topics, e.g. /PSM*/measured_*")
    exclude: list[str] = Field(default_factory=list, description="globs of topics to ignore")
    qos: QosOptions = Field(default_factory=lambda: QosOptions(depth=100),
                                description="reader QoS (reliable volatile by default)")
    match_offered_reliability: bool = Field(
        default=True, description="read best-effort publishers (sensor-data QoS) best-effort")
    default_rate_hz: float = Field(default=100.0, gt=0)
    stale_periods: float = Field(default=5.0, gt=0, description="silent periods before stale")
    stale_min_ms: float = Field(default=100.0, ge=0, description="never stale after less "
                                "silence than this: at 1 kHz, 5 periods is a scheduling hiccup")
    prismatic_joints: list[str] = Field(default_factory=lambda: ["outer_insertion", "insertion"])
    max_take: int = Field(default=256, ge=1, le=65536, description="samples per take call")
    poll_ms: float = Field(default=20.0, gt=0, le=1000, description="wait timeout, stale checks")
    batch_window_ms: float = Field(
        default=20.0, ge=0, le=100,
        description="after data arrives, wait this long so each take gets a batch per "
                    "topic: CPU is spent per wake-up and per topic batch, not per message "
                    "(a 100 Hz robot: 17 % of a core at 2 ms, 10 % at 20 ms), and the "
                    "publisher batches for max_latency_ms anyway. Event topics are taken at "
                    "once. Capped at a fifth of the shortest stale limit (stale_min_ms 100 "
                    "-> 20 ms) and a quarter of the shortest reader history (depth/rate_hz); "
                    "halved when a take finds a reader half full, doubled back after "
                    "batch_recover_s without. 0: take at once")
    batch_recover_s: float = Field(default=5.0, gt=0, description="a halved batch window "
                                   "doubles back (up to batch_window_ms) after this long "
                                   "without a reader found half full")
    unmatched_after_s: float = Field(
        default=3.0, gt=0, description="a publication discovery shows on a wanted topic that "
        "no reader matched after this long is reported (warning, metric, device degraded); "
        "so is an explicit topic that delivered nothing for this long (at least 5 periods)")
    max_robots: int = Field(
        default=64, ge=1, le=10_000, description="Open-RMF: robots (over every fleet), doors "
        "or lifts read per topic; one beyond is refused with a log line and counted")
    max_source_gap: int = Field(
        default=100_000, ge=1, description="Open-RMF: a RobotState.seq jump larger than this "
        "is a restart of the numbering, not loss")
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _something_to_read(self) -> Ros2Options:
        if not self.topics and not self.patterns:
            raise ValueError("configure at least one of 'topics' or 'patterns'")
        for t in self.topics:
            if t.type is not None and type_mapping(t.type) is None:
                raise ValueError(f"topic {t.topic}: unmapped type {t.type!r}")
        return self


def topic_selected(options: Ros2Options, topic: str) -> bool:
    """Return True when ``topic`` is configured explicitly or matches a pattern, not excluded."""
    if any(fnmatch.fnmatchcase(topic, p) for p in options.exclude):
        return False
    explicit = any(t.topic == topic for t in options.topics)
    return explicit or any(fnmatch.fnmatchcase(topic, p) for p in options.patterns)


def topic_settings(options: Ros2Options, topic: str, ros_type: str,
                   live: bool = True) -> TopicSettings:
    """Resolve one topic's settings (stream name, rate, staleness) from the options.

    ``live=False`` (bag replay) disables stale detection: a bag is history.
    """
    mapping = type_mapping(ros_type)
    if mapping is None:
        raise ValueError(f"unmapped ROS type {ros_type!r}")
    explicit = next((t for t in options.topics if t.topic == topic), None)
    rate = explicit.rate_hz if explicit is not None and explicit.rate_hz else None
    stale: float | None = options.stale_periods if live else None
    if mapping.is_event and rate is None:
        stale = None  # events are aperiodic: silence is normal
    return TopicSettings(
        topic=topic, ros_type=mapping.ros_type,
        stream=explicit.stream if explicit is not None and explicit.stream else stream_name(topic),
        rate_hz=rate or options.default_rate_hz,
        stale_periods=stale,
        stale_min_ns=int(options.stale_min_ms * 1e6),
        prismatic=frozenset(options.prismatic_joints),
    )
