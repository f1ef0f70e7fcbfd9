"""StaleClock: fresh -> stale after N silent periods (once), stale -> fresh on data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ros2.stale import StaleClock


def test_transitions() -> None:
    clock = StaleClock.for_rate(100.0, 5)
    assert clock.limit_ns == 50_000_000
    assert clock.check(10**12) is None  # never seen: not stale
    assert clock.seen(0) is None
    assert clock.check(50_000_000) is None  # exactly at the limit: still fresh
    assert clock.check(50_000_001) == 50_000_001
    assert clock.stale
    assert clock.check(90_000_000) is None  # reported once
    assert clock.seen(100_000_000) == 100_000_000  # recovery reports the silence
    assert not clock.stale
    assert clock.seen(110_000_000) is None


@given(rate=st.floats(0.1, 5000), periods=st.floats(0.5, 50),
       gaps=st.lists(st.integers(0, 10**10), min_size=1, max_size=30))
def test_stale_iff_gap_exceeds_limit(rate: float, periods: float, gaps: list[int]) -> None:
    clock = StaleClock.for_rate(rate, periods)
    now = 0
    clock.seen(now)
    for gap in gaps:
        went_stale = clock.check(now + gap)
        assert (went_stale is not None) == (gap > clock.limit_ns)
        now += gap
        recovered = clock.seen(now)
        assert (recovered is not None) == (gap > clock.limit_ns)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        StaleClock.for_rate(0, 5)
    with pytest.raises(ValueError):
        StaleClock(period_ns=10, periods=0)


def test_time_floor_keeps_fast_topics_from_flapping() -> None:
    fast = StaleClock.for_rate(1000.0, 5.0, min_ns=100_000_000)
    assert fast.limit_ns == 100_000_000  # 5 ms of silence at 1 kHz is not stale
    slow = StaleClock.for_rate(1.0, 5.0, min_ns=100_000_000)
    assert slow.limit_ns == 5_000_000_000  # the floor never shortens a slow topic's limit
