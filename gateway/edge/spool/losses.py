"""Loss logging of the spool: a clear line per stream and reason, never a flood.

The first loss of a stream for a reason is logged at once; while the loss goes on, one
summary line every ``every_s`` with the samples lost since the last line. The counts
themselves go to the metrics at every drop (``on_drop``); only the log is rate limited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("medgw.spool")


class LossLog:
    """Rate-limited warnings about dropped or evicted samples."""

    def __init__(self, directory: Path, clock: Callable[[], float], every_s: float = 10.0) -> None:
        self.dir = directory
        self._clock = clock
        self.every_s = every_s
        self._entries: dict[tuple[str, str, str], tuple[float, int]] = {}  # last line, since

    def note(self, what: str, key: str, n: int, reason: str) -> None:
        """Record a loss of ``n`` samples; log it now or in the next summary."""
        now = self._clock()
        entry = self._entries.get((what, key, reason))
        if entry is None:
            self._entries[(what, key, reason)] = (now, 0)
            self._line(what, key, n, reason, None)
            return
        last, pending = entry
        self._entries[(what, key, reason)] = (last, pending + n)
        if now - last >= self.every_s:
            self.summarize(now)

    def summarize(self, now: float | None = None) -> None:
        """Log every loss not logged yet whose last line is at least ``every_s`` old."""
        now = self._clock() if now is None else now
        for (what, key, reason), (last, pending) in list(self._entries.items()):
            if pending and now - last >= self.every_s:
                self._entries[(what, key, reason)] = (now, 0)
                self._line(what, key, pending, reason, now - last)

    def _line(self, what: str, key: str, n: int, reason: str, span: float | None) -> None:
        since = "" if span is None else f" in the last {span:.0f} s"
        log.warning("spool %s: %s %d samples of %s%s (%s)", self.dir, what, n, key, since,
                    reason)
