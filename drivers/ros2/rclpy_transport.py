"""The rclpy transport: ROS 2 subscriptions on the system's own RMW that hand over raw CDR.

Each reader is ``create_subscription(..., raw=True)``: rclpy gives the serialized message
(4-byte encapsulation header included) to a callback that only queues it, so decoding,
the mapping table, quarantine and streams stay the driver's (:class:`TopicPipeline`).
Discovery is the ROS graph (``get_topic_names_and_types`` and
``get_publishers_info_by_topic``: node names, offered QoS, endpoint gids), polled every
``GRAPH_POLL_S``; the RMW is whatever ``RMW_IMPLEMENTATION`` (or rclpy's default, Fast
DDS) says, and ``ROS_AUTOMATIC_DISCOVERY_RANGE`` / ``ROS_STATIC_PEERS`` apply as for any
ROS node.

Threads: the callbacks run in an executor, the transport's :meth:`RclpyTransport.run`
thread drains their queues in batches and makes every sink call. Without a node the
transport makes its own: a private context on the ``domain_id`` option when the config
sets it (else the system's ``ROS_DOMAIN_ID``), a node, and rclpy's EventsExecutor where it
exists (:func:`make_executor`) spinning in a thread of its own. Inside a ROS process share
the process's node instead (:func:`share_node`, what the ros_ws node does): one DDS stack,
the node's context, domain and executor.

A raw subscription still needs the message's type support (a Python package of the type,
``crtk_msgs.msg`` for ``crtk_msgs/msg/OperatingState``): a type without one is refused
for that topic alone (:class:`ReaderRefused`, naming what to install); the cyclonedds
transport reads such types without any type support.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from drivers.ros2.options import Ros2Options, topic_selected
from drivers.ros2.rclpy_support import (
    EXECUTOR_ENV,
    gone,
    make_executor,
    message_type,
    policy_name,
    publication_of,
    qos_profile,
)
from drivers.ros2.seqgaps import WriterSeqs
from drivers.ros2.transport import (
    Publication,
    RawBatch,
    ReaderRefused,
    ReaderSpec,
    ReaderStatus,
    TransportSink,
)
from gateway.errors import DeviceError

GRAPH_POLL_S = 0.5  # ROS graph queries: cheap, but not free (a lock and a copy each)
SPIN_TIMEOUT_S = 0.05  # our executor's wait: bounds how long close() waits for it
QUEUE_FACTOR = 16  # a reader queues at most depth x this (+ max_take) samples, then counts loss
__all__ = ["EXECUTOR_ENV", "RclpyTransport", "make_executor", "message_type", "share_node",
           "shared_node"]

_shared_lock = threading.Lock()
_shared_node: Node | None = None


def share_node(node: Node | None) -> None:
    """Make every rclpy transport created from now on read through ``node`` (None: stop).

    The ros_ws node calls this before it builds the gateway, so the ros2 driver's
    subscriptions live on the node (one DDS stack, the node's domain and executor).
    """
    global _shared_node
    with _shared_lock:
        _shared_node = node


def shared_node() -> Node | None:
    """Return the node set by :func:`share_node`, if any."""
    with _shared_lock:
        return _shared_node


@dataclass
class _Reader:
    """One raw subscription, its queue and the middleware's counts."""

    spec: ReaderSpec
    capacity: int
    queue: deque[bytes] = field(default_factory=deque)
    subscription: Any = None
    matched: int = 0
    matched_total: int = 0
    lost: int = 0  # the middleware's message_lost total
    overflow: int = 0  # dropped here: the run thread fell behind by ``capacity``
    incompatible_qos: int = 0
    incompatible_policy: str | None = None
    seqs: WriterSeqs = field(default_factory=WriterSeqs)
    lost_from: int | None = None  # message_lost when the reader stopped being exact

    def status(self) -> ReaderStatus:
        """Return the cumulative status the driver reads.

        Which source wins: while every sample carries its writer's sequence number the
        holes in them are the loss, exactly (``seq_lost``); Fast DDS's SAMPLE_LOST
        (``message_lost``) counts some of the same samples, so it is left out then. Once a
        sample comes without one, SAMPLE_LOST counts again from that moment (to within a
        status interval) and the driver's stamp-gap estimate applies.
        """
        exact = self.seqs.exact
        if not exact and self.lost_from is None:
            self.lost_from = self.lost
        middleware = 0 if self.lost_from is None else self.lost - self.lost_from
        return ReaderStatus(matched=self.matched, matched_total=self.matched_total,
                            lost=middleware + self.overflow,
                            incompatible_qos=self.incompatible_qos,
                            incompatible_policy=self.incompatible_policy,
                            seq_lost=self.seqs.missing, exact=exact)


class RclpyTransport:
    """Reads ROS 2 topics with raw rclpy subscriptions; creates no publisher of its own."""

    name = "rclpy"

    def __init__(self, options: Ros2Options, log: logging.Logger, *,
                 node: Node | None = None) -> None:
        self.options = options
        self.log = log
        self._given_node = node
        self._session: _Session | None = None
        self.executor_kind: str | None = None  # our executor's class; None: the node's own

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Read until ``stop`` is set; raises DeviceError when rclpy fails."""
        node = self._given_node or shared_node()
        owned = _OwnedNode(self.options) if node is None else None
        try:
            if owned is not None:
                node = owned.node
                self.executor_kind = type(owned.executor).__name__
            assert node is not None
            self._warn_domain(node, owned is None)
            session = _Session(self, node, sink)
            self._session = session
            try:
                if owned is not None:
                    owned.start_spinning(session.wake)
                session.loop(stop, owned)
            finally:
                self._session = None
                session.close()
        finally:
            if owned is not None:
                owned.close()

    def open_reader(self, spec: ReaderSpec) -> None:
        """Subscribe to ``spec.topic`` (idempotent); ReaderRefused when rclpy cannot."""
        session = self._session
        if session is None:
            raise DeviceError("rclpy transport: open_reader outside run()")
        session.open_reader(spec)

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """Return the matched/lost counts of the reader of ``topic``, None if there is none."""
        session = self._session
        reader = session.readers.get(topic) if session is not None else None
        return reader.status() if reader is not None else None

    def publications(self) -> list[Publication]:
        """Return the publications on wanted topics the last graph poll found."""
        session = self._session
        return list(session.known.values()) if session is not None else []

    def _warn_domain(self, node: Node, shared: bool) -> None:
        domain = node.context.get_domain_id()
        explicit = "domain_id" in self.options.model_fields_set
        if shared and explicit and domain != self.options.domain_id:
            self.log.warning("ros2 rclpy transport: reading through the ROS node %s on domain "
                             "%d; the driver's domain_id %d does not apply", node.get_name(),
                             domain, self.options.domain_id)


class _OwnedNode:
    """A private rclpy context, node and executor thread for a transport without a node."""

    def __init__(self, options: Ros2Options) -> None:
        self.context = Context()
        # the option when the config sets it, else the system's own (ROS_DOMAIN_ID, or 0)
        domain = options.domain_id if "domain_id" in options.model_fields_set else None
        try:
            rclpy.init(context=self.context, domain_id=domain,
                       signal_handler_options=SignalHandlerOptions.NO)
            self.node = Node(_node_name(), context=self.context, enable_rosout=False,
                             start_parameter_services=False)
        except Exception as err:  # rclpy raises RCLError and plain RuntimeErrors
            self.context.try_shutdown()
            where = "ROS_DOMAIN_ID" if domain is None else f"domain {domain}"
            raise DeviceError(f"rclpy transport: cannot start a ROS node on {where}: "
                              f"{err}") from err
        self.executor = make_executor(self.context)
        self.executor.add_node(self.node)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start_spinning(self, wake: threading.Event) -> None:
        """Spin the executor in its own thread until :meth:`close`."""
        def spin() -> None:
            try:
                while not self._closing.is_set() and self.context.ok():
                    self.executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
            except ExternalShutdownException:
                pass
            except Exception as err:  # reported by the run thread as a DeviceError
                self.error = err
            wake.set()
        self._thread = threading.Thread(target=spin, daemon=True, name="ros2-rclpy-executor")
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Return True while the executor thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the executor thread, then destroy the node and shut the context down."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


_node_count = itertools.count(1)


def _node_name() -> str:
    """Return a node name unique on the graph (two nodes of one name confuse ROS tools)."""
    return f"medgw_reader_{os.getpid()}_{next(_node_count)}"


class _Session:
    """The readers and known publications of one :meth:`RclpyTransport.run`."""

    def __init__(self, owner: RclpyTransport, node: Node, sink: TransportSink) -> None:
        self.owner = owner
        self.options = owner.options
        self.node = node
        self.sink = sink
        self.readers: dict[str, _Reader] = {}
        self.known: dict[str, Publication] = {}
        self.wake = threading.Event()  # set by callbacks of urgent readers
        self.window_s = self.options.batch_window_ms / 1000

    def loop(self, stop: threading.Event, owned: _OwnedNode | None) -> None:
        """Deliver queued samples every batch window, tick and poll the graph until stop."""
        poll_ns = int(self.options.poll_ms * 1e6)
        next_tick = next_graph = time.monotonic_ns()
        while not stop.is_set():
            self.wake.wait(min(self.window_s, poll_ns / 1e9) if self.window_s > 0
                           else poll_ns / 1e9)
            self.wake.clear()
            self.deliver()  # before any raise below: what was received is not lost
            if owned is not None and not owned.alive:
                raise DeviceError(f"rclpy transport: executor stopped ({owned.error})")
            if not self.node.context.ok():
                raise DeviceError("rclpy transport: the ROS context was shut down")
            now = time.monotonic_ns()
            if now >= next_graph:
                next_graph = now + int(GRAPH_POLL_S * 1e9)
                self.poll_graph()
            if now >= next_tick:
                next_tick = now + poll_ns
                self.sink.tick(now)
        self.deliver()

    def deliver(self) -> None:
        """Hand every reader's queued payloads to the sink, ``max_take`` at a time."""
        max_take = self.options.max_take
        for topic, reader in list(self.readers.items()):
            queue = reader.queue
            while queue:
                n = min(len(queue), max_take)
                payloads = [queue.popleft() for _ in range(n)]
                self.sink.samples(topic, RawBatch(payloads, time.time_ns()))

    def poll_graph(self) -> None:
        """Report publications on wanted topics that appeared, changed or went away."""
        seen: dict[str, Publication] = {}
        try:
            for topic, _types in self.node.get_topic_names_and_types():
                if not topic_selected(self.options, topic):
                    continue
                for info in self.node.get_publishers_info_by_topic(topic):
                    pub = publication_of(topic, info)
                    seen[pub.key] = pub
        except Exception as err:  # the graph API raises rclpy's own errors
            raise DeviceError(f"rclpy transport: ROS graph query failed: {err}") from err
        for key, pub in seen.items():
            if self.known.get(key) != pub:
                self.known[key] = pub
                self.sink.publication(pub)
        for key in [k for k in self.known if k not in seen]:
            self.sink.publication(gone(self.known.pop(key)))

    def open_reader(self, spec: ReaderSpec) -> None:
        """Create the raw subscription of ``spec`` with event callbacks for its counts."""
        if spec.topic in self.readers:
            return
        msg_type = message_type(spec.ros_type)
        reader = _Reader(spec, capacity=spec.qos.depth * QUEUE_FACTOR + self.options.max_take)
        if spec.max_hold_ns is not None:
            self.window_s = min(self.window_s, spec.max_hold_ns / 1e9)
        try:
            reader.subscription = self.node.create_subscription(
                msg_type, spec.topic, self._callback(reader), qos_profile(spec.qos), raw=True,
                event_callbacks=_events(reader))
        except Exception as err:  # rclpy raises RCLError, InvalidTopicNameException, ...
            raise ReaderRefused(f"rclpy transport: cannot subscribe {spec.topic} "
                                f"[{spec.ros_type}]: {err}") from err
        self.readers[spec.topic] = reader
        self.owner.log.info("ros2 rclpy: subscribed %s [%s] %s/%s depth %d", spec.topic,
                            spec.ros_type, spec.qos.reliability, spec.qos.durability,
                            spec.qos.depth)

    def _callback(self, reader: _Reader) -> _OnMessage:
        urgent = reader.spec.urgent or self.window_s <= 0  # no window: deliver each at once
        return _OnMessage(reader, self.wake, urgent)

    def close(self) -> None:
        """Destroy the subscriptions (a shared node outlives the session)."""
        for topic, reader in self.readers.items():
            if reader.subscription is None:
                continue
            try:
                self.node.destroy_subscription(reader.subscription)
            except Exception as err:  # a context already shut down: nothing left to free
                self.owner.log.debug("ros2 rclpy: destroying the reader of %s: %s", topic, err)
        self.readers.clear()


_P = inspect.Parameter


class _OnMessage:
    """A raw subscription's callback with ``MessageInfo`` (the writer's sequence number).

    rclpy picks the two-argument form when the callback's signature binds two arguments
    and not one (``__signature__`` says so). The SingleThreadedExecutor then calls it with
    ``(payload, info)``; rclpy 9's EventsExecutor with the ``(payload, info)`` tuple as one
    argument (events_executor.cpp: ``callback(msg_info)``): both are accepted.
    """

    __signature__ = inspect.Signature([_P("payload", _P.POSITIONAL_ONLY),
                                       _P("info", _P.POSITIONAL_ONLY)])

    def __init__(self, reader: _Reader, wake: threading.Event, urgent: bool) -> None:
        self.reader, self.queue, self.wake, self.urgent = reader, reader.queue, wake, urgent
        self.seqs, self.capacity = reader.seqs, reader.capacity

    def __call__(self, *args: Any) -> None:
        """Queue one payload (count it as overflow when the queue is full)."""
        payload, info = args[0] if len(args) == 1 else args
        self.seqs.seen_info(info)  # also for an overflow: that is our loss, not a hole
        if len(self.queue) >= self.capacity:
            self.reader.overflow += 1
            return
        self.queue.append(payload)
        if self.urgent:
            self.wake.set()


def _events(reader: _Reader) -> SubscriptionEventCallbacks:
    def matched(info: Any) -> None:
        reader.matched, reader.matched_total = info.current_count, info.total_count

    def lost(info: Any) -> None:
        reader.lost = info.total_count

    def incompatible(info: Any) -> None:
        reader.incompatible_qos = info.total_count
        reader.incompatible_policy = policy_name(info.last_policy_kind)

    return SubscriptionEventCallbacks(matched=matched, message_lost=lost,
                                      incompatible_qos=incompatible)
