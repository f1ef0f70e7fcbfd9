"""The adaptive batch window halves under pressure and comes back when the pressure is gone."""

from __future__ import annotations

from drivers.ros2.batching import MIN_STEP_NS, BatchWindow

MS = 1_000_000
S = 1_000_000_000


def test_halves_under_pressure_and_doubles_back_after_calm() -> None:
    w = BatchWindow(recover_s=5.0)
    w.set_base(20 * MS)
    assert w.current_ns == 20 * MS
    assert w.pressure(0) and w.current_ns == 10 * MS
    assert w.pressure(1 * S) and w.current_ns == 5 * MS
    assert not w.calm(5 * S)  # only 4 s since the last pressure
    assert w.calm(6 * S) and w.current_ns == 10 * MS
    assert not w.calm(7 * S)  # one step per recover_s
    assert w.calm(11 * S) and w.current_ns == 20 * MS
    assert not w.calm(100 * S)  # back at the base: stays there
    assert (w.halvings, w.raises) == (2, 2)


def test_recovers_from_zero() -> None:
    w = BatchWindow(base_ns=MS, recover_s=1.0)
    t = 0
    while w.current_ns:
        t += 1
        w.pressure(t)
    assert w.current_ns == 0
    assert not w.pressure(t + 1)  # nothing left to halve
    assert w.calm(t + 1 + S) and w.current_ns == MIN_STEP_NS
    t2 = t + 1 + S
    while w.current_ns < MS:
        t2 += S
        assert w.calm(t2)
    assert w.current_ns == MS


def test_new_base_keeps_a_reduced_window_reduced() -> None:
    w = BatchWindow(recover_s=1.0)
    w.set_base(20 * MS)
    w.pressure(0)
    w.set_base(15 * MS)  # a new reader lowered the cap
    assert w.current_ns == 10 * MS
    w.set_base(4 * MS)
    assert w.current_ns == 4 * MS
    assert not w.calm(10 * S)  # at the (new) base
    rest = BatchWindow()
    rest.set_base(20 * MS)
    rest.set_base(8 * MS)
    assert rest.current_ns == 8 * MS
