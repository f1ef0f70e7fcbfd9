"""Jittered exponential backoff for reconnect attempts."""

from __future__ import annotations

import random


class Backoff:
    """Delays initial, 2x, 4x ... capped at ``maximum``, each drawn from [d/2, d] (jitter)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """Return the next delay in seconds and count the attempt."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the initial delay (after a successful session)."""
        self.attempt = 0
