"""Replay rosbag2 recordings (MCAP or sqlite3) into the rings through the ros2 driver's mapping.

Messages go through the same :class:`drivers.ros2.pipeline.TopicPipeline` the live driver
uses, so a replayed stream is identical to the live one: same stream names, fields and
quarantine rules, sample time = header stamp (the bag's receive time for types without a
header), receive time = the bag's log time. Stale detection is off: a bag is history.
Replays are idempotent downstream because InfluxDB overwrites identical series+timestamp.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError

from drivers.ros2.mapping import type_mapping
from drivers.ros2.options import Ros2Options, topic_selected, topic_settings
from drivers.ros2.pipeline import TopicPipeline
from drivers.ros2.rmf_pipeline import RmfPipeline
from gateway.config import LoadedConfig
from gateway.driver import DriverContext
from gateway.errors import ConfigError, MedgwError
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore, StreamRing

log = logging.getLogger("medgw.replay")


class BagError(MedgwError):
    """A bag cannot be opened or read (missing, unknown storage, corrupt)."""


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did; every message read is either appended, quarantined or skipped."""

    bag: str
    messages: int  # messages read on selected, mapped topics
    appended: dict[str, int]  # stream key -> samples appended to its ring
    quarantined: int
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why
    first_ns: int | None = None  # earliest sample time appended
    last_ns: int | None = None

    @property
    def total_appended(self) -> int:
        """Return the samples appended over all streams."""
        return sum(self.appended.values())


AfterFlush = Callable[[StreamRing], None]


def replay_bag(path: str | Path, target: DriverContext | RingStore, *,
               options: Ros2Options | None = None, site: str = "replay",
               device: str = "bag", metrics: GatewayMetrics | None = None,
               batch_size: int = 1024, after_flush: AfterFlush | None = None) -> ReplayResult:
    """Read a rosbag2 bag and append its mapped topics to the rings; return the counts.

    ``target`` is a DriverContext (its site, device, metrics and ring capacity are used) or
    a bare RingStore (then ``site``/``device`` name the streams). ``options`` select topics
    (patterns/topics/exclude) and per-topic stream names exactly as for the live driver;
    without options every topic with a mapped type is replayed. ``after_flush(ring)`` runs
    after each appended batch: block in it for back-pressure (e.g. until the publisher's
    reader caught up) when the bag is larger than the ring.
    """
    ctx = target if isinstance(target, DriverContext) else DriverContext(
        site, device, target, metrics or GatewayMetrics(), log, target.default_capacity)
    bag = Path(path)
    try:
        reader = Reader(bag)
        reader.open()
    except (ReaderError, FileNotFoundError, OSError, ValueError) as err:
        raise BagError(f"cannot open bag {bag}: {err}") from err
    try:
        return _replay(reader, bag, ctx, options, batch_size, after_flush)
    except (ReaderError, OSError) as err:
        raise BagError(f"cannot read bag {bag}: {err}") from err
    finally:
        reader.close()


def _replay(reader: Reader, bag: Path, ctx: DriverContext, options: Ros2Options | None,
            batch_size: int, after_flush: AfterFlush | None) -> ReplayResult:
    pipelines: dict[int, TopicPipeline] = {}
    by_topic: dict[str, TopicPipeline] = {}
    skipped: dict[str, str] = {}
    for conn in reader.connections:
        reason = _skip_reason(conn.topic, conn.msgtype, conn.ext, options)
        if reason:
            skipped[conn.topic] = reason
            continue
        pipeline = by_topic.get(conn.topic)
        if pipeline is None:
            mapping = type_mapping(conn.msgtype)
            assert mapping is not None
            settings = topic_settings(options or _ALL, conn.topic, mapping.ros_type, live=False)
            pipeline = (RmfPipeline(ctx, settings, mapping, None,
                                    max_entities=(options or _ALL).max_robots,
                                    max_source_gap=(options or _ALL).max_source_gap)
                        if mapping.fans_out else TopicPipeline(ctx, settings, mapping, None))
            by_topic[conn.topic] = pipeline
        pipelines[conn.id] = pipeline
    selected = [c for c in reader.connections if c.id in pipelines]
    messages = _feed(reader.messages(connections=selected) if selected else (), pipelines,
                     batch_size, after_flush)
    done = [p for p in by_topic.values() if p.received]
    appended = {p.ring.stream.key: p.received for p in done if p.ring is not None}
    for p in by_topic.values():  # Open-RMF topics fan out: count each robot's/door's ring
        if isinstance(p, RmfPipeline):
            appended.update(p.appended_by_stream())
    first = min((p.first_stamp_ns for p in done if p.first_stamp_ns is not None), default=None)
    last = max((p.max_stamp_ns for p in done if p.max_stamp_ns is not None), default=None)
    result = ReplayResult(str(bag), messages, appended,
                          sum(p.quarantined for p in by_topic.values()), skipped, first, last)
    log.info("replayed %s: %d messages, %d samples appended, %d quarantined, %d topics "
             "skipped", bag, messages, result.total_appended, result.quarantined, len(skipped))
    return result


_ALL = Ros2Options(patterns=["*"])


def _skip_reason(topic: str, msgtype: str, ext: object, options: Ros2Options | None) -> str:
    fmt = getattr(ext, "serialization_format", "cdr")
    if fmt != "cdr":
        return f"serialization format {fmt!r} (only cdr)"
    if type_mapping(msgtype) is None:
        return f"unmapped type {msgtype}"
    if options is not None and not topic_selected(options, topic):
        return "not selected by the device's topics/patterns"
    return ""


def _feed(messages: Iterable[tuple[object, int, bytes]], pipelines: dict[int, TopicPipeline],
          batch_size: int, after_flush: AfterFlush | None) -> int:
    """Batch messages per connection (order within a topic kept) into their pipelines."""
    pending: dict[int, tuple[list[bytes], list[int]]] = defaultdict(lambda: ([], []))
    count = 0
    for conn, timestamp, raw in messages:
        conn_id = int(getattr(conn, "id"))  # noqa: B009 - rosbags Connection
        payloads, stamps = pending[conn_id]
        payloads.append(bytes(raw))
        stamps.append(int(timestamp))
        count += 1
        if len(payloads) >= batch_size:
            _flush(pipelines[conn_id], payloads, stamps, after_flush)
    for conn_id, (payloads, stamps) in pending.items():
        _flush(pipelines[conn_id], payloads, stamps, after_flush)
    return count


def _flush(pipeline: TopicPipeline, payloads: list[bytes], stamps: list[int],
           after_flush: AfterFlush | None) -> None:
    if not payloads:
        return
    appended = pipeline.ingest(payloads, np.asarray(stamps, dtype=np.int64))
    payloads.clear()
    stamps.clear()
    if appended and after_flush is not None and pipeline.ring is not None:
        after_flush(pipeline.ring)


def replay_from_config(path: str | Path, loaded: LoadedConfig, store: RingStore,
                       metrics: GatewayMetrics | None = None,
                       device: str | None = None,
                       after_flush: AfterFlush | None = None) -> ReplayResult:
    """Replay a bag into ``store`` with the mapping of a ros2 device from a gateway config.

    ``device`` names the device; by default the config's only ros2 device is used. Streams
    get the config's site and that device's name, exactly as when the driver runs live.
    """
    ros2 = [d for d in loaded.config.devices if d.driver == "ros2"]
    if device is not None:
        ros2 = [d for d in ros2 if d.name == device]
    if len(ros2) != 1:
        names = ", ".join(d.name for d in loaded.config.devices if d.driver == "ros2") or "none"
        wanted = f"ros2 device {device!r}" if device else "exactly one ros2 device"
        raise ConfigError(f"replay needs {wanted}; ros2 devices in config: {names}",
                          str(loaded.path) if loaded.path else None, "devices")
    options = loaded.driver_options[ros2[0].name]
    assert isinstance(options, Ros2Options)
    ctx = DriverContext(loaded.config.site, ros2[0].name, store, metrics or GatewayMetrics(),
                        log, loaded.config.publisher.ring_capacity)
    # appends must stay well below the ring's capacity, or after_flush comes too late
    batch_size = max(1, min(1024, loaded.config.publisher.ring_capacity // 4))
    return replay_bag(path, ctx, options=options, after_flush=after_flush,
                      batch_size=batch_size)
