"""``medgw check`` for a ros2 device: every wanted topic, discovered or not, matched or not.

The check runs the device's transport for a short window with a sink of its own: it reads
(never writes) the wanted topics of mapped types, counts what arrives, and then lists each
wanted topic with its type, publisher vendor, match state and the rate seen. It fails when
nothing wanted is published or a publication did not match (the same conditions the
running driver reports as degraded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from drivers.ros2.mapping import type_mapping
from drivers.ros2.options import Ros2Options, topic_selected
from drivers.ros2.transport import Publication, RawBatch, ReaderSpec, ReaderStatus, Ros2Transport
from drivers.ros2.watch import likely_reason
from gateway.errors import DeviceError


@dataclass
class TopicSeen:
    """What the check saw of one wanted topic."""

    topic: str
    configured_type: str | None = None
    pubs: dict[str, Publication] = field(default_factory=dict)
    read: bool = False
    refused: str | None = None
    samples: int = 0
    first_rx_ns: int | None = None
    last_rx_ns: int | None = None

    def rate_hz(self) -> float:
        """Return the receive rate over the samples seen (0 with fewer than two)."""
        if self.samples < 2 or self.first_rx_ns is None or self.last_rx_ns is None:
            return 0.0
        span = (self.last_rx_ns - self.first_rx_ns) / 1e9
        return (self.samples - 1) / span if span > 0 else 0.0


class CheckSink:
    """A TransportSink that opens readers for wanted topics and counts their samples."""

    def __init__(self, options: Ros2Options, transport: Ros2Transport) -> None:
        self.options = options
        self.transport = transport
        self.topics: dict[str, TopicSeen] = {
            t.topic: TopicSeen(t.topic, t.type) for t in options.topics
            if topic_selected(options, t.topic)}
        self._started = False
        self.lock = threading.Lock()

    def _start(self) -> None:
        self._started = True
        for seen in self.topics.values():
            if seen.configured_type is not None:
                self._open(seen, seen.configured_type)

    def _open(self, seen: TopicSeen, ros_type: str) -> None:
        if seen.read or seen.refused or type_mapping(ros_type) is None:
            return
        qos = next((t.qos for t in self.options.topics if t.topic == seen.topic and t.qos),
                   self.options.qos)
        try:
            self.transport.open_reader(ReaderSpec(seen.topic, ros_type, qos,
                                                  self.options.default_rate_hz, urgent=True))
            seen.read = True
        except DeviceError as err:
            seen.refused = str(err)

    def publication(self, pub: Publication) -> None:
        """Record a publication on a wanted topic and read it if its type is mapped."""
        if not self._started:
            self._start()
        if not pub.alive or not topic_selected(self.options, pub.topic):
            return
        with self.lock:
            seen = self.topics.setdefault(pub.topic, TopicSeen(pub.topic))
            seen.pubs[pub.key] = pub
        ros_type = seen.configured_type or pub.ros_type
        if ros_type is not None and (seen.configured_type is None
                                     or pub.ros_type == seen.configured_type):
            self._open(seen, ros_type)

    def samples(self, topic: str, batch: RawBatch) -> None:
        """Count samples (they are not decoded: the check only looks)."""
        with self.lock:
            seen = self.topics.get(topic)
            if seen is None:
                return
            seen.samples += len(batch.payloads)
            seen.first_rx_ns = seen.first_rx_ns or batch.receive_ns
            seen.last_rx_ns = batch.receive_ns

    def tick(self, now_mono_ns: int) -> None:
        """Nothing to do but start."""
        if not self._started:
            self._start()


def topic_line(seen: TopicSeen, status: ReaderStatus | None) -> tuple[str, bool]:
    """Return one topic's line and whether it is a problem (unmatched, refused)."""
    if not seen.pubs:
        return f"  {seen.topic}: not discovered (type {seen.configured_type or '?'})", False
    pub = next(iter(seen.pubs.values()))
    vendors = sorted({p.vendor or "unknown vendor" for p in seen.pubs.values()})
    head = (f"  {seen.topic} [{pub.ros_type or pub.type_name}] {len(seen.pubs)} publisher(s)"
            f" ({', '.join(vendors)})")
    if seen.refused:
        return f"{head}: refused: {seen.refused}", True
    if not seen.read:
        ros_type = pub.ros_type or pub.type_name
        if seen.configured_type and pub.ros_type != seen.configured_type:
            return f"{head}: NOT READ: configured as {seen.configured_type}", True
        return f"{head}: not read (unmapped type {ros_type})", False
    matched = status.matched if status is not None else 0
    keys = status.matched_keys if status is not None else None
    unmatched = [p for p in seen.pubs.values()
                 if (p.key not in keys if keys is not None else matched < len(seen.pubs))]
    if unmatched:
        reason = likely_reason(unmatched[0], status, None)
        return (f"{head}: UNMATCHED {len(unmatched)} of {len(seen.pubs)} ({reason}); "
                f"{seen.samples} samples"), True
    return f"{head}: matched, {seen.samples} samples, {seen.rate_hz():.1f} Hz", False


def run_check(options: Ros2Options, transport: Ros2Transport, listen_s: float) -> str:
    """Run ``transport`` with a :class:`CheckSink` for ``listen_s``; return the listing."""
    sink = CheckSink(options, transport)
    stop = threading.Event()
    errors: list[BaseException] = []
    statuses: dict[str, ReaderStatus | None] = {}

    def main() -> None:
        try:
            transport.run(sink, stop)
        except Exception as err:  # reported below, in the check's answer
            errors.append(err)

    thread = threading.Thread(target=main, daemon=True, name="ros2-check")
    thread.start()
    stop.wait(listen_s)
    statuses.update({t: transport.reader_status(t) for t in list(sink.topics)})
    stop.set()
    thread.join(timeout=max(5.0, listen_s))
    if errors:
        raise DeviceError(f"ros2 check: {transport.name} session failed: {errors[0]}")
    return _listing(options, transport, sink, statuses, listen_s)


def _listing(options: Ros2Options, transport: Ros2Transport, sink: CheckSink,
             statuses: dict[str, ReaderStatus | None], listen_s: float) -> str:
    lines, problems = [], 0
    for topic in sorted(sink.topics):
        line, bad = topic_line(sink.topics[topic], statuses.get(topic))
        lines.append(line)
        problems += bad
    published = [s for s in sink.topics.values() if s.pubs]
    where = f"{transport.name} on ROS domain {options.domain_id}"
    if not any(s.read for s in published):
        raise DeviceError(f"{where}: no publisher of a selected topic within {listen_s:.0f} s"
                          f" ({len(published)} wanted topics seen): is the robot up, is the"
                          " domain id right?\n" + "\n".join(lines))
    head = (f"{where}: {sum(s.read for s in published)} selected topics published, "
            f"{len(sink.topics)} wanted, listened {listen_s:.0f} s")
    if problems:
        raise DeviceError(f"{head}; {problems} problem(s):\n" + "\n".join(lines))
    return head + "\n" + "\n".join(lines)
