"""What the publisher shows: per-stream counters, its /health snapshot, its spool directory."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import LoadedConfig


@dataclass
class StreamCounters:
    """Per-stream totals the publisher keeps for status output."""

    sent: int = 0
    acked: int = 0
    lost: int = 0
    messages: int = 0
    last_flush: float = field(default_factory=time.monotonic)
    seen_write: int = -1  # the ring's write position at the previous scan (flush_when_idle)


@dataclass(frozen=True)
class PublisherHealth:
    """The publisher as /health shows it."""

    thread_alive: bool  # the thread runs and its last loop iteration completed
    broker_connected: bool
    last_error: str | None
    spool_degraded: str | None  # why the spool cannot write or flush (disk full...)
    inflight: int
    loop_errors: int  # unexpected exceptions in the publisher loop (each one restarted it)
    callback_errors: int  # unexpected exceptions in the MQTT callbacks
    spool_records: int  # as of the last spool flush (about every spool.flush_interval_ms)
    spool_unconfirmed_samples: int
    samples_dropped: int  # by the spool policy, disk full included
    epoch: int
    spool_report: tuple[str, ...] = ()  # what spool recovery cut or skipped at start


def resolve_spool_dir(loaded: LoadedConfig) -> tuple[Path, bool]:
    """Return the spool directory and whether it is a private temporary one."""
    configured = loaded.config.spool.dir
    if configured is not None:
        return Path(configured), False
    return Path(tempfile.mkdtemp(prefix=f"medgw-spool-{loaded.config.gateway}-")), True
