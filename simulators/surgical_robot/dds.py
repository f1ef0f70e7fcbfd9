"""The simulator's own Cyclone DDS setup: loopback-pinned domains, QoS, domain-id picking.

Cyclone DDS configures a domain once per process (``Domain(id, xml)``); a participant
created before that falls back to Cyclone's default (multicast on every interface). So
the simulator configures every domain it uses first: one interface (``lo``), multicast
off, unicast discovery of 127.0.0.1, and matching Fast DDS / GurumDDS peers by type name
(``Compatibility/IgnoreTypeInformation``), as ROS 2 nodes match. If the domain was
already created in this process (a driver under test in the same process configured it),
the simulator's participants join it and a log line says so.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from cyclonedds.core import DDSException, Policy, Qos
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.util import duration
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("medgw.sim.robot")

MAX_DOMAIN_ID = 232
IGNORE_TYPE_INFORMATION = ("1.15", "1.17")
"""eProsima Fast DDS (1.15) and GurumDDS (1.17): Cyclone 11 rejects Fast DDS's XTypes type
objects of string sequences (JointState), so without this a Fast DDS reader never matches."""
_PRECONDITION_NOT_MET = -4  # DDS_RETCODE_PRECONDITION_NOT_MET: the domain exists already

_domains: dict[int, Domain | None] = {}
_domains_lock = threading.Lock()


class SimDdsError(RuntimeError):
    """Cyclone DDS refused to configure a domain or create a participant."""


class NetworkOptions(BaseModel):
    """Which interface the simulator's Cyclone DDS uses and how it finds peers (loopback)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interface: str = Field(default="lo", description="network interface name")
    peers: list[str] = Field(default_factory=lambda: ["127.0.0.1"],
                             description="unicast discovery peers")
    multicast: bool = Field(default=False, description="allow multicast discovery and data")
    max_participants: int = Field(default=50, ge=1, le=120,
                                  description="participant indexes probed per peer")
    ignore_type_information: list[str] = Field(
        default_factory=lambda: list(IGNORE_TYPE_INFORMATION),
        description="DDSI vendor ids (major.minor) whose XTypes type information Cyclone "
                    "ignores, matching by type name as ROS 2 does")
    config_xml: str | None = Field(default=None,
                                   description="complete CycloneDDS XML; overrides the above")

    @field_validator("ignore_type_information")
    @classmethod
    def _vendor_ids(cls, value: list[str]) -> list[str]:
        for vid in value:
            if not re.fullmatch(r"1\.[0-9]{1,2}", vid):
                raise ValueError(f"vendor id {vid!r} is not of the form 1.N")
        return value


class QosOptions(BaseModel):
    """The writer QoS of every simulator topic (ROS 2's default profile by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = Field(default=10, ge=1, le=1_000_000, description="keep-last history depth")


def loopback_config(options: NetworkOptions | None = None) -> str:
    """Return CycloneDDS XML: one interface, unicast peers, auto participant index."""
    opts = options or NetworkOptions()
    if opts.config_xml:
        return opts.config_xml
    peers = "".join(f"<Peer address={quoteattr(p)}/>" for p in opts.peers)
    return (
        "<CycloneDDS><Domain><General><Interfaces>"
        f"<NetworkInterface name={quoteattr(opts.interface)}/></Interfaces>"
        f"<AllowMulticast>{'true' if opts.multicast else 'false'}</AllowMulticast>"
        "</General><Discovery>"
        f"<Peers>{peers}</Peers><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{int(opts.max_participants)}</MaxAutoParticipantIndex>"
        f"</Discovery>{_compatibility(opts.ignore_type_information)}</Domain></CycloneDDS>"
    )


def _compatibility(vendor_ids: list[str]) -> str:
    if not vendor_ids:
        return ""
    return ("<Compatibility><IgnoreTypeInformation>" + ",".join(vendor_ids)
            + "</IgnoreTypeInformation></Compatibility>")


def pick_domain_id(rng: random.Random | None = None) -> int:
    """Return a random domain id for an isolated run (1..200, away from the default 0)."""
    return (rng or random.Random(os.getpid() ^ time.time_ns())).randint(1, 200)


def open_domain(domain_id: int, config: str) -> None:
    """Configure domain ``domain_id`` for this process once (joining one made by another)."""
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise SimDdsError(f"DDS domain id {domain_id} out of range 0..{MAX_DOMAIN_ID}")
    with _domains_lock:
        if domain_id in _domains:
            return
        try:
            _domains[domain_id] = Domain(domain_id, config)
        except DDSException as err:
            if err.code != _PRECONDITION_NOT_MET:
                raise SimDdsError(f"cannot configure DDS domain {domain_id}: {err}") from err
            log.info("DDS domain %d already exists in this process (configured by another "
                     "component); the simulator joins it", domain_id)
            _domains[domain_id] = None


def open_participant(domain_id: int, network: NetworkOptions | None = None) -> DomainParticipant:
    """Create a participant on a loopback-configured domain; SimDdsError if DDS refuses."""
    open_domain(domain_id, loopback_config(network))
    try:
        return DomainParticipant(domain_id)
    except DDSException as err:
        raise SimDdsError(f"cannot create DDS participant on domain {domain_id}: {err}"
                          ) from err


def make_qos(options: QosOptions, max_blocking_ms: int = 100) -> Qos:
    """Return the cyclonedds Qos for these options."""
    reliability = (Policy.Reliability.Reliable(duration(milliseconds=max_blocking_ms))
                   if options.reliability == "reliable" else Policy.Reliability.BestEffort)
    durability = (Policy.Durability.TransientLocal if options.durability == "transient_local"
                  else Policy.Durability.Volatile)
    return Qos(reliability, durability, Policy.History.KeepLast(options.depth))


def delete_entities(*entities: Any) -> None:
    """Delete DDS entities now, in the order given (children before their participant)."""
    for entity in entities:
        if entity is not None:
            entity.__del__()


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passed (bounded by time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
