"""StampGaps: samples missing between header stamps of a periodic topic, estimated."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ros2.gaps import WARMUP, StampGaps

MS = 1_000_000
P = 10 * MS  # 100 Hz


def test_counts_missing_samples_after_warmup() -> None:
    g = StampGaps(limit_ns=100 * MS)
    stamps = [k * P for k in range(WARMUP + 1)]  # warm-up: the period is fixed
    g.feed(stamps)
    assert g.period_ns == P and g.missing == 0
    k = WARMUP
    g.feed([(k + 3) * P, (k + 4) * P])  # 2 missing
    g.feed([(k + 5) * P + P // 10, (k + 7) * P])  # jitter: none; then 1 missing
    assert g.missing == 3


def test_silence_longer_than_the_stale_limit_is_not_loss() -> None:
    g = StampGaps(limit_ns=100 * MS)
    g.feed([k * P for k in range(WARMUP + 1)])
    g.feed([WARMUP * P + 500 * MS])  # half a second: staleness reports this
    assert g.missing == 0


def test_nothing_before_the_period_is_known_and_out_of_order_is_ignored() -> None:
    g = StampGaps(limit_ns=None)
    g.feed([0, 5 * P, 6 * P])
    assert g.missing == 0 and g.period_ns == 0
    g.feed([k * P for k in range(7, 7 + WARMUP)])
    g.feed([3 * P, (7 + WARMUP) * P])  # late sample: no interval, no loss
    assert g.missing == 0


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(st.booleans(), min_size=WARMUP + 5, max_size=400),
       st.integers(1, 1000))
def test_drops_of_single_samples_are_counted_exactly(kept: list[bool], period_ms: int) -> None:
    period = period_ms * MS
    keep = [True] * (WARMUP + 1) + kept + [True]
    # a clean warm-up, then drops of any length: exact (stamps are exact multiples)
    stamps = [k * period for k, ok in enumerate(keep) if ok]
    g = StampGaps(limit_ns=None)
    for start in range(0, len(stamps), 7):
        g.feed(stamps[start:start + 7])
    assert g.missing == keep.count(False)
