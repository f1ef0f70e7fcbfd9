"""Ring look-ups shared by the rclpy transport and driver tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.driver import DriverContext
from gateway.model import Quality


def ring_snapshot(ctx: DriverContext, topic: str) -> Any:
    """Return the snapshot of the ring a ROS topic feeds in ``ctx``'s device, None if none."""
    try:
        return ctx.store.ring(f"{ctx.site}/{ctx.device}/{topic.strip('/').replace('/', '.')}"
                              ).snapshot()
    except KeyError:
        return None


def data_count(ctx: DriverContext, topic: str) -> int:
    """Return how many non-STALE samples a topic's ring holds."""
    batch = ring_snapshot(ctx, topic)
    return 0 if batch is None else int(np.count_nonzero(batch.quality != Quality.STALE))
