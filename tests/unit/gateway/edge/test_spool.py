"""Unit tests of the disk spool's transactional interface, bound and policies."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.edge.spool import Spool
from gateway.model import StreamSpec, make_batch
from gateway.wire.bundle import as_historical
from gateway.wire.payload import encode

SPEC = StreamSpec("site", "dev", "s", ("a",), ("",), rate_hz=100.0)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def payload(first_seq: int, n: int) -> bytes:
    batch = make_batch(SPEC, np.arange(first_seq, first_seq + n) * 10, np.arange(n), 0, first_seq)
    return encode(batch, "gw")


def fill(spool: Spool, count: int, n: int = 10) -> list[bytes]:
    sent = []
    for i in range(count):
        body = payload(i * n, n)
        spool.add(SPEC.key, "t/x", body, i * n, n, replay=False)
        sent.append(body)
    return sent


def drain(spool: Spool) -> list[bytes]:
    """Send everything (as the publisher does: replays in their historical form) and ack it."""
    out = []
    while batch := spool.batch(4):
        for message in batch:
            out.append(as_historical(message.payload) if message.replay else message.payload)
            spool.accept(message.record_id, message.attempt)
    return out


def test_records_come_back_in_order_and_survive_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    sent = fill(spool, 20)
    first = spool.batch(1)
    assert [m.payload for m in first] == [sent[0]] and first[0].n == 10
    assert not first[0].replay
    spool.accept(first[0].record_id)
    spool.flush()
    # no close(): the process "dies"; a new spool finds the 19 unacknowledged records
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 19 and again.report == []
    replayed = drain(again)
    assert replayed == [as_historical(p) for p in sent[1:]]
    assert all(orjson.loads(p)["historical"] is True for p in replayed)


def test_batch_respects_the_limit_and_the_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    sent = fill(spool, 5)
    first, second = spool.batch(2), spool.batch(10)
    assert [m.payload for m in first + second] == sent
    assert spool.batch(10) == [] and not spool.has_unsent()


def test_reject_sends_again_in_order_as_a_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    sent = fill(spool, 3)
    out = spool.batch(3)
    spool.accept(out[0].record_id, out[0].attempt)
    spool.reject(out[2].record_id, out[2].attempt)
    spool.reject(out[1].record_id, out[1].attempt)
    again = spool.batch(3)
    assert [m.payload for m in again] == sent[1:]
    assert all(m.replay for m in again) and [m.attempt for m in again] == [2, 2]


def test_a_late_answer_to_an_earlier_send_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    fill(spool, 1)
    old = spool.batch(1)[0]
    assert spool.resend_all() == 1
    spool.accept(old.record_id, old.attempt)  # the PUBACK of the send before the rewind
    assert spool.has_unsent()
    new = spool.batch(1)[0]
    spool.accept(new.record_id, new.attempt)
    assert not spool.has_unsent() and spool.unconfirmed_samples() == 0


def test_discard_is_a_counted_drop(tmp_path: Path) -> None:
    drops: list[tuple[str, int, str]] = []
    spool = Spool(tmp_path, 1 << 20, on_drop=lambda k, n, r: drops.append((k, n, r)))
    fill(spool, 2)
    out = spool.batch(2)
    spool.discard(out[0].record_id, "refused")
    assert drops == [(SPEC.key, 10, "refused")] and spool.dropped == {SPEC.key: 10}
    assert spool.records == 1


def test_acked_records_are_deleted_from_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=4096, replay_window_s=0)
    fill(spool, 100)
    segments_before = len(list(tmp_path.glob("seg-*.spool")))
    assert segments_before > 2
    drain(spool)
    spool.flush()
    assert len(list(tmp_path.glob("seg-*.spool"))) == 1  # only the active segment remains
    assert spool.held_bytes == 0 and spool.records == 0
    assert Spool(tmp_path, 1 << 20).recovered == 0


def test_a_segment_is_deleted_once_its_last_record_is_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=4096, replay_window_s=0)
    sent = fill(spool, 60)
    segments = sorted(tmp_path.glob("seg-*.spool"))
    assert len(segments) > 3
    for message in spool.batch(30):  # acknowledge the first half only
        spool.accept(message.record_id)
    spool.flush()
    left = sorted(tmp_path.glob("seg-*.spool"))
    assert segments[0] not in left and segments[-1] in left
    assert len(left) < len(segments)
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 30
    assert drain(again) == [as_historical(p) for p in sent[30:]]


def test_has_unsent_follows_sends_and_rewinds(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    fill(spool, 3)
    assert spool.has_unsent() and spool.unsent() == 3
    drain(spool)
    assert not spool.has_unsent() and spool.unsent() == 0
    assert spool.resend_all() == 3
    assert spool.has_unsent() and spool.unsent() == 3


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_full_spool_drops_by_policy_and_counts_every_sample(tmp_path: Path, policy: str) -> None:
    drops: list[tuple[str, int, str]] = []
    one = len(payload(0, 10)) + 200
    spool = Spool(tmp_path, one * 5, policy=policy,  # type: ignore[arg-type]
                  on_drop=lambda k, n, r: drops.append((k, n, r)))
    sent = fill(spool, 12)
    assert spool.held_bytes <= spool.max_bytes
    kept = drain(spool)
    kept_seqs = [orjson.loads(p)["seq"] for p in kept]
    dropped_samples = sum(n for _, n, _ in drops)
    assert len(kept) < len(sent)
    assert dropped_samples == 10 * (len(sent) - len(kept))
    assert spool.dropped[SPEC.key] == dropped_samples
    if policy == "drop_oldest":
        assert kept_seqs == [10 * i for i in range(12 - len(kept), 12)]
    else:
        assert kept_seqs == [10 * i for i in range(len(kept))]


def test_block_policy_refuses_without_counting(tmp_path: Path) -> None:
    one = len(payload(0, 10)) + 200
    spool = Spool(tmp_path, one * 3, policy="block")
    results = [spool.add(SPEC.key, "t", payload(i * 10, 10), i * 10, 10, False)
               for i in range(6)]
    assert results.count(False) >= 1 and results[0]
    assert spool.dropped == {}


def test_resend_all_includes_acked_records_within_window(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, replay_window_s=60)
    sent = fill(spool, 4)
    assert len(drain(spool)) == 4
    assert spool.resend_all() == 4
    assert drain(spool) == [as_historical(p) for p in sent]


def test_replay_window_is_measured_on_the_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, 1 << 20, replay_window_s=60, clock=clock)
    fill(spool, 3)
    drain(spool)
    spool.flush()
    assert spool.records == 3  # acknowledged, kept for a resend after a broker state loss
    clock.now = 60.0
    spool.flush()
    assert spool.records == 0 and spool.first_unacked() == 3


def test_confirm_mode_keeps_records_until_confirmed_and_resends(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, 1 << 20, confirm=True, clock=clock)
    sent = fill(spool, 3)
    assert len(drain(spool)) == 3  # all acknowledged by the "broker"
    spool.flush()
    assert spool.first_unacked() == 0  # none confirmed: all would be replayed after a crash
    assert spool.confirm(SPEC.key, 0)
    assert not spool.confirm(SPEC.key, 0)  # a second confirmation changes nothing
    clock.now = 29.0
    assert spool.resend_unconfirmed(30.0) == 0
    clock.now = 30.0
    assert spool.resend_unconfirmed(30.0) == 2 and spool.resent == 2
    again = drain(spool)
    assert again == [as_historical(p) for p in sent[1:]]
    spool.confirm(SPEC.key, 10)
    spool.confirm(SPEC.key, 20)
    spool.flush()
    assert spool.held_bytes == 0 and spool.first_unacked() == 3
    assert Spool(tmp_path, 1 << 20, confirm=True).recovered == 0


def test_require_confirmation_switches_what_ends_a_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, replay_window_s=0)
    fill(spool, 2)
    drain(spool)
    spool.require_confirmation(True)
    assert spool.confirming and spool.unconfirmed_samples() == 20
    spool.flush()
    assert spool.records == 2  # acknowledged is not enough any more
    spool.require_confirmation(False)
    spool.flush()
    assert spool.records == 0


def test_stats_snapshot_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    fill(spool, 4)
    stats = spool.stats()
    assert (stats.records, stats.unconfirmed_samples, stats.dropped_samples) == (4, 40, 0)
    assert stats.bytes == spool.held_bytes > 0 and stats.degraded is None


def test_a_steady_loss_is_one_line_then_a_summary(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    one = len(payload(0, 10)) + 200
    spool = Spool(tmp_path, one * 2, policy="drop_newest", clock=clock)
    with caplog.at_level(logging.WARNING, "medgw.spool"):
        fill(spool, 22)  # 2 fit, 20 are dropped
        clock.now = 10.0
        spool.flush()
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert spool.dropped == {SPEC.key: 200}
    assert len(lines) == 2
    assert "dropped 10 samples of site/dev/s (spool_full_newest)" in lines[0]
    assert "dropped 190 samples of site/dev/s in the last 10 s" in lines[1]
