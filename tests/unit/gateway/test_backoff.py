"""The one backoff: jitter, cap, Retry-After, a stoppable wait."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.backoff import Backoff


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    delays = [backoff.next() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next() <= 1.0


def test_backoff_honours_retry_after_and_counts_it() -> None:
    backoff = Backoff(1.0, 8.0)
    assert backoff.next(retry_after=42.0) == 42.0
    assert backoff.attempt == 1


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_backoff_wait_returns_early_when_stopped() -> None:
    async def scenario() -> bool:
        stop = asyncio.Event()
        stop.set()
        return await Backoff(30.0, 60.0).wait(stop)

    assert asyncio.run(scenario()) is True
