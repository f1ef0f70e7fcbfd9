"""The ingest worker's /health report and /metrics (Prometheus), read from its live state.

Metrics are collected at scrape time from the worker's counters (no second bookkeeping on
the hot path). /health is ``ok`` only while the writer thread runs, the broker connection
is up and subscribed, and the last InfluxDB write did not fail; otherwise ``degraded``
with the reason, or ``failed`` once the writer died (the process then exits non-zero).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.server.ingest import Ingest

_COUNTERS = (  # (metric, IngestStats field, help)
    ("medgw_ingest_messages", "messages", "MQTT messages taken by the writer"),
    ("medgw_ingest_samples_written", "samples", "New samples written to InfluxDB"),
    ("medgw_ingest_lines_written", "lines", "Line-protocol points written"),
    ("medgw_ingest_writes", "writes", "Successful InfluxDB writes"),
    ("medgw_ingest_write_retries", "retries", "InfluxDB writes retried (transient errors)"),
    ("medgw_ingest_quarantined", "malformed", "Messages sent to the dead-letter topic"),
    ("medgw_ingest_duplicate_samples", "duplicates", "Samples already written, skipped"),
    ("medgw_ingest_gaps", "gaps", "Sequence gaps recorded in medgw_gap"),
    ("medgw_ingest_missing_samples", "missing", "Samples missing in recorded gaps"),
    ("medgw_ingest_stale_acks", "stale_acks",
     "Messages written but not acknowledged (received on an earlier connection)"),
)


class IngestCollector(Collector):
    """Exports one worker's counters and gauges."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Yield the worker's metrics as they are now."""
        ingest = self.ingest
        stats = ingest.stats
        for name, attr, text in _COUNTERS:
            family = CounterMetricFamily(name, text)
            family.add_metric([], float(getattr(stats, attr)))
            yield family
        failures = CounterMetricFamily("medgw_ingest_dead_letter_failures",
                                       "Dead letters that could not be published or stored")
        failures.add_metric([], float(ingest.loop.dead_letters.failures))
        yield failures
        inbox = ingest.loop.inbox
        for name, value, text in (
            ("medgw_ingest_queue_bytes", inbox.held_bytes,
             "Bytes received and not yet written and acknowledged"),
            ("medgw_ingest_queue_messages", len(inbox), "Messages waiting for the writer"),
            ("medgw_ingest_broker_connected", int(ingest.connected.is_set()),
             "1 while connected to the broker"),
            ("medgw_ingest_writer_alive", int(ingest.writer_alive()),
             "1 while the writer thread runs"),
            ("medgw_ingest_influxdb_ok", int(ingest.loop.store_error is None),
             "0 while InfluxDB writes fail"),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], float(value))
            yield gauge


def registry_for(ingest: Ingest) -> CollectorRegistry:
    """Return a registry holding the worker's metrics."""
    registry = CollectorRegistry()
    registry.register(IngestCollector(ingest))
    return registry


def health_report(ingest: Ingest) -> dict[str, Any]:
    """Return the worker's /health document."""
    problems: list[str] = []
    if ingest.failure is not None:
        problems.append(f"writer died: {ingest.failure}")
    elif not ingest.writer_alive():
        problems.append("writer thread not running")
    if not ingest.connected.is_set():
        problems.append(f"broker disconnected: {ingest.last_error or 'not connected yet'}")
    elif not ingest.subscribed.is_set():
        problems.append("not subscribed")
    if ingest.loop.store_error is not None:
        problems.append(f"InfluxDB failing: {ingest.loop.store_error}")
    if ingest.loop.dead_letters.last_failure is not None:
        problems.append(ingest.loop.dead_letters.last_failure)
    status = "failed" if ingest.failure else ("degraded" if problems else "ok")
    stats = ingest.stats
    return {
        "status": status,
        "problems": problems,
        "worker": ingest.client_id,
        "subscription": ingest.topic_filter,
        "queue": {"bytes": ingest.loop.inbox.held_bytes, "messages": len(ingest.loop.inbox),
                  "max_bytes": ingest.loop.inbox.max_bytes},
        "counts": {"messages": stats.messages, "samples": stats.samples,
                   "writes": stats.writes, "retries": stats.retries,
                   "quarantined": stats.malformed, "duplicates": stats.duplicates,
                   "gaps": stats.gaps, "missing": stats.missing},
        "gateways": dict(stats.gateways),
    }
