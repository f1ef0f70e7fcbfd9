"""Spool recovery at start-up: every intact record still to deliver, and a report of the rest.

Never a crash at start-up and never a silent loss: a damaged stretch of a segment is skipped
up to the next record whose header and CRC are valid (``cut N bytes / M records in seg-X``);
a stray entry named like a segment (``seg-5.spool``, a directory) is reported and left
alone; an unreadable segment is reported and skipped; a ``state.json`` that is malformed or
points past every record on disk is reported and recovery replays everything it finds
(duplicates are harmless downstream, a loss is not). New records go to a new segment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gateway.edge.spool.index import SpoolRecord
from gateway.edge.spool.records import list_segments, read_state, scan, segment_name

log = logging.getLogger("medgw.spool")


@dataclass
class Recovered:
    """What recovery found in a spool directory."""

    records: list[SpoolRecord] = field(default_factory=list)  # intact, still to deliver
    segments: list[int] = field(default_factory=list)  # holding records still needed
    unneeded: list[int] = field(default_factory=list)  # to delete
    next_id: int = 0
    cut_bytes: int = 0
    cut_records: int = 0
    problems: list[str] = field(default_factory=list)


def recover(directory: Path) -> Recovered:
    """Scan ``directory``; return every intact record at or after the first undelivered id."""
    out = Recovered()
    first_unacked, problem = read_state(directory)
    if problem:
        _problem(out, f"{problem}: replaying every intact record")
    segments, strays = list_segments(directory)
    for stray in strays:
        _problem(out, f"spool {directory}: skipped {stray}")
    scanned = []
    for segment, path in segments:
        try:
            data = path.read_bytes()
        except OSError as err:
            _problem(out, f"spool {path}: cannot be read ({err.strerror}): skipped")
            continue
        result = scan(data, segment)
        if result.cut_bytes:
            out.cut_bytes += result.cut_bytes
            out.cut_records += result.cut_records
            _problem(out, f"spool: cut {result.cut_bytes} bytes / {result.cut_records} records "
                     f"in {segment_name(segment)} (damaged or torn); kept "
                     f"{len(result.records)} intact records")
        scanned.append((segment, result.records))
        out.next_id = max(out.next_id, segment + 1,
                          *(r.record_id + 1 for r in result.records))
    if first_unacked is not None and first_unacked > out.next_id and scanned:
        _problem(out, f"spool {directory}: state.json first_unacked {first_unacked} is past "
                 f"every record on disk (last id {out.next_id - 1}): replaying them all")
        first_unacked = None
    start = first_unacked or 0
    out.next_id = max(out.next_id, start)
    for segment, records in scanned:
        kept = [r for r in records if r.record_id >= start]
        out.records.extend(SpoolRecord(r.record_id, segment, r.offset, r.size, r.key, r.topic,
                                       r.first_seq, r.n, replay=True) for r in kept)
        (out.segments if kept else out.unneeded).append(segment)
    if out.records:
        log.info("spool %s: %d records (%d samples) to replay", directory, len(out.records),
                 sum(r.n for r in out.records))
    return out


def _problem(out: Recovered, text: str) -> None:
    log.warning(text)
    out.problems.append(text)
