"""The one retry delay: jittered exponential backoff that honours a server's Retry-After."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays initial, 2x, 4x ... capped at ``maximum``, each drawn from [d/2, d] (jitter).

    Every reconnect and retry loop in medgw (drivers, daemon restarts, ingest writes) uses
    this, so they all back off the same way and never retry in lock-step.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self, retry_after: float | None = None) -> float:
        """Return the next delay in seconds and count the attempt.

        ``retry_after`` (a server's Retry-After, in seconds) replaces the computed delay:
        the server knows when it will be ready, and asking sooner only adds load.
        """
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        if retry_after is not None and retry_after >= 0:
            return float(retry_after)
        return ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the initial delay (after a successful session)."""
        self.attempt = 0

    async def wait(self, stop: asyncio.Event | None = None,
                   retry_after: float | None = None) -> bool:
        """Sleep the next delay, or less if ``stop`` is set meanwhile; True if stopped."""
        delay = self.next(retry_after)
        if stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return False
        return True
