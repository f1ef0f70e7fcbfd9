"""Prometheus metrics of one gateway or ingest process (own registry, so tests can make many)."""

from __future__ import annotations

import threading
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

MetricT = TypeVar("MetricT", bound=MetricWrapperBase)
_SHARED_LOCK = threading.Lock()


def shared_counter(registry: CollectorRegistry, name: str, documentation: str,
                   labelnames: tuple[str, ...]) -> Counter:
    """Return the registry's counter ``name``, creating it on first use.

    For a metric two drivers write alike (``medgw_source_gap`` of VDA 5050 and Open-RMF):
    whichever registers first, the other finds it instead of a duplicate-name error.
    """
    with _SHARED_LOCK:
        # prometheus_client has no public lookup; _names_to_collectors is what register() uses
        found = registry._names_to_collectors.get(name)
        if found is None:
            return Counter(name, documentation, list(labelnames), registry=registry)
        if not isinstance(found, Counter) or tuple(found._labelnames) != labelnames:
            raise ValueError(f"metric {name} is registered with another type or labels")
        return found


class GatewayMetrics:
    """Counters and gauges every stage updates; exported on /metrics by the daemon."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        self.received = Counter("medgw_samples_received", "Samples appended to the ring",
                                ["stream"], registry=r)
        self.published = Counter("medgw_samples_published", "Samples acknowledged by the broker",
                                 ["stream"], registry=r)
        self.spooled = Counter("medgw_samples_spooled", "Samples written to the disk spool",
                               ["stream"], registry=r)
        self.dropped = Counter("medgw_samples_dropped", "Samples dropped on purpose (policy)",
                               ["stream", "reason"], registry=r)
        self.overrun = Counter("medgw_ring_overrun_samples",
                               "Samples a reader lost because the ring lapped it",
                               ["reader", "stream"], registry=r)
        self.malformed = Counter("medgw_malformed_messages",
                                 "Messages from a device or broker that were quarantined",
                                 ["source", "reason"], registry=r)
        self.stale = Gauge("medgw_stream_stale", "1 while a stream is stale", ["stream"],
                           registry=r)
        self.last_seen = Gauge("medgw_stream_last_seen_seconds",
                               "Unix time of the newest sample", ["stream"], registry=r)
        self.lag = Gauge("medgw_stream_lag_seconds",
                         "How far the publisher trails a stream, in sample time: newest "
                         "sample minus the oldest one not yet taken (0: caught up)",
                         ["stream"], registry=r)
        self.connected = Gauge("medgw_device_connected", "1 while the device session is up",
                               ["device"], registry=r)
        self.gap_seconds = Counter("medgw_device_gap_seconds",
                                   "Seconds of data missing because a device was unreachable",
                                   ["device"], registry=r)
        self.reconnects = Counter("medgw_device_reconnects", "Device sessions re-established",
                                  ["device"], registry=r)
        self.clock_offset = Gauge("medgw_clock_offset_seconds",
                                  "Receive time minus source timestamp of the newest sample",
                                  ["stream"], registry=r)
        self.spool_records = Gauge("medgw_spool_records",
                                   "Messages held in the disk spool (unsent, in flight or "
                                   "awaiting confirmation)", registry=r)
        self.spool_bytes = Gauge("medgw_spool_bytes", "Bytes held in the disk spool",
                                 registry=r)
        self.spool_unconfirmed = Gauge("medgw_spool_unconfirmed_samples",
                                       "Samples spooled but not yet confirmed stored",
                                       registry=r)
        self.events = Counter("medgw_events", "Event samples (priority lane)", ["stream"],
                              registry=r)
        self.seq_state_resets = Counter("medgw_seq_state_resets",
                                        "Starts whose seq.json was lost, unreadable or corrupt "
                                        "(sequence numbers restarted at 0 under a new epoch)",
                                        ["reason"], registry=r)
        self.seq_state_write_errors = Counter("medgw_seq_state_write_errors",
                                              "Failed writes of seq.json", registry=r)
        self.driver_restarts = Counter("medgw_driver_restarts",
                                       "Driver tasks restarted after they crashed", ["device"],
                                       registry=r)
        self.driver_running = Gauge("medgw_driver_running",
                                    "1 while a device's driver task runs (0: crashed, "
                                    "restarting, finished or dead)", ["device"], registry=r)
        self.unmatched_publications = Gauge(
            "medgw_unmatched_publications", "Publications discovery shows on a wanted topic "
            "that no reader of ours matched (type or QoS)", ["device", "topic"], registry=r)
        self.topic_silent = Gauge(
            "medgw_topic_never_delivered", "1 while a configured topic has delivered no "
            "sample since the session started", ["device", "topic"], registry=r)
        self.middleware_lost = Counter(
            "medgw_middleware_samples_lost", "Samples the middleware reports it lost or "
            "rejected before the driver saw them (DDS SAMPLE_LOST / SAMPLE_REJECTED)",
            ["device", "topic", "kind"], registry=r)
        self.publisher_errors = Counter(
            "medgw_publisher_errors", "Unexpected errors in the publisher thread or its MQTT "
            "callbacks (logged with a traceback; the loop restarts)", ["where"], registry=r)
        self.spool_write_errors = Counter(
            "medgw_spool_write_errors", "Spool writes that failed (disk full, quota, I/O); "
            "the spool policy applied", registry=r)
        self.spool_cut_records = Counter(
            "medgw_spool_recovery_cut_records", "Damaged or torn spool records recovery cut "
            "at start-up (the intact records around them are kept)", registry=r)

    def child(self, metric: MetricT, *labels: str) -> MetricT:
        """Return ``metric.labels(*labels)``, looked up once (``labels()`` takes a lock and
        builds a key on every call: too dear on the per-batch paths)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found  # type: ignore[return-value]
