"""The adaptive batch window of a polling transport: shrink under pressure, grow back after.

After a wake-up the cyclonedds transport waits the window so one take gets a batch per
topic (CPU is spent per wake-up and per topic batch, not per message). A reader found half
full after one window means keep-last could start overwriting: the window halves. When no
reader has been under pressure for ``recover_s``, it doubles again, back up to the base
(the configured window capped by the readers' stale limits and histories), so one busy
minute does not leave the gateway at 0 ms, twice the CPU, for good.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_STEP_NS = 250_000  # growing from 0 starts here (0 x 2 would stay 0)


def batch_window_ns(window_ms: float, readers: Iterable[tuple[int | None, int, float]]) -> int:
    """Return the resting batch window for readers, each (cap ns or None, depth, Hz).

    The window never exceeds a reader's own cap (the driver passes a fifth of the topic's
    stale limit, so a silence is still seen well before it could be mistaken for
    staleness) nor a quarter of its history at the topic's nominal rate (keep-last
    ``depth`` samples: waiting longer could overwrite some).
    """
    window = int(window_ms * 1e6)
    for cap_ns, depth, rate_hz in readers:
        if cap_ns is not None:
            window = min(window, cap_ns)
        window = min(window, int(depth / rate_hz * 1e9) // 4)
    return max(window, 0)


class BatchWindow:
    """The current window: ``base_ns`` at rest, halved on pressure, doubled back when calm."""

    def __init__(self, base_ns: int = 0, recover_s: float = 5.0) -> None:
        self.base_ns = base_ns
        self.current_ns = base_ns
        self.recover_ns = int(recover_s * 1e9)
        self.halvings = 0  # times pressure halved the window (for logs and tests)
        self.raises = 0  # times calm doubled it back
        self._last_change_ns: int | None = None

    def set_base(self, base_ns: int) -> None:
        """Set the resting window (readers changed); a reduced window stays reduced."""
        at_rest = self.current_ns >= self.base_ns
        self.base_ns = max(base_ns, 0)
        self.current_ns = self.base_ns if at_rest else min(self.current_ns, self.base_ns)

    def pressure(self, now_ns: int) -> bool:
        """A reader was half full after one window: halve it; True if it changed."""
        if self.current_ns == 0:
            self._last_change_ns = now_ns
            return False
        self.current_ns //= 2
        self.halvings += 1
        self._last_change_ns = now_ns
        return True

    def calm(self, now_ns: int) -> bool:
        """No pressure lately: double the window (up to the base) once per ``recover_s``."""
        if self.current_ns >= self.base_ns or self._last_change_ns is None:
            return False
        if now_ns - self._last_change_ns < self.recover_ns:
            return False
        self.current_ns = min(self.base_ns, max(2 * self.current_ns, MIN_STEP_NS))
        self.raises += 1
        self._last_change_ns = now_ns
        return True
