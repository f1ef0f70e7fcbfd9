"""The driver's side of the transport seam: what to read, where samples go, what is wrong.

:class:`TopicRouter` is the :class:`~drivers.ros2.transport.TransportSink` every transport
delivers to. It picks the publications to read (explicit topics, patterns, the mapping
table, the offered QoS), feeds each topic's samples to its :class:`TopicPipeline`, and
keeps one bad topic from stalling the others: a topic whose stream the gateway refuses
(a name ingest would reject, joint names colliding after sanitizing), whose reader the
middleware refuses, or whose pipeline fails, is quarantined alone (counted through
``ctx.quarantine`` once, logged once, listed in the device's error) while the rest flow.
Matching, sample loss and silence are watched by :class:`~drivers.ros2.watch.TopicWatch`.
"""

from __future__ import annotations

import time

from drivers.ros2.mapping import type_mapping
from drivers.ros2.options import QosOptions, Ros2Options, topic_selected, topic_settings
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from drivers.ros2.rmf_pipeline import RmfPipeline
from drivers.ros2.transport import Publication, RawBatch, ReaderRefused, ReaderSpec, Ros2Transport
from drivers.ros2.watch import TopicWatch
from gateway.driver import DriverContext
from gateway.errors import StreamSpecError


class TopicRouter:
    """Receives discoveries, samples and ticks from a transport (one thread at a time)."""

    def __init__(self, ctx: DriverContext, options: Ros2Options, transport: Ros2Transport,
                 health: HealthStream, pipelines: dict[str, TopicPipeline]) -> None:
        self.ctx = ctx
        self.options = options
        self.transport = transport
        self.health = health
        self.pipelines = pipelines  # topic -> pipeline; survives sessions (streams stay)
        self.explicit = {t.topic: t for t in options.topics}
        self.quarantined: dict[str, str] = {}  # topic -> why; survives sessions
        self.reading: dict[str, QosOptions] = {}  # topics with a reader this session
        self.unmapped: set[str] = set()
        self.watch = TopicWatch(ctx, options, transport, health, self)
        self._fresh = True

    # -- session ---------------------------------------------------------------------

    def reset(self) -> None:
        """A new transport session is starting: begin it at the transport's first call."""
        self._fresh = True

    def _begin(self) -> None:
        """Open the explicit readers of known type (the transport runs by now)."""
        self._fresh = False
        self.reading.clear()
        self.watch.begin_session(time.monotonic_ns())
        for pipeline in self.pipelines.values():
            if isinstance(pipeline, RmfPipeline):  # what the last session missed is ours
                pipeline.rebase()
        for t in self.explicit.values():
            if t.type is not None and topic_selected(self.options, t.topic):
                self._read(t.topic, t.type, None)

    # -- TransportSink ---------------------------------------------------------------

    def publication(self, pub: Publication) -> None:
        """A publication appeared or went away: maybe read its topic."""
        if self._fresh:
            self._begin()
        if not topic_selected(self.options, pub.topic):
            return
        self.watch.publication(pub, time.monotonic_ns())
        if not pub.alive or pub.topic in self.quarantined:
            return
        explicit = self.explicit.get(pub.topic)
        if explicit is not None and explicit.type is not None and explicit.type != pub.ros_type:
            why = f"published as {pub.ros_type or pub.type_name}, configured as {explicit.type}"
            self.ctx.log.warning("ros2 %s: %s is %s", self.ctx.device, pub.topic, why)
            self.watch.not_read(pub, why, degrade=True)
            return
        if pub.topic in self.reading:
            return
        if pub.ros_type is None:
            self.watch.not_read(pub, f"{pub.type_name} is not a ROS 2 type name")
            return
        if type_mapping(pub.ros_type) is None:
            if pub.topic not in self.unmapped:
                self.unmapped.add(pub.topic)
                self.ctx.log.info("ros2 %s: ignoring %s (unmapped type %s)", self.ctx.device,
                                  pub.topic, pub.ros_type)
            self.watch.not_read(pub, f"unmapped type {pub.ros_type}")
            return
        self._read(pub.topic, pub.ros_type, pub.reliability)

    def samples(self, topic: str, batch: RawBatch) -> None:
        """Decode and append one reader's batch; a failing topic is quarantined alone."""
        if self._fresh:
            self._begin()
        if topic in self.quarantined:
            self._drop(topic, len(batch.payloads))
            return
        pipeline = self.pipelines.get(topic)
        if pipeline is None:
            return
        try:
            pipeline.ingest(batch.payloads, batch.receive_ns, time.monotonic_ns())
        except StreamSpecError as err:
            self.quarantine_topic(topic, "stream_refused", str(err), len(batch.payloads))
        except Exception as err:  # a decoder bug must cost one topic, not the device
            self.ctx.log.exception("ros2 %s: %s failed", self.ctx.device, topic)
            self.quarantine_topic(topic, "topic_failed", f"{type(err).__name__}: {err}",
                                  len(batch.payloads))

    def tick(self, now_mono_ns: int) -> None:
        """Staleness of every topic, then (at the status interval) the watch."""
        if self._fresh:
            self._begin()
        for topic in self.reading:
            pipeline = self.pipelines.get(topic)
            if pipeline is not None:
                pipeline.check_stale(now_mono_ns)
        self.watch.tick(now_mono_ns)

    # -- reading and quarantine --------------------------------------------------------

    def _read(self, topic: str, ros_type: str, offered: str | None) -> None:
        pipeline = self._pipeline(topic, ros_type)
        if pipeline is None:
            return
        qos = self._qos_for(topic, offered)
        clock = pipeline.clock
        spec = ReaderSpec(topic, pipeline.mapping.ros_type, qos, pipeline.settings.rate_hz,
                          urgent=pipeline.mapping.is_event,
                          max_hold_ns=None if clock is None else clock.limit_ns // 5)
        try:
            self.transport.open_reader(spec)
        except ReaderRefused as err:
            self.quarantine_topic(topic, "reader_refused", str(err))
            return
        self.reading[topic] = qos
        self.ctx.log.info("ros2 %s: subscribed %s [%s] %s/%s depth %d via %s", self.ctx.device,
                          topic, ros_type, qos.reliability, qos.durability, qos.depth,
                          self.transport.name)

    def _pipeline(self, topic: str, ros_type: str) -> TopicPipeline | None:
        existing = self.pipelines.get(topic)
        if existing is not None and existing.mapping.ros_type == ros_type:
            return existing
        mapping = type_mapping(ros_type)
        assert mapping is not None
        settings = topic_settings(self.options, topic, mapping.ros_type, live=True)
        try:  # refuse a stream name ingest would reject before reading a single sample
            self.ctx.stream_spec(settings.stream, ("value",), ("",))
        except StreamSpecError as err:
            self.quarantine_topic(topic, "stream_refused", str(err))
            return None
        pipeline = (RmfPipeline(self.ctx, settings, mapping, self.health,
                                max_entities=self.options.max_robots,
                                max_source_gap=self.options.max_source_gap)
                    if mapping.fans_out else TopicPipeline(self.ctx, settings, mapping,
                                                           self.health))
        self.pipelines[topic] = pipeline
        return pipeline

    def _qos_for(self, topic: str, offered: str | None) -> QosOptions:
        explicit = self.explicit.get(topic)
        if explicit is not None and explicit.qos is not None:
            return explicit.qos
        qos = self.options.qos
        if (self.options.match_offered_reliability and offered == "best_effort"
                and qos.reliability == "reliable"):
            return qos.model_copy(update={"reliability": "best_effort"})
        return qos

    def quarantine_topic(self, topic: str, reason: str, detail: str, dropped: int = 0) -> None:
        """Stop using one topic: counted once via ctx.quarantine, logged once, listed."""
        if topic in self.quarantined:
            self._drop(topic, dropped)
            return
        self.quarantined[topic] = f"{reason}: {detail}"
        self.ctx.quarantine(reason, f"{topic} quarantined, every other topic goes on: {detail}")
        self._drop(topic, dropped - 1)  # ctx.quarantine counted the first
        self.health.emit(time.time_ns(), "QUARANTINED", f"{topic} quarantined: {detail}")
        self.watch.refresh_error()

    def _drop(self, topic: str, n: int) -> None:
        if n > 0:
            m = self.ctx.metrics
            m.child(m.malformed, self.ctx.device, "topic_quarantined").inc(n)
