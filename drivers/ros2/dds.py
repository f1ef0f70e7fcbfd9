"""Cyclone DDS plumbing with ROS 2 conventions: domain config, QoS, raw CDR take and write.

A Cyclone DDS domain can be configured once per process and deleting it deletes every
participant in it, so domains are opened through :func:`open_domain`, which keeps one
configured Domain per id for the life of the process. Participants are always created
after that, so none ever falls back to Cyclone's default (multicast on every interface).
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import quoteattr

from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import DDSException, InstanceState, Policy, Qos, SampleState, ViewState
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.internal import SampleInfo
from cyclonedds.util import duration

from drivers.ros2.options import MAX_DOMAIN_ID as MAX_DOMAIN_ID
from drivers.ros2.options import ROS_DEFAULT_QOS as ROS_DEFAULT_QOS
from drivers.ros2.options import SENSOR_DATA_QOS as SENSOR_DATA_QOS
from drivers.ros2.options import NetworkOptions as NetworkOptions
from drivers.ros2.options import QosOptions as QosOptions
from gateway.errors import DeviceError

ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any

_domains: dict[int, Domain | None] = {}
_domains_lock = threading.Lock()
_PRECONDITION_NOT_MET = -4  # DDS_RETCODE_PRECONDITION_NOT_MET: Domain(id) exists already
_log = logging.getLogger("medgw.ros2.dds")


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
        "</Discovery>"
        f"{_compatibility(opts.ignore_type_information)}</Domain></CycloneDDS>"
    )


def _compatibility(vendor_ids: list[str]) -> str:
    if not vendor_ids:
        return ""
    return ("<Compatibility><IgnoreTypeInformation>" + ",".join(vendor_ids)
            + "</IgnoreTypeInformation></Compatibility>")


VENDORS = {
    (1, 1): "RTI Connext DDS", (1, 2): "OpenSplice", (1, 3): "OpenDDS",
    (1, 6): "CoreDX", (1, 10): "RTI Connext Micro", (1, 15): "eProsima Fast DDS",
    (1, 16): "Eclipse Cyclone DDS", (1, 17): "GurumDDS", (1, 18): "RustDDS",
    (1, 19): "ZRDDS", (1, 20): "Dust DDS",
}
"""DDSI-RTPS vendor ids (the OMG's list) of implementations a ROS 2 robot may run."""


def vendor_of(guid: str) -> str | None:
    """Return "name (1.N)" from a GUID whose prefix starts with the vendor id, else None.

    Fast DDS and Cyclone DDS put their vendor id in the first two bytes of every GUID
    prefix (the spec leaves the prefix to the vendor); RTI, for one, does not, so an
    unknown pair means "unknown", not "another vendor".
    """
    digits = guid.replace("-", "")
    if len(digits) < 4:
        return None
    try:
        major, minor = int(digits[0:2], 16), int(digits[2:4], 16)
    except ValueError:
        return None
    name = VENDORS.get((major, minor))
    return None if name is None else f"{name} ({major}.{minor})"


def pick_domain_id(rng: random.Random | None = None) -> int:
    """Return a random domain id for an isolated test run (1..200, away from the default 0)."""
    return (rng or random.Random(os.getpid() ^ time.time_ns())).randint(1, 200)


def open_domain(domain_id: int, config: str) -> None:
    """Configure domain ``domain_id`` for this process once; later calls reuse it."""
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise DeviceError(f"DDS domain id {domain_id} out of range 0..{MAX_DOMAIN_ID}")
    with _domains_lock:
        if domain_id in _domains:
            return
        try:
            _domains[domain_id] = Domain(domain_id, config)
        except DDSException as err:
            if err.code != _PRECONDITION_NOT_MET:
                raise DeviceError(f"cannot configure DDS domain {domain_id}: {err}") from err
            # the domain exists already: another component of this process (an in-process
            # simulator configures its own loopback domain) created it; join it, loudly
            _log.warning("DDS domain %d was already created in this process by another "
                         "component; the driver joins it with that component's configuration, "
                         "not its own network options", domain_id)
            _domains[domain_id] = None


def open_participant(domain_id: int, network: NetworkOptions | None = None) -> DomainParticipant:
    """Create a participant on a configured domain; DeviceError if DDS refuses."""
    open_domain(domain_id, loopback_config(network))
    try:
        return DomainParticipant(domain_id)
    except DDSException as err:
        raise DeviceError(f"cannot create DDS participant on domain {domain_id}: {err}") from err


def make_qos(options: QosOptions, max_blocking_ms: int = 100) -> Qos:
    """Return the cyclonedds Qos for these options."""
    reliability = (Policy.Reliability.Reliable(duration(milliseconds=max_blocking_ms))
                   if options.reliability == "reliable" else Policy.Reliability.BestEffort)
    durability = (Policy.Durability.TransientLocal if options.durability == "transient_local"
                  else Policy.Durability.Volatile)
    return Qos(reliability, durability, Policy.History.KeepLast(options.depth))


def offered_reliability(qos: Qos | None) -> str | None:
    """Return "reliable"/"best_effort" as offered in a discovered endpoint's QoS."""
    if qos is None:
        return None
    policy = qos[Policy.Reliability]
    if policy is None:
        return None
    return "best_effort" if policy == Policy.Reliability.BestEffort else "reliable"


def offered_durability(qos: Qos | None) -> str | None:
    """Return "volatile"/"transient_local"/... as offered in a discovered endpoint's QoS."""
    policy = None if qos is None else qos[Policy.Durability]
    if policy is None:
        return None
    return {Policy.Durability.Volatile: "volatile",
            Policy.Durability.TransientLocal: "transient_local",
            Policy.Durability.Transient: "transient",
            Policy.Durability.Persistent: "persistent"}.get(policy, str(policy))


def take_raw(reader: Any, max_samples: int) -> list[bytes]:
    """Take up to ``max_samples`` valid samples as raw CDR payloads (header included)."""
    ret = ddspy_take(reader._ref, ANY_STATE, max_samples)
    if isinstance(ret, int):
        raise DDSException(ret, "take failed")
    return [data for data, info in ret if _valid(info)]


class TriggerWait:
    """A WaitSet wait that also says *which* attached conditions triggered.

    ``WaitSet.wait`` of the Python binding returns only how many entities triggered, so a
    caller would have to try every reader. ``dds_waitset_wait`` also fills an array with
    the attach arguments of the triggered entities; ``WaitSet.attach`` passes the address
    of a per-entity ``c_int`` as that argument, so the address identifies the entity.
    Each attached condition carries an owner object, and :meth:`wait` returns the owners
    of the triggered ones. It returns None when it cannot tell (more triggered entities
    than reported, or a binding that attaches differently): the caller then tries all.
    """

    def __init__(self, waitset: Any) -> None:
        self.waitset = waitset
        self._owners: dict[int, Any] = {}  # attach-argument address -> owner
        self._exact = True  # False if an attach argument could not be found
        self._buf = (ctypes.c_void_p * 8)()

    def attach(self, condition: Any, owner: Any) -> None:
        """Attach ``condition`` to the WaitSet; :meth:`wait` reports it as ``owner``."""
        self.waitset.attach(condition)
        address = self._address(condition)
        if address is None:
            self._exact = False
        else:
            self._owners[address] = owner
        if len(self._buf) < len(self._owners) + 1:
            self._buf = (ctypes.c_void_p * (2 * len(self._owners) + 1))()

    def detach(self, condition: Any) -> None:
        """Detach ``condition`` from the WaitSet."""
        address = self._address(condition)
        if address is not None:
            self._owners.pop(address, None)
        self.waitset.detach(condition)

    def _address(self, condition: Any) -> int | None:
        for entity, value in getattr(self.waitset, "attached", ()):
            if entity is condition and isinstance(value, ctypes.c_int):
                return ctypes.addressof(value)
        return None

    def wait(self, timeout_ns: int) -> list[Any] | None:
        """Block up to ``timeout_ns`` (0: just look); return the triggered owners.

        An empty list means a timeout; None means "something triggered, try everything".
        """
        native = getattr(self.waitset, "_waitset_wait", None)
        if native is None:  # a binding without the private call: count only, try all
            return [] if self.waitset.wait(timeout_ns) == 0 else None
        buf = self._buf
        ret = native(self.waitset._ref, buf, len(buf), timeout_ns)
        if ret < 0:
            raise DDSException(ret, "waitset wait failed")
        if ret == 0:
            return []
        if ret > len(buf) or not self._exact:
            return None
        owners = self._owners
        found = [owners.get(buf[i] or 0) for i in range(ret)]
        return None if None in found else found


def _valid(info: SampleInfo) -> bool:
    return bool(info.valid_data)


def write_raw(writer: Any, payload: bytes) -> None:
    """Write one raw CDR payload (4-byte header included) through a DataWriter."""
    if len(payload) % 4:
        payload = payload + b"\x00" * (-len(payload) % 4)
    ret = ddspy_write(writer._ref, payload)
    if ret < 0:
        raise DDSException(ret, "write failed")


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passed (bounded by time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)


def delete_entities(*entities: Any) -> None:
    """Delete DDS entities now, in the order given (children before their participant)."""
    for entity in entities:
        if entity is not None:
            entity.__del__()
