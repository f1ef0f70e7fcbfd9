"""The cyclonedds transport: a Cyclone DDS participant of our own with ROS 2 wire conventions.

One session = one participant. Its thread waits on a WaitSet (data on any reader, or new
publications seen through DDS builtin discovery); after a wake-up it lets a batch gather
for the adaptive batch window (not when an event topic has data), then takes raw CDR
payloads, in batches of up to ``max_take``, from the readers whose conditions triggered
(only those) and hands them to the sink. Every ``poll_ms`` it ticks the sink.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import DDSException, ReadCondition, WaitSet
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from drivers.ros2 import dds
from drivers.ros2.batching import BatchWindow, batch_window_ns
from drivers.ros2.msgs import dds_topic_name, idl_type, ros_topic_name, ros_type_name
from drivers.ros2.options import Ros2Options
from drivers.ros2.transport import (
    Publication,
    RawBatch,
    ReaderRefused,
    ReaderSpec,
    ReaderStatus,
    TransportSink,
)
from gateway.errors import DeviceError

_DISCOVERY = "discovery"  # the WaitSet owner of the discovery reader's condition
QOS_POLICIES = {1: "user data", 2: "durability", 3: "presentation", 4: "deadline",
                5: "latency budget", 6: "ownership", 8: "liveliness", 10: "partition",
                11: "reliability", 12: "destination order", 13: "history",
                14: "resource limits", 23: "data representation",
                24: "type consistency enforcement"}
"""DDS QoS policy ids (DDS 1.4 and XTypes) as REQUESTED_INCOMPATIBLE_QOS names them."""


@dataclass
class _Reader:
    """One DDS reader of a session."""

    spec: ReaderSpec
    reader: Any
    dds_topic: Any
    condition: Any
    takes: int = 0  # wake-ups that took data from this reader
    history_full: int = 0  # wake-ups that took a whole history (depth samples) or more

    @property
    def urgent(self) -> bool:
        """Return True for event topics: taken at once, never held for the batch window."""
        return self.spec.urgent


class CycloneTransport:
    """Reads ROS 2 topics through a Cyclone DDS participant; creates readers only."""

    name = "cyclonedds"

    def __init__(self, options: Ros2Options, log: logging.Logger) -> None:
        self.options = options
        self.log = log
        self.window = BatchWindow(recover_s=options.batch_recover_s)
        self.sessions = 0
        self._session: _Session | None = None

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Open a participant and deliver to ``sink`` until ``stop`` is set."""
        participant = dds.open_participant(self.options.domain_id, self.options.network)
        try:
            session = _Session(self, participant, sink)
        except DDSException as err:
            dds.delete_entities(participant)
            raise DeviceError(f"cannot start DDS discovery: {err}") from err
        self._session = session
        self.sessions += 1
        try:
            session.loop(stop)
        except DDSException as err:
            raise DeviceError(f"DDS session failed: {err}") from err
        finally:
            self._session = None
            session.close()

    def open_reader(self, spec: ReaderSpec) -> None:
        """Create a reader for ``spec`` in the running session (idempotent)."""
        session = self._session
        if session is None:
            raise DeviceError("no DDS session running")
        session.open_reader(spec)

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """Return matched/lost/rejected/incompatible-QoS status of ``topic``'s reader."""
        session = self._session
        return None if session is None else session.status(topic)

    def publications(self) -> list[Publication]:
        """Return the publications discovery currently knows (alive ones)."""
        session = self._session
        return [] if session is None else list(session.pubs.values())


class _Session:
    """The entities of one participant and the wait/take loop over them."""

    def __init__(self, owner: CycloneTransport, participant: Any, sink: TransportSink) -> None:
        self.owner = owner
        self.options = owner.options
        self.participant = participant
        self.sink = sink
        self.waitset = WaitSet(participant)
        self.waiter = dds.TriggerWait(self.waitset)
        self.discovery = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
        self.disc_cond = ReadCondition(self.discovery, dds.ANY_STATE)
        self.waiter.attach(self.disc_cond, _DISCOVERY)
        self.readers: dict[str, _Reader] = {}
        self.pubs: dict[str, Publication] = {}

    def loop(self, stop: threading.Event) -> None:
        """Wait, gather, take, tick until ``stop`` is set."""
        poll_ns = int(self.options.poll_ms * 1e6)
        window = self.owner.window
        next_tick = time.monotonic_ns()
        while not stop.is_set():
            fired = self.waiter.wait(duration(nanoseconds=poll_ns))
            if fired != [] and window.current_ns and not _any_urgent(fired):
                # let a batch gather: the cost is per wake-up and per topic batch
                stop.wait(window.current_ns / 1e9)
                fired = self.waiter.wait(0)
            if fired is None:  # cannot tell which: try every reader
                self._take(self.readers.values())
                self._take_discovery()
            elif fired:
                self._take(f for f in fired if f is not _DISCOVERY)
                if _DISCOVERY in fired:
                    self._take_discovery()
            now = time.monotonic_ns()
            if now >= next_tick:
                next_tick = now + poll_ns
                if window.calm(now):
                    self.owner.log.info("ros2: no reader under pressure for %.0f s; batch "
                                        "window now %.2f ms", window.recover_ns / 1e9,
                                        window.current_ns / 1e6)
                self.sink.tick(now)

    def _take(self, readers: Iterable[_Reader]) -> None:
        """Take everything the given readers hold and hand it to the sink."""
        max_take = self.options.max_take
        for r in readers:
            taken = 0
            while True:
                payloads = dds.take_raw(r.reader, max_take)
                if not payloads:
                    break
                taken += len(payloads)
                self.sink.samples(r.spec.topic, RawBatch(payloads, time.time_ns()))
                if len(payloads) < max_take:
                    break
            if not taken:
                continue
            r.takes += 1
            if taken >= r.spec.qos.depth and r.takes > 1:  # the first may be a backlog
                r.history_full += 1
            # the first take may hold a backlog (transient-local history): not a rate
            window = self.owner.window
            if (2 * taken >= r.spec.qos.depth and window.current_ns and not r.urgent
                    and r.takes > 1 and window.pressure(time.monotonic_ns())):
                self.owner.log.info("ros2: %s held %d of %d samples after one batch window; "
                                    "window now %.2f ms", r.spec.topic, taken,
                                    r.spec.qos.depth, window.current_ns / 1e6)

    def _take_discovery(self) -> None:
        for endpoint in self.discovery.take(N=64):
            key = str(endpoint.key)
            if endpoint.topic_name is None:  # disposed / unregistered: the writer is gone
                gone = self.pubs.pop(key, None)
                if gone is not None:
                    self.sink.publication(_replace_alive(gone))
                continue
            pub = _publication(endpoint, key)
            if pub is not None:
                self.pubs[key] = pub
                self.sink.publication(pub)

    def open_reader(self, spec: ReaderSpec) -> None:
        """Create topic, reader and read condition for ``spec``; ReaderRefused if DDS says no."""
        if spec.topic in self.readers:
            return
        qos = dds.make_qos(spec.qos)
        dds_topic = reader = None
        try:
            dds_topic = Topic(self.participant, dds_topic_name(spec.topic),
                              idl_type(spec.ros_type), qos=qos)
            reader = DataReader(self.participant, dds_topic, qos=qos)
            condition = ReadCondition(reader, dds.ANY_STATE)
        except (DDSException, ValueError, KeyError) as err:
            dds.delete_entities(reader, dds_topic)
            raise ReaderRefused(f"DDS refused a reader for {spec.topic} [{spec.ros_type}]: "
                                f"{err}") from err
        entry = _Reader(spec, reader, dds_topic, condition)
        self.readers[spec.topic] = entry
        self.waiter.attach(condition, entry)
        self.owner.window.set_base(batch_window_ns(self.options.batch_window_ms, (
            (r.spec.max_hold_ns, r.spec.qos.depth, r.spec.rate_hz)
            for r in self.readers.values())))

    def status(self, topic: str) -> ReaderStatus | None:
        """Return the DDS status of one reader (matched publications by GUID)."""
        entry = self.readers.get(topic)
        if entry is None:
            return None
        reader = entry.reader
        matched = reader.get_subscription_matched_status()
        incompatible = reader.get_requested_incompatible_qos_status()
        keys = frozenset(str(data.key) for data in (
            reader.get_matched_publication_data(h) for h in reader.get_matched_publications())
            if data is not None)
        return ReaderStatus(
            matched=int(matched.current_count), matched_total=int(matched.total_count),
            lost=int(reader.get_sample_lost_status().total_count),
            rejected=int(reader.get_sample_rejected_status().total_count),
            matched_keys=keys, incompatible_qos=int(incompatible.total_count),
            history_full=entry.history_full,
            incompatible_policy=QOS_POLICIES.get(int(incompatible.last_policy_id))
            if incompatible.total_count else None)

    def close(self) -> None:
        """Detach and delete every entity of the session, children first."""
        for r in self.readers.values():
            self.waiter.detach(r.condition)
        self.waiter.detach(self.disc_cond)
        entities: list[Any] = [r.condition for r in self.readers.values()]
        entities += [r.reader for r in self.readers.values()]
        entities += [r.dds_topic for r in self.readers.values()]
        dds.delete_entities(*entities, self.disc_cond, self.discovery, self.waitset,
                            self.participant)


def _publication(endpoint: Any, key: str) -> Publication | None:
    """Return the Publication of a discovered DCPSPublication sample (None: not ROS)."""
    topic = ros_topic_name(str(endpoint.topic_name))
    if topic is None:
        return None
    type_name = str(endpoint.type_name)
    try:
        ros_type: str | None = ros_type_name(type_name)
    except ValueError:
        ros_type = None
    qos = getattr(endpoint, "qos", None)
    participant = str(endpoint.participant_key)
    return Publication(topic=topic, ros_type=ros_type, type_name=type_name, key=key,
                       participant=participant, vendor=dds.vendor_of(participant),
                       reliability=dds.offered_reliability(qos),
                       durability=dds.offered_durability(qos))


def _replace_alive(pub: Publication) -> Publication:
    return dataclasses.replace(pub, alive=False)


def _any_urgent(fired: list[Any] | None) -> bool:
    return fired is not None and any(isinstance(f, _Reader) and f.urgent for f in fired)
