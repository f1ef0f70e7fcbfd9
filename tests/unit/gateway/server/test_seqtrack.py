"""Sequence identity in the ingest: (gateway, epoch, stream) keys duplicates and gaps."""

from __future__ import annotations

import numpy as np

from gateway.model import SampleBatch, StreamSpec, make_batch
from gateway.server.lineproto import gap_line
from gateway.server.seqtrack import SeqTracker

SPEC = StreamSpec("site", "dev", "js", ("a",), ("",))


def batch(first: int, n: int) -> SampleBatch:
    """n samples from seq ``first``, timestamps 1000 x seq."""
    seqs = np.arange(first, first + n)
    return make_batch(SPEC, seqs * 1000, np.ones((n, 1)), first_seq=first)


def test_spoofed_epoch_suppresses_nothing() -> None:
    tracker = SeqTracker()
    assert tracker.observe(batch(2000, 1000), "gw", epoch=666) == 1000  # the stranger first
    landed = sum(tracker.observe(batch(lo, 100), "gw", epoch=42) for lo in range(0, 3000, 100))
    assert landed == 3000


def test_two_gateways_with_the_same_names_both_land() -> None:
    tracker = SeqTracker()
    landed = {"a": 0, "b": 0}
    for lo in range(0, 3000, 100):
        landed["a"] += tracker.observe(batch(lo, 100), "edge-01", epoch=1)
        landed["b"] += tracker.observe(batch(lo, 100), "edge-01", epoch=2)  # a cloned box
    assert landed == {"a": 3000, "b": 3000}


def test_redelivery_in_the_same_epoch_is_a_duplicate() -> None:
    tracker = SeqTracker()
    assert tracker.observe(batch(0, 10), "gw", 7) == 10
    assert tracker.observe(batch(0, 10), "gw", 7) == 0
    assert tracker.observe(batch(5, 10), "gw", 7) == 5


def test_gap_across_a_restart_with_intact_state() -> None:
    """A new epoch whose numbers continue upward: the missing run is still a hole."""
    tracker = SeqTracker()
    tracker.observe(batch(0, 100), "gw", epoch=1)
    tracker.observe(batch(150, 50), "gw", epoch=2)  # restarted, 100..149 lost
    holes = tracker.due_holes(0.0)
    assert [(h.lo, h.hi, h.gateway, h.epoch) for h in holes] == [(100, 149, "gw", 2)]
    gaps = tracker.settle(holes[0], present={120})
    assert [(g.from_seq, g.to_seq, g.missing) for g in gaps] == [(100, 119, 20),
                                                                   (121, 149, 29)]
    assert tracker.due_holes(0.0) == []  # settled once


def test_restart_with_lost_state_is_no_gap_and_no_duplicate() -> None:
    """A new epoch starting again at 0 is neither taken for duplicates nor a gap."""
    tracker = SeqTracker()
    tracker.observe(batch(0, 100), "gw", epoch=1)
    assert tracker.observe(batch(0, 100), "gw", epoch=2) == 100
    assert tracker.due_holes(0.0) == []


def test_tracks_are_bounded() -> None:
    tracker = SeqTracker(max_tracks=10)
    for epoch in range(100):
        tracker.observe(batch(0, 1), "gw", epoch)
    assert len(tracker.tracks) == 10


def test_gap_line_escapes_and_carries_the_gateway() -> None:
    line = gap_line(SPEC, 3, 5, 99, gateway='g"w')
    assert line == (b'medgw_gap,device=dev,site=site,stream=js from_seq=3i,to_seq=5i,'
                    b'missing=3i,measurement="telemetry",gateway="g\\"w" 99\n')
