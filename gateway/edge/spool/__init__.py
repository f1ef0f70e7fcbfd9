"""The publisher's disk spool: a bounded, write-ahead disk FIFO of MQTT messages.

In the spirit of Telegraf's output buffer: the publisher ``add``s every batch it takes from
a ring *before* it is published, takes the next records to send with ``batch``, and reports
each one back: ``accept`` (the broker acknowledged it), ``reject`` (send it again, e.g. a
transient refusal), ``discard`` (refused for good: a counted drop) and ``confirm`` (an ingest
worker confirmed that InfluxDB holds it). A record leaves the spool when confirmed (with
confirmation required) or once acknowledged and past ``replay_window_s`` (without).
``resend_unconfirmed`` and ``resend_all`` put records back in the queue when the broker or
an ingest worker lost them. The spool is format-agnostic: it stores payload bytes and knows
only whether a record is a *replay* (``Outgoing.replay``); the sender turns a replay's
payload into its historical form (gateway.wire.payload.as_historical).

Bound: the retained records never exceed ``max_bytes``. When a new record does not fit,
acknowledged records are evicted first; then the policy applies: ``drop_oldest`` evicts
the oldest records not yet handed to MQTT, ``drop_newest`` refuses the new record,
``block`` refuses it and the caller keeps the samples in the ring (which may overrun).
A failed write (disk full, quota, I/O error) is the same case: acknowledged records are
evicted, ``drop_oldest`` drops unsent records until a segment file is freed, and if that
does not help the new record is refused (``drop_*``: counted with reason ``disk_full``).
Every dropped sample is counted per stream (``on_drop``) and logged; ``degraded`` says why
while the condition lasts.

Loss window: ``add`` hands the record to the kernel with ``write()`` at once, so a process
killed with SIGKILL loses nothing that reached the spool; an OS crash or power loss can lose
what was written after the last ``fsync``, at most ``flush_interval_s``.

Modules:

- buffer.py: the Spool and its transactional interface (add / batch / accept / reject /
  discard / confirm), the size bound and the full-spool and disk-full policies.
- index.py: the in-memory index of records and their states.
- records.py: the on-disk format (records, segment names, ``state.json``).
- segments.py: the segment files (append, read back, fsync, delete).
- losses.py: rate-limited loss warnings (one line, then a summary every 10 s).
- recovery.py: start-up recovery that keeps every intact record and reports the rest.
"""

from gateway.edge.spool.buffer import (
    DropListener,
    Outgoing,
    Spool,
    SpoolPolicy,
    SpoolStats,
)
from gateway.edge.spool.index import State
from gateway.edge.spool.segments import SpoolError, SpoolWriteError

__all__ = ["DropListener", "Outgoing", "Spool", "SpoolError", "SpoolPolicy", "SpoolStats",
           "SpoolWriteError", "State"]
