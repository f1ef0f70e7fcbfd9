"""Quarantine: malformed or refused messages go to a dead-letter topic and file, bounded.

The envelope (JSON: original topic, reason, receive time, payload size and the payload as
text) carries at most ``max_payload_bytes`` of the payload, marked ``truncated``. The topic
is ``{dead_letter_topic}/{original topic}``, or ``{dead_letter_topic}/_too_long`` when that
would pass MQTT's 65,535-byte limit. The file is rotated at ``file_max_bytes`` keeping
``file_backups`` older files (``dead.jsonl.1`` ...). Sending never raises: a failure to
publish or write is logged and counted, and the worker goes on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

import orjson

from gateway.errors import MedgwError

log = logging.getLogger("medgw.ingest")

MAX_TOPIC_BYTES = 65535


class Publisher(Protocol):
    """What the dead letters need of the transport."""

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> object:
        """Send one message (QoS 1 here)."""
        ...


class DeadLetters:
    """Sends quarantined messages to the dead-letter topic and the optional file."""

    def __init__(self, transport: Publisher, topic: str, file: Path | None = None, *,
                 max_payload_bytes: int = 64 * 1024, file_max_bytes: int = 64 * 1024 * 1024,
                 file_backups: int = 1) -> None:
        self.transport = transport
        self.topic = topic
        self.file = file
        self.max_payload_bytes = max_payload_bytes
        self.file_max_bytes = file_max_bytes
        self.file_backups = file_backups
        self.failures = 0  # publishes or file writes that failed
        self.last_failure: str | None = None

    def envelope(self, topic: str, reason: str, payload: bytes,
                 size: int | None = None) -> bytes:
        """Return the dead-letter document of one message (``size``: as received)."""
        kept = payload[:self.max_payload_bytes]
        size = len(payload) if size is None else max(size, len(payload))
        return orjson.dumps({
            "topic": topic[:1024], "topic_bytes": len(topic.encode("utf-8", "replace")),
            "reason": reason[:2000], "received_ns": time.time_ns(),
            "payload_bytes": size, "truncated": len(kept) < size,
            "payload": kept.decode("utf-8", "replace"),
        })

    def topic_for(self, topic: str) -> str:
        """Return where the dead letter of a message on ``topic`` is published."""
        full = f"{self.topic}/{topic}"
        if len(full.encode("utf-8", "replace")) > MAX_TOPIC_BYTES or "\0" in full:
            return f"{self.topic}/_too_long"
        return full

    def send(self, topic: str, reason: str, payload: bytes, size: int | None = None) -> None:
        """Publish and store one dead letter; never raises."""
        envelope = self.envelope(topic, reason, payload, size)
        ok = True
        try:
            self.transport.publish(self.topic_for(topic), envelope, qos=1)
        except (MedgwError, ValueError, RuntimeError, OSError) as err:  # TransportError, paho
            ok = self._failed(f"dead-letter publish failed: {err}")
        if self.file is not None:
            try:
                self._append(envelope + b"\n")
            except OSError as err:
                ok = self._failed(f"dead-letter file {self.file}: {err.strerror or err}")
        if ok:
            self.last_failure = None  # /health recovers with the next good dead letter

    def _append(self, line: bytes) -> None:
        assert self.file is not None
        try:
            size = self.file.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.file_max_bytes:
            self._rotate()
        with self.file.open("ab") as out:
            out.write(line)

    def _rotate(self) -> None:
        """dead.jsonl -> dead.jsonl.1 -> ... (the oldest beyond ``file_backups`` removed)."""
        assert self.file is not None
        if self.file_backups < 1:
            self.file.unlink(missing_ok=True)
            return
        for index in range(self.file_backups, 0, -1):
            older = self.file.with_name(f"{self.file.name}.{index}")
            source = self.file if index == 1 else self.file.with_name(
                f"{self.file.name}.{index - 1}")
            if source.exists():
                os.replace(source, older)
        log.info("dead-letter file %s rotated (limit %d bytes)", self.file, self.file_max_bytes)

    def _failed(self, message: str) -> bool:
        self.failures += 1
        self.last_failure = message
        log.error(message)
        return False
