"""Ring buffer properties against a plain-list reference model (wrap-around, overrun, readers)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.model import Quality, StreamKind, StreamSpec
from gateway.ring import RingStore, StreamRing, decimate

SPEC = StreamSpec("site", "dev", "s", ("a", "b"), ("m", "m"), rate_hz=100.0)
EVENTS = StreamSpec("site", "dev", "ev", ("code",), ("",), kind=StreamKind.EVENT)


def _rows(start: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seq = np.arange(start, start + n, dtype=np.int64)
    values = np.stack([seq * 1.5, -seq.astype(np.float64)], axis=1)
    return seq * 1000, values, (seq % 3).astype(np.uint8)


class RingVsReference(RuleBasedStateMachine):
    """Random appends and reads on a ring and on a Python list; both must agree exactly."""

    @initialize(capacity=st.integers(1, 40), first_seq=st.integers(0, 1000))
    def setup(self, capacity: int, first_seq: int) -> None:
        self.ring = StreamRing(SPEC, capacity, first_seq)
        self.first_seq = first_seq
        self.written: list[tuple[int, float, float, int]] = []  # every sample ever appended
        self.cursors = {"r1": first_seq, "r2": first_seq}
        self.lost = {"r1": 0, "r2": 0}

    @rule(n=st.integers(0, 90))
    def append_batch(self, n: int) -> None:
        ts, values, quality = _rows(len(self.written), n)
        first = self.ring.append(ts, values, quality)
        assert first == self.first_seq + len(self.written)
        for i in range(n):
            self.written.append((int(ts[i]), values[i, 0], values[i, 1], int(quality[i])))

    @rule()
    def append_one(self) -> None:
        ts, values, quality = _rows(len(self.written), 1)
        seq = self.ring.append_one(int(ts[0]), values[0], int(quality[0]))
        assert seq == self.first_seq + len(self.written)
        self.written.append((int(ts[0]), values[0, 0], values[0, 1], int(quality[0])))

    @rule(reader=st.sampled_from(["r1", "r2"]), max_n=st.one_of(st.none(), st.integers(1, 50)))
    def read(self, reader: str, max_n: int | None) -> None:
        cursor = self.cursors[reader]
        total = self.first_seq + len(self.written)
        oldest = max(self.first_seq, total - self.ring.capacity)
        expected_lost = max(0, oldest - cursor)
        start = max(cursor, oldest)
        stop = total if max_n is None else min(total, start + max_n)
        result = self.ring.read(cursor, max_n)
        assert result.lost == expected_lost
        assert result.next_seq == max(start, stop)
        if stop <= start:
            assert result.batch is None
        else:
            batch = result.batch
            assert batch is not None and batch.first_seq == start
            expected = self.written[start - self.first_seq: stop - self.first_seq]
            assert batch.timestamps_ns.tolist() == [row[0] for row in expected]
            assert batch.values[:, 0].tolist() == [row[1] for row in expected]
            assert batch.values[:, 1].tolist() == [row[2] for row in expected]
            assert batch.quality.tolist() == [row[3] for row in expected]
        self.cursors[reader] = result.next_seq
        self.lost[reader] += result.lost

    @invariant()
    def accounting(self) -> None:
        if not hasattr(self, "ring"):
            return
        # every sample is either delivered, still pending, or counted lost: never silent
        for reader, cursor in self.cursors.items():
            assert cursor - self.first_seq >= self.lost[reader]
        assert len(self.ring) == min(len(self.written), self.ring.capacity)


TestRingVsReference = RingVsReference.TestCase
TestRingVsReference.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_batch_larger_than_capacity_keeps_newest_and_reports_loss() -> None:
    ring = StreamRing(SPEC, 8)
    ts, values, quality = _rows(0, 20)
    ring.append(ts, values, quality)
    result = ring.read(0)
    assert result.lost == 12
    assert result.batch is not None
    assert result.batch.first_seq == 12
    assert result.batch.timestamps_ns.tolist() == ts[12:].tolist()


def test_append_allocates_no_new_arrays() -> None:
    ring = StreamRing(SPEC, 1000)
    buffers = (ring._ts.ctypes.data, ring._values.ctypes.data, ring._quality.ctypes.data)
    ts, values, quality = _rows(0, 700)
    for _ in range(5):
        ring.append(ts, values, quality)
    assert (ring._ts.ctypes.data, ring._values.ctypes.data, ring._quality.ctypes.data) == buffers


def test_independent_readers_via_store() -> None:
    store = RingStore(16)
    ring = store.add_stream(SPEC)
    fast, slow = store.reader("fast"), store.reader("slow")
    ts, values, quality = _rows(0, 10)
    ring.append(ts, values, quality)
    assert fast.read(ring).batch is not None
    ring.append(*_rows(10, 10))
    fast_second = fast.read(ring)
    slow_all = slow.read(ring)
    assert fast_second.lost == 0 and fast_second.batch is not None
    assert fast_second.batch.first_seq == 10
    assert slow_all.lost == 4 and slow.lost[SPEC.key] == 4
    assert slow_all.batch is not None and slow_all.batch.first_seq == 4


def test_events_only_listeners_hear_event_rings_present_and_future() -> None:
    store = RingStore(16)
    early = store.add_stream(SPEC)
    heard_all: list[str] = []
    heard_events: list[str] = []
    store.add_listener(lambda spec: heard_all.append(spec.stream))
    store.add_listener(lambda spec: heard_events.append(spec.stream), events_only=True)
    late_events = store.add_stream(EVENTS)
    early.append(*_rows(0, 2))
    early.append_one(5, np.zeros(2))
    late_events.append_one(6, np.zeros(1), text="door open")
    assert heard_all == ["s", "s", "ev"]
    assert heard_events == ["ev"]


def test_store_rejects_same_key_with_other_shape() -> None:
    store = RingStore(16)
    store.add_stream(SPEC)
    other = StreamSpec("site", "dev", "s", ("a",), ("m",))
    with pytest.raises(ValueError, match="already registered"):
        store.add_stream(other)


def test_event_text_survives_wrap() -> None:
    ring = StreamRing(EVENTS, 4)
    for i in range(6):
        ring.append_one(i, np.array([float(i)]), Quality.GOOD, text=f"state {i}")
    batch = ring.snapshot()
    assert batch is not None and batch.text == ("state 2", "state 3", "state 4", "state 5")


@given(
    n=st.integers(1, 300),
    window=st.integers(1, 50),
    bad_every=st.integers(2, 7),
)
@example(n=252, window=18, bad_every=4)  # a window's mean near zero: failed rtol=1e-12 alone
def test_decimate_matches_reference(n: int, window: int, bad_every: int) -> None:
    ring = StreamRing(SPEC, 512)
    ts = np.arange(n, dtype=np.int64) * 3
    values = np.stack([np.sin(ts / 7.0), np.cos(ts / 5.0)], axis=1)
    quality = np.where(np.arange(n) % bad_every == 0, Quality.BAD, Quality.GOOD).astype(np.uint8)
    ring.append(ts, values, quality)
    result = ring.decimate(window)
    groups: dict[int, list[np.ndarray]] = {}
    for t, row, q in zip(ts, values, quality, strict=True):
        if q <= Quality.UNCERTAIN:
            groups.setdefault(int(t) // window * window, []).append(row)
    assert result.window_start_ns.tolist() == sorted(groups)
    for i, start in enumerate(sorted(groups)):
        rows = np.array(groups[start])
        assert result.count[i] == len(rows)
        np.testing.assert_array_equal(result.minimum[i], rows.min(axis=0))
        np.testing.assert_array_equal(result.maximum[i], rows.max(axis=0))
        # Two ways of summing k floats differ by rounding of the order k * eps * max|x|:
        # the bound scales with the data's magnitude, not the mean's (a mean near zero
        # of values near 1 cannot meet a relative tolerance).
        atol = 4 * len(rows) * np.finfo(np.float64).eps * float(np.abs(rows).max())
        np.testing.assert_allclose(result.mean[i], rows.mean(axis=0), rtol=0, atol=atol)


def test_last_seconds_window() -> None:
    ring = StreamRing(SPEC, 1000)
    ts = np.arange(0, 10_000_000_000, 100_000_000, dtype=np.int64)  # 10 s at 10 Hz
    ring.append(ts, np.zeros((ts.size, 2)), np.zeros(ts.size, np.uint8))
    last = ring.last(2.0)
    assert last is not None
    assert last.timestamps_ns[0] == ts[-1] - 2_000_000_000
    assert len(last) == 21


def test_decimate_empty() -> None:
    result = decimate(None, 10, 2)
    assert result.count.size == 0 and result.mean.shape == (0, 2)
