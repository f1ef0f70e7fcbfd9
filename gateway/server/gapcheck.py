"""Confirm sequence holes against InfluxDB and record what is really missing (``medgw_gap``).

A hole (see gateway/server/seqtrack.py) may have been written by another worker of the
shared subscription, so after the grace period the worker asks InfluxDB (InfluxQL, v1
backend) which sequence numbers of the hole's time window it holds; the rest is written
as gap points. With the v2 backend every hole left after the grace is a gap.
"""

from __future__ import annotations

import logging
import time

from gateway.errors import StoreError
from gateway.server.influx import InfluxWriter
from gateway.server.influxql import InfluxQL, quote_ident, quote_string
from gateway.server.lineproto import gap_line
from gateway.server.seqtrack import Gap, Hole, SeqTracker

log = logging.getLogger("medgw.ingest")


class GapChecker:
    """Settles due holes every ``grace_s / 2`` (at least 0.2 s) and writes the gaps."""

    def __init__(self, tracker: SeqTracker, writer: InfluxWriter, influxql: InfluxQL | None,
                 grace_s: float, retention_policy: str | None = None,
                 enabled: bool = True) -> None:
        self.tracker = tracker
        self.writer = writer
        self.influxql = influxql
        self.grace_s = grace_s
        self.retention_policy = retention_policy
        self.enabled = enabled
        self.gaps = 0
        self.missing = 0
        self._last = time.monotonic()

    @property
    def interval_s(self) -> float:
        """Return how often holes are looked at."""
        return max(self.grace_s / 2, 0.2)

    def check(self, force: bool = False) -> None:
        """Confirm holes older than the grace period and record the missing runs."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        gaps: list[Gap] = []
        for hole in self.tracker.due_holes(0.0 if force else self.grace_s):
            try:
                present = self.present(hole)
            except StoreError as err:
                log.warning("cannot check gap %s %d..%d yet: %s", hole.stream.key, hole.lo,
                            hole.hi, err)
                break
            gaps.extend(self.tracker.settle(hole, present))
        if gaps:
            self._record(gaps)

    def present(self, hole: Hole) -> set[int]:
        """Return the sequence numbers of ``hole`` InfluxDB already holds."""
        if self.influxql is None:
            return set()
        s = hole.stream
        source = quote_ident(s.measurement)
        if self.retention_policy:
            source = f"{quote_ident(self.retention_policy)}.{source}"
        query = (f'SELECT "seq" FROM {source} WHERE "site"={quote_string(s.site)} AND '
                 f'"device"={quote_string(s.device)} AND "stream"={quote_string(s.stream)} '
                 f"AND time > {hole.ts_before} AND time < {hole.ts_after}")
        present: set[int] = set()
        for row in self.influxql.rows(query):
            seq = row.get("seq")
            if isinstance(seq, int | float):
                present.add(int(seq))
        return present

    def _record(self, gaps: list[Gap]) -> None:
        body = b"".join(gap_line(g.stream, g.from_seq, g.to_seq, g.ts_ns, g.gateway)
                        for g in gaps)
        for gap in gaps:
            log.warning("sequence gap in %s: %d..%d (%d samples missing)", gap.stream.key,
                        gap.from_seq, gap.to_seq, gap.missing)
        try:
            self.writer.write(body, len(gaps))
        except StoreError as err:
            log.error("cannot record %d gaps: %s", len(gaps), err)
            return
        self.gaps += len(gaps)
        self.missing += sum(gap.missing for gap in gaps)
