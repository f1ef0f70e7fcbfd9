"""headerId as a source sequence number: gaps, duplicates, resets."""

from __future__ import annotations

from drivers.vda5050.sequence import HeaderTracker, Outcome


def test_consecutive_ids_are_no_gap() -> None:
    tracker = HeaderTracker()
    assert [tracker.observe(i).outcome for i in range(3)] == [Outcome.FIRST, Outcome.NEXT,
                                                              Outcome.NEXT]
    assert tracker.missing == 0


def test_a_hole_is_a_gap_with_its_bounds() -> None:
    tracker = HeaderTracker()
    tracker.observe(10)
    seen = tracker.observe(14)
    assert (seen.outcome, seen.from_id, seen.to_id, seen.missing) == (Outcome.GAP, 11, 13, 3)
    assert tracker.observe(15).outcome is Outcome.NEXT
    assert (tracker.gaps, tracker.missing) == (1, 3)


def test_going_back_is_a_reset_not_a_huge_gap() -> None:
    tracker = HeaderTracker()
    for i in range(500, 510):
        tracker.observe(i)
    assert tracker.observe(0).outcome is Outcome.RESET
    assert tracker.observe(1).outcome is Outcome.NEXT
    assert (tracker.resets, tracker.missing) == (1, 0)


def test_a_jump_beyond_max_gap_is_a_reset() -> None:
    tracker = HeaderTracker(max_gap=1000)
    tracker.observe(5)
    assert tracker.observe(5 + 1000 + 1).outcome is Outcome.GAP  # exactly 1000 missing
    assert tracker.observe(10_000_000).outcome is Outcome.RESET
    assert tracker.missing == 1000


def test_duplicate_does_not_move_the_baseline() -> None:
    tracker = HeaderTracker()
    tracker.observe(3)
    assert tracker.observe(3).outcome is Outcome.DUPLICATE
    assert tracker.observe(4).outcome is Outcome.NEXT
    assert tracker.duplicates == 1


def test_rebase_starts_a_new_run() -> None:
    tracker = HeaderTracker()
    tracker.observe(3)
    tracker.rebase()
    assert tracker.observe(90).outcome is Outcome.FIRST
    assert tracker.missing == 0
