"""StampGaps: samples missing between header stamps of a periodic topic, estimated."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ros2.gaps import GRID_RUN, WARMUP, StampGaps

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


def test_warmup_drops_are_backfilled_once_the_period_is_known() -> None:
    g = StampGaps(limit_ns=None)
    g.feed([0, 5 * P, 6 * P])  # 4 missing, unknown yet: no period
    assert g.missing == 0 and g.period_ns == 0
    g.feed([k * P for k in range(7, 7 + WARMUP)])
    assert g.period_ns == P and g.missing == 4  # backfilled, the gap not in the median
    g.feed([3 * P, (7 + WARMUP) * P])  # late sample: no interval, no loss
    assert g.missing == 4


def test_nothing_before_the_first_sample_is_counted() -> None:
    g = StampGaps(limit_ns=None)
    g.feed([k * P for k in range(100, 100 + WARMUP + 1)])  # 100 periods after "zero"
    assert g.period_ns == P and g.missing == 0


def _on_grid(g: StampGaps, start: int, n: int) -> int:
    g.feed([k * P for k in range(start, start + n)])
    return start + n


def test_long_gap_counts_only_on_the_grid_after_a_driver_stall() -> None:
    limit = 100 * MS
    stalled = StampGaps(limit_ns=limit)
    k = _on_grid(stalled, 0, WARMUP + GRID_RUN + 2)
    stalled.feed([(k + 49) * P], stalled=True)  # 500 ms on the grid: 49 overwritten
    assert stalled.missing == 49 and stalled.long_missing == 49
    paused = StampGaps(limit_ns=limit)
    k = _on_grid(paused, 0, WARMUP + GRID_RUN + 2)
    paused.feed([(k + 49) * P])  # the driver ran through it: the publisher paused
    assert paused.missing == 0
    off_grid = StampGaps(limit_ns=limit)
    k = _on_grid(off_grid, 0, WARMUP + GRID_RUN + 2)
    off_grid.feed([(k + 49) * P + P // 3], stalled=True)  # a new phase: a restart
    assert off_grid.missing == 0


def test_long_gap_needs_a_run_of_grid_intervals_before_it() -> None:
    g = StampGaps(limit_ns=100 * MS)
    k = _on_grid(g, 0, WARMUP + 1)
    g.feed([k * P + P // 5])  # jitter breaks the run
    k = _on_grid(g, k + 1, GRID_RUN - 2)
    g.feed([(k + 49) * P], stalled=True)
    assert g.missing == 0
    k += 49
    k = _on_grid(g, k + 1, GRID_RUN + 1)
    g.feed([(k + 49) * P], stalled=True)
    assert g.missing == 49


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


def test_heavy_loss_on_a_grid_keeps_the_period() -> None:
    # every other interval a gap of 2..9 periods: their median would be 5 periods or so
    ks, k = [], 0
    for i in range(400):
        k += 1 if i % 2 else 2 + i % 8
        ks.append(k)
    g = StampGaps(limit_ns=None)
    g.feed([0] + [k * P for k in ks])
    assert g.period_ns == P
    assert g.missing == ks[-1] - len(ks)  # exact, warm-up included


def test_jittered_stamps_keep_the_median_period() -> None:
    jitter = [0, 3, -2, 4, -4, 1, -1, 2] * 10  # percent of a period
    stamps = [k * P + j * P // 100 for k, j in enumerate(jitter)]
    g = StampGaps(limit_ns=None)
    g.feed(stamps)
    assert abs(g.period_ns - P) <= P // 20 and g.missing == 0
