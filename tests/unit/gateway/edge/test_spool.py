"""Unit tests of the disk spool, the sequence reservations and the ingest's gap tracking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.edge.seqstate import SeqRingStore, SeqState
from gateway.edge.spool import Spool, mark_historical
from gateway.model import SampleBatch, StreamSpec, make_batch
from gateway.ring import RingStore
from gateway.server.seqtrack import SeqTracker, gap_line
from gateway.wire.payload import encode

SPEC = StreamSpec("site", "dev", "s", ("a",), ("",), rate_hz=100.0)


def payload(first_seq: int, n: int) -> bytes:
    batch = make_batch(SPEC, np.arange(first_seq, first_seq + n) * 10, np.arange(n), 0, first_seq)
    return encode(batch, "gw")


def fill(spool: Spool, count: int, n: int = 10) -> list[bytes]:
    sent = []
    for i in range(count):
        body = payload(i * n, n)
        spool.append(SPEC.key, "t/x", body, i * n, n, historical=False)
        sent.append(body)
    return sent


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (message := spool.next_unsent()) is not None:
        out.append(message.payload)
        spool.ack(message.record_id)
    return out


def test_records_come_back_in_order_and_survive_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    sent = fill(spool, 20)
    first = spool.next_unsent()
    assert first is not None and first.payload == sent[0] and first.n == 10
    spool.ack(first.record_id)
    spool.flush()
    # no close(): the process "dies"; a new spool finds the 19 unacknowledged records
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 19
    replayed = drain(again)
    assert replayed == [mark_historical(p) for p in sent[1:]]
    assert all(orjson.loads(p)["historical"] is True for p in replayed)


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    sent = fill(spool, 5)
    spool.flush()
    segment = sorted(tmp_path.glob("seg-*.spool"))[-1]
    with open(segment, "ab") as out:
        out.write(b"\x40\x00\x00\x00garbage")  # a record header cut short by a crash
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 5
    assert drain(again) == [mark_historical(p) for p in sent]


def test_acked_records_are_deleted_from_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=4096, replay_window_s=0)
    fill(spool, 100)
    segments_before = len(list(tmp_path.glob("seg-*.spool")))
    assert segments_before > 2
    drain(spool)
    spool.flush()
    assert len(list(tmp_path.glob("seg-*.spool"))) == 1  # only the active segment remains
    assert spool.bytes == 0
    assert Spool(tmp_path, 1 << 20).recovered == 0


def test_a_segment_is_deleted_once_its_last_record_is_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=4096, replay_window_s=0)
    sent = fill(spool, 60)
    segments = sorted(tmp_path.glob("seg-*.spool"))
    assert len(segments) > 3
    for _ in range(30):  # acknowledge the first half only
        message = spool.next_unsent()
        assert message is not None
        spool.ack(message.record_id)
    spool.flush()
    left = sorted(tmp_path.glob("seg-*.spool"))
    assert segments[0] not in left and segments[-1] in left
    assert len(left) < len(segments)
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 30
    assert drain(again) == [mark_historical(p) for p in sent[30:]]


def test_has_unsent_follows_sends_and_rewinds(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    fill(spool, 3)
    assert spool.has_unsent() and spool.unsent() == 3
    drain(spool)
    assert not spool.has_unsent() and spool.unsent() == 0
    assert spool.rewind(include_acked=True) == 3
    assert spool.has_unsent() and spool.unsent() == 3


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_full_spool_drops_by_policy_and_counts_every_sample(tmp_path: Path, policy: str) -> None:
    drops: list[tuple[str, int, str]] = []
    one = len(payload(0, 10)) + 200
    spool = Spool(tmp_path, one * 5, policy=policy,  # type: ignore[arg-type]
                  on_drop=lambda k, n, r: drops.append((k, n, r)))
    sent = fill(spool, 12)
    assert spool.bytes <= spool.max_bytes
    kept = drain(spool)
    kept_seqs = [orjson.loads(p)["seq"] for p in kept]
    dropped_samples = sum(n for _, n, _ in drops)
    assert dropped_samples == 10 * (len(sent) - len(kept))
    assert spool.dropped[SPEC.key] == dropped_samples
    if policy == "drop_oldest":
        assert kept_seqs == [10 * i for i in range(12 - len(kept), 12)]
    else:
        assert kept_seqs == [10 * i for i in range(len(kept))]


def test_block_policy_refuses_without_counting(tmp_path: Path) -> None:
    one = len(payload(0, 10)) + 200
    spool = Spool(tmp_path, one * 3, policy="block")
    results = [spool.append(SPEC.key, "t", payload(i * 10, 10), i * 10, 10, False)
               for i in range(6)]
    assert results.count(False) >= 1 and results[0]
    assert spool.dropped == {}


def test_rewind_resends_acked_records_within_window(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, replay_window_s=60)
    sent = fill(spool, 4)
    assert len(drain(spool)) == 4
    assert spool.rewind(include_acked=True) == 4
    assert drain(spool) == [mark_historical(p) for p in sent]


def test_seq_numbers_resume_past_the_reservation(tmp_path: Path) -> None:
    store = SeqRingStore(64, SeqState(tmp_path / "seq.json"))
    ring = store.add_stream(SPEC)
    assert ring.start_seq == 0
    ring.append(np.arange(50, dtype=np.int64), np.zeros((50, 1)), np.zeros(50, np.uint8))
    store.seq_state.reserve([ring])
    # restart: the new ring starts after every number handed out before
    again = SeqRingStore(64, SeqState(tmp_path / "seq.json"))
    resumed = again.add_stream(SPEC)
    assert resumed.start_seq > 49
    assert resumed.start_seq == store.seq_state.reserved[SPEC.key]
    assert RingStore(64).add_stream(SPEC).start_seq == 0


def test_tracker_counts_duplicates_once_and_settles_gaps() -> None:
    tracker = SeqTracker()

    def batch(lo: int, n: int) -> SampleBatch:
        return make_batch(SPEC, np.arange(lo, lo + n) * 1000, np.zeros(n), 0, lo)

    assert tracker.observe(batch(0, 10)) == 10
    assert tracker.observe(batch(0, 10)) == 0  # redelivery
    assert tracker.observe(batch(5, 10)) == 5  # partial overlap
    assert tracker.observe(batch(30, 5)) == 5  # hole 15..29
    holes = tracker.due_holes(0.0)
    assert [(h.lo, h.hi) for h in holes] == [(15, 29)]
    gaps = tracker.settle(holes[0], present={20, 21})
    assert [(g.from_seq, g.to_seq, g.missing) for g in gaps] == [(15, 19, 5), (22, 29, 8)]
    assert tracker.due_holes(0.0) == []
    assert tracker.observe(batch(16, 1)) == 1  # a late sample of a settled hole is written
    line = gap_line(gaps[0]).decode()
    assert line.startswith("medgw_gap,device=dev,site=site,stream=s from_seq=15i,to_seq=19i")
    assert len({g.ts_ns for g in gaps}) == 2  # distinct points, no overwrite


def test_confirm_mode_keeps_records_until_committed_and_resends(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, confirm=True)
    sent = fill(spool, 3)
    assert len(drain(spool)) == 3  # all acknowledged by the "broker"
    spool.flush()
    assert spool.first_unacked() == 0  # none confirmed: all would be replayed after a crash
    assert spool.commit(SPEC.key, 0)
    assert not spool.commit(SPEC.key, 0)  # a second confirmation changes nothing
    assert spool.resend_unconfirmed(0.0) == 2
    again = drain(spool)
    assert again == [mark_historical(p) for p in sent[1:]]
    spool.commit(SPEC.key, 10)
    spool.commit(SPEC.key, 20)
    spool.flush()
    assert spool.bytes == 0 and spool.first_unacked() == 3
    assert Spool(tmp_path, 1 << 20, confirm=True).recovered == 0
