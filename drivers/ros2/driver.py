"""ROS 2 driver: subscribes over Cyclone DDS with ROS 2 wire conventions, never publishes.

A reader thread owns one participant. It waits on a WaitSet (data on any reader, or new
publications seen through DDS builtin discovery); after a wake-up it lets a batch gather
for the batch window (not when an event topic has data), then takes raw CDR payloads, in
batches of up to ``max_take``, from the readers whose conditions triggered (only those) and
hands them to the per-topic :class:`TopicPipeline`, which decodes them vectorized and
appends to the rings. Every ``poll_ms`` it also checks for stale topics and publisher
restarts. ``run()`` keeps that thread alive, recreating the participant with jittered
backoff if DDS fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import DDSException, ReadCondition, WaitSet
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from drivers.ros2 import dds
from drivers.ros2.mapping import type_mapping
from drivers.ros2.msgs import dds_topic_name, idl_type, ros_topic_name, ros_type_name
from drivers.ros2.options import Ros2Options, batch_window_ns, topic_selected, topic_settings
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from gateway.driver import DriverContext
from gateway.errors import DeviceError

_DISCOVERY = "discovery"  # the WaitSet owner of the discovery reader's condition


@dataclass
class _Subscription:
    """One DDS reader and the pipeline it feeds."""

    topic: str
    reader: Any
    dds_topic: Any
    condition: Any
    pipeline: TopicPipeline
    depth: int = 1  # reader history (keep last)
    total_matched: int = 0  # publications ever matched (DDS total_count)
    takes: int = 0  # wake-ups that took data from this reader

    @property
    def urgent(self) -> bool:
        """Return True for event topics: taken at once, never held for the batch window."""
        return self.pipeline.mapping.is_event


@dataclass
class _SessionState:
    subs: dict[str, _Subscription] = field(default_factory=dict)
    unmapped: set[str] = field(default_factory=set)
    window_ns: int = 0  # current batch window (batch_window_ns of the subscriptions)
    window_halved: int = 0  # times a nearly full reader halved it this session


class Ros2Driver:
    """Reads ROS 2 topics into rings; read-only (no DDS writer is ever created)."""

    def __init__(self, ctx: DriverContext, options: Ros2Options) -> None:
        self.ctx = ctx
        self.options = options
        self.health = HealthStream(ctx)
        self._explicit = {t.topic: t for t in options.topics}
        self._pipelines: dict[str, TopicPipeline] = {}  # survive participant re-creation
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.sessions = 0

    # -- asyncio side --------------------------------------------------------------------

    async def check(self, listen_s: float = 3.0) -> str:
        """Preflight for ``medgw check``: listen to DDS discovery briefly, count selected topics.

        Creates a participant and a discovery reader only: nothing is subscribed or written.
        """
        return await asyncio.to_thread(self._check_discovery, listen_s)

    def _check_discovery(self, listen_s: float) -> str:
        participant = dds.open_participant(self.options.domain_id, self.options.network)
        discovery = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
        seen: dict[str, str] = {}
        deadline = time.monotonic() + listen_s
        try:
            while time.monotonic() < deadline:
                for endpoint in discovery.take(N=64):
                    topic = ros_topic_name(str(endpoint.topic_name))
                    with contextlib.suppress(ValueError):
                        if topic is not None:
                            seen[topic] = ros_type_name(str(endpoint.type_name))
                time.sleep(0.05)
        finally:
            dds.delete_entities(discovery, participant)
        selected = sorted(t for t, ros_type in seen.items()
                          if self._wanted(t) and type_mapping(ros_type) is not None)
        where = f"DDS domain {self.options.domain_id}"
        if not selected:
            raise DeviceError(f"{where}: no publisher of a selected topic within {listen_s:.0f} s"
                              f" ({len(seen)} ROS topics seen): is the robot up, is the"
                              " domain id right?")
        return f"{where}: {len(selected)} selected topics published ({len(seen)} seen)"

    async def run(self) -> None:
        """Read until cancelled; on DDS failure recreate the participant with backoff."""
        delay = self.options.reconnect_min_s
        try:
            while True:
                self._error = None
                self._stop.clear()
                self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                                name=f"ros2-{self.ctx.device}")
                self._thread.start()
                while self._thread.is_alive():
                    await asyncio.sleep(0.05)
                err = self._error
                self.ctx.set_connected(False)
                self.ctx.log.warning("ros2 %s: DDS session ended (%s); retrying in %.1f s",
                                     self.ctx.device, err, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.options.reconnect_max_s)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the reader thread and wait for it (bounded)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(2.0, 5 * self.options.poll_ms / 1000))

    # -- reader thread -------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            self._session()
        except (DeviceError, DDSException, OSError) as err:
            self._error = err
        except Exception as err:  # keep the gateway alive whatever DDS or a decoder did
            self.ctx.log.exception("ros2 %s: reader thread failed", self.ctx.device)
            self._error = err

    def _session(self) -> None:
        participant = dds.open_participant(self.options.domain_id, self.options.network)
        waitset = WaitSet(participant)
        waiter = dds.TriggerWait(waitset)
        state = _SessionState()
        discovery = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
        disc_cond = ReadCondition(discovery, dds.ANY_STATE)
        waiter.attach(disc_cond, _DISCOVERY)
        self.sessions += 1
        try:
            for t in self._explicit.values():
                if t.type is not None:
                    self._subscribe(participant, waiter, state, t.topic, t.type, None)
            self._loop(participant, waiter, discovery, state)
        finally:
            for sub in state.subs.values():
                waiter.detach(sub.condition)
            waiter.detach(disc_cond)
            entities: list[Any] = [s.condition for s in state.subs.values()]
            entities += [s.reader for s in state.subs.values()]
            entities += [s.dds_topic for s in state.subs.values()]
            dds.delete_entities(*entities, disc_cond, discovery, waitset, participant)

    def _loop(self, participant: Any, waiter: dds.TriggerWait, discovery: Any,
              state: _SessionState) -> None:
        poll_ns = int(self.options.poll_ms * 1e6)
        next_check = time.monotonic_ns()
        while not self._stop.is_set():
            fired = waiter.wait(duration(nanoseconds=poll_ns))
            if fired != [] and state.window_ns and not _any_urgent(fired):
                # let a batch gather: the cost is per wake-up and per topic batch
                self._stop.wait(state.window_ns / 1e9)
                fired = waiter.wait(0)
            if fired is None:  # cannot tell which: try every reader
                self._take(state, state.subs.values())
                self._take_discovery(participant, waiter, state, discovery)
            elif fired:
                self._take(state, (f for f in fired if f is not _DISCOVERY))
                if _DISCOVERY in fired:
                    self._take_discovery(participant, waiter, state, discovery)
            now = time.monotonic_ns()
            if now >= next_check:
                next_check = now + poll_ns
                self._housekeeping(state, now)

    def _take(self, state: _SessionState, subs: Iterable[_Subscription]) -> None:
        """Take everything the given readers hold and feed it to their pipelines."""
        max_take = self.options.max_take
        for sub in subs:
            taken = 0
            while True:
                payloads = dds.take_raw(sub.reader, max_take)
                if not payloads:
                    break
                taken += len(payloads)
                sub.pipeline.ingest(payloads, time.time_ns(), time.monotonic_ns())
                if len(payloads) < max_take:
                    break
            if not taken:
                continue
            sub.takes += 1
            # the first take may hold a backlog (transient-local history): not a rate
            if 2 * taken >= sub.depth and state.window_ns and not sub.urgent and sub.takes > 1:
                self._halve_window(state, sub, taken)

    def _halve_window(self, state: _SessionState, sub: _Subscription, taken: int) -> None:
        """A reader was half full after one window: wait less, or keep-last may drop."""
        state.window_ns //= 2
        state.window_halved += 1
        self.ctx.log.info("ros2 %s: %s held %d of %d samples after one batch window; "
                          "window now %.1f ms", self.ctx.device, sub.topic, taken, sub.depth,
                          state.window_ns / 1e6)

    def _take_discovery(self, participant: Any, waiter: dds.TriggerWait, state: _SessionState,
                        discovery: Any) -> None:
        for endpoint in discovery.take(N=64):
            self._discovered(participant, waiter, state, endpoint)

    def _discovered(self, participant: Any, waiter: dds.TriggerWait, state: _SessionState,
                    endpoint: Any) -> None:
        topic = ros_topic_name(str(endpoint.topic_name))
        if topic is None or topic in state.subs or not self._wanted(topic):
            return
        try:
            ros_type = ros_type_name(str(endpoint.type_name))
        except ValueError:
            return
        explicit = self._explicit.get(topic)
        if explicit is not None and explicit.type is not None and explicit.type != ros_type:
            self.ctx.log.warning("ros2 %s: %s is published as %s, configured as %s",
                                 self.ctx.device, topic, ros_type, explicit.type)
            return
        if type_mapping(ros_type) is None:
            if topic not in state.unmapped:
                state.unmapped.add(topic)
                self.ctx.log.info("ros2 %s: ignoring %s (unmapped type %s)", self.ctx.device,
                                  topic, ros_type)
            return
        offered = dds.offered_reliability(getattr(endpoint, "qos", None))
        self._subscribe(participant, waiter, state, topic, ros_type, offered)

    def _wanted(self, topic: str) -> bool:
        return topic_selected(self.options, topic)

    def _subscribe(self, participant: Any, waiter: dds.TriggerWait, state: _SessionState,
                   topic: str, ros_type: str, offered: str | None) -> None:
        mapping = type_mapping(ros_type)
        assert mapping is not None
        qos = self._qos_for(topic, offered)
        dds_topic = Topic(participant, dds_topic_name(topic), idl_type(mapping.ros_type),
                          qos=dds.make_qos(qos))
        reader = DataReader(participant, dds_topic, qos=dds.make_qos(qos))
        condition = ReadCondition(reader, dds.ANY_STATE)
        pipeline = self._pipeline(topic, mapping.ros_type)
        sub = _Subscription(topic, reader, dds_topic, condition, pipeline, depth=qos.depth)
        state.subs[topic] = sub
        waiter.attach(condition, sub)
        state.window_ns = batch_window_ns(self.options.batch_window_ms, (
            (s.pipeline.clock.limit_ns if s.pipeline.clock is not None else None, s.depth,
             s.pipeline.settings.rate_hz) for s in state.subs.values()))
        if state.window_halved:
            state.window_ns >>= state.window_halved
        self.ctx.log.info("ros2 %s: subscribed %s [%s] %s/%s depth %d", self.ctx.device, topic,
                          ros_type, qos.reliability, qos.durability, qos.depth)

    def _qos_for(self, topic: str, offered: str | None) -> dds.QosOptions:
        explicit = self._explicit.get(topic)
        if explicit is not None and explicit.qos is not None:
            return explicit.qos
        qos = self.options.qos
        if (self.options.match_offered_reliability and offered == "best_effort"
                and qos.reliability == "reliable"):
            return qos.model_copy(update={"reliability": "best_effort"})
        return qos

    def _pipeline(self, topic: str, ros_type: str) -> TopicPipeline:
        existing = self._pipelines.get(topic)
        if existing is not None and existing.mapping.ros_type == ros_type:
            return existing
        mapping = type_mapping(ros_type)
        assert mapping is not None
        settings = topic_settings(self.options, topic, mapping.ros_type, live=True)
        pipeline = TopicPipeline(self.ctx, settings, mapping, self.health)
        self._pipelines[topic] = pipeline
        return pipeline

    def _housekeeping(self, state: _SessionState, now_mono_ns: int) -> None:
        any_matched = False
        rematched_gap: float | None = None
        for sub in state.subs.values():
            sub.pipeline.check_stale(now_mono_ns)
            status = sub.reader.get_subscription_matched_status()
            if status.total_count > sub.total_matched and sub.total_matched > 0:
                # a publisher appeared after an earlier one: a restart or a new node
                silent = sub.pipeline.silent_s(now_mono_ns)
                rematched_gap = max(rematched_gap or 0.0, silent)
            sub.total_matched = status.total_count
            any_matched = any_matched or status.current_count > 0
        if rematched_gap is not None:
            self.ctx.report_gap(rematched_gap)
        self.ctx.set_connected(any_matched)

    @property
    def pipelines(self) -> dict[str, TopicPipeline]:
        """Return the topic pipelines created so far (topic -> pipeline)."""
        return dict(self._pipelines)


def _any_urgent(fired: list[Any] | None) -> bool:
    return fired is not None and any(isinstance(f, _Subscription) and f.urgent for f in fired)
