"""The ingest's inbox: messages between paho's thread and the writer, bounded in bytes.

A message's bytes count from the moment it is received until the writer has written and
acknowledged it (not only while it waits), so queue plus batch in progress stay within
``max_bytes`` plus one message. The receiving thread blocks while the budget is spent;
that holds back the socket, and the broker keeps what it has not delivered (MQTT's own
``Receive Maximum`` bounds the count as well). One message larger than the whole budget
is still let in when nothing else is held, so it cannot wedge the worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO of items with a size each; ``put`` waits for room, ``get`` for an item."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._held = 0  # bytes received and not yet released (queued or being written)
        self._peak = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def held_bytes(self) -> int:
        """Return the bytes received and not yet released."""
        with self._cond:
            return self._held

    @property
    def peak_bytes(self) -> int:
        """Return the most bytes ever held at once."""
        with self._cond:
            return self._peak

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, size: int) -> bool:
        """Queue ``item`` once its ``size`` fits the budget; False if the inbox is closed."""
        with self._cond:
            while (not self._closed and self._held > 0
                   and self._held + size > self.max_bytes):
                self._cond.wait()
            if self._closed:
                return False
            self._items.append((item, size))
            self._held += size
            self._peak = max(self._peak, self._held)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> tuple[T, int] | None:
        """Return the oldest item and its size, waiting up to ``timeout`` s; None if none."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft()

    def release(self, size: int) -> None:
        """Give back the bytes of items that are done (written and acknowledged)."""
        with self._cond:
            self._held = max(0, self._held - size)
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse further items and wake every waiter (``get`` still drains what is queued)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Return True once closed."""
        with self._cond:
            return self._closed
