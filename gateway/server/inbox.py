"""The ingest's inbox: messages between paho's thread and the writer, bounded in bytes.

A message's bytes count from the moment it is received until the writer has written and
acknowledged it (not only while it waits), so queue plus batch in progress stay within
``max_bytes`` plus one message. The receiving thread blocks while the budget is spent;
that holds back the socket, and the broker keeps what it has not delivered (MQTT's own
``Receive Maximum`` bounds the count as well). One message larger than the whole budget
is still let in when nothing else is held, so it cannot wedge the worker.

Waking a thread is done only when one waits (the reader for an item, the receiver for room):
at hundreds of messages a second the writer is often busy writing, and a notify per message
was a fifth of the ingest's Python time.
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
        self._lock = threading.RLock()
        self._readable = threading.Condition(self._lock)  # an item was queued
        self._room = threading.Condition(self._lock)  # bytes were released
        self._readers = 0  # threads waiting in get
        self._writers = 0  # threads waiting in put

    @property
    def held_bytes(self) -> int:
        """Return the bytes received and not yet released."""
        with self._lock:
            return self._held

    @property
    def peak_bytes(self) -> int:
        """Return the most bytes ever held at once."""
        with self._lock:
            return self._peak

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, item: T, size: int) -> bool:
        """Queue ``item`` once its ``size`` fits the budget; False if the inbox is closed."""
        with self._lock:
            while (not self._closed and self._held > 0
                   and self._held + size > self.max_bytes):
                self._writers += 1
                try:
                    self._room.wait()
                finally:
                    self._writers -= 1
            if self._closed:
                return False
            self._items.append((item, size))
            self._held += size
            if self._held > self._peak:
                self._peak = self._held
            if self._readers:
                self._readable.notify()
            return True

    def get(self, timeout: float) -> tuple[T, int] | None:
        """Return the oldest item and its size, waiting up to ``timeout`` s; None if none."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._readers += 1
                try:
                    self._readable.wait(remaining)
                finally:
                    self._readers -= 1
            return self._items.popleft()

    def release(self, size: int) -> None:
        """Give back the bytes of items that are done (written and acknowledged)."""
        with self._lock:
            self._held = max(0, self._held - size)
            if self._writers:
                self._room.notify_all()

    def close(self) -> None:
        """Refuse further items and wake every waiter (``get`` still drains what is queued)."""
        with self._lock:
            self._closed = True
            self._readable.notify_all()
            self._room.notify_all()

    @property
    def closed(self) -> bool:
        """Return True once closed."""
        with self._lock:
            return self._closed
