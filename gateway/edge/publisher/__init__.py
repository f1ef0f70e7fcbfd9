"""MQTT publisher: reads the rings through its own cursor, spools, publishes QoS 1.

Batching: with ``publisher.bundle`` (the default) every scan (<= 50 ms apart, at once
after an event: the priority lane) takes every pending sample of each device and spools
it as one record, published as one message (bundling.py, gateway/wire/bundle.py): nothing
waits when the box is idle, and a busy box batches by itself (more piles up between
scans). Without bundles a stream is taken from its ring when it has ``max_batch_samples``
pending, when its oldest pending sample waited ``min(max_latency_ms,
spool.flush_interval_ms)``, or at once for event streams; with
``publisher.flush_when_idle`` also at the first scan that finds nothing appended since
the previous one. Every batch is
written to the disk spool first (gateway/edge/spool) and published from there in order;
it leaves the spool when an ingest worker confirmed that InfluxDB holds it (a small QoS 1 message on
``{prefix}_ctl/commit/{site}/{gateway}``, end to end); a record the broker acknowledged but
no worker confirmed within ``spool.confirm_timeout_s`` is sent again, so a message lost
inside the broker (SIGKILL) or with a dead ingest worker is delivered after all. With
``spool.confirm: false``, and until an ingest worker has announced itself at least once
(a deployment whose consumer is not the medgw ingest), the broker's PUBACK ends a record's
life after ``spool.replay_window_s`` instead; resends happen only while a worker is online.
While the broker is down the publisher keeps moving the rings into the spool, so a ring
never overruns because of the broker.

Loss window: a gateway killed with SIGKILL loses only samples still in the ring, i.e. at
most those appended in the last publisher tick (<= 50 ms) with bundles, else the last
``min(max_latency_ms, spool.flush_interval_ms)`` plus one tick; an OS crash can lose in
addition what was spooled since the last fsync (``spool.flush_interval_ms``). After a
restart, per-stream sequence numbers resume past everything handed out before
(gateway/edge/seqstate.py), so a loss shows as a gap.

When the broker comes back without our session (it restarted and lost its state), it may
have lost messages it had acknowledged but not yet delivered to an ingest worker: the
publisher waits (bounded by ``spool.ingest_wait_s``) until an ingest worker announces
itself on ``{prefix}_ctl/ingest/+/status`` and resends every record still in the spool,
including those acknowledged within ``spool.replay_window_s``, marked historical.

The number of unacknowledged publishes is bounded by ``mqtt.max_inflight``: paho's own
queue is unbounded, so without this bound a slow broker would grow memory without limit.

A replayed record (sent after a disconnect, a restart, a resend) is published in its
historical form, made in one place: gateway.wire.payload.as_historical.

Nothing silent: an unexpected exception in the publisher loop is logged with its
traceback, counted (``medgw_publisher_errors{where="loop"}``), shown by ``health()``
(``thread_alive`` false, ``last_error``) while it lasts, and the loop restarts after a
short backoff; an exception in an MQTT callback is caught at the transport
(gateway.wire.transport), counted (``where="callback:..."``) and shown the same way. A
spool that cannot write (disk full) applies its policy with every sample counted and
says so in ``health().spool_degraded``.

Modules: core.py (the MqttPublisher and its thread), bundling.py (a device's parts ->
one record), link.py (the broker connection's state, fed by the transport's thread),
views.py (counters, the health snapshot). The
transport is injectable (``transport=``), so the state machine is unit-tested with a fake
one (tests/unit/gateway/edge/test_publisher.py).
"""

from gateway.edge.publisher.core import MqttPublisher
from gateway.edge.publisher.views import PublisherHealth, StreamCounters, resolve_spool_dir

__all__ = ["MqttPublisher", "PublisherHealth", "StreamCounters", "resolve_spool_dir"]
