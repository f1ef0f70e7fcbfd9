"""Samples missing in the writers' sequence numbers of one reader: exact middleware loss.

Every DDS writer numbers its samples 1, 2, 3, ... (RTPS); rclpy's ``MessageInfo`` gives
each sample's ``publication_sequence_number`` and ``publisher_gid``. A hole between two
samples of one writer is a sample the middleware wrote and this reader never got (a
best-effort drop, a keep-last history overwritten on either side): counted exactly,
per writer. Not counted: samples before the first one received from a writer (it may
have written them before our reader matched), samples after the last one (a hole shows
only when a later sample arrives), and a late sample below the highest seen (no
reordering on a reliable reader; best-effort reordering would have been counted as a
hole when the later sample came first).
"""

from __future__ import annotations

UNSUPPORTED = 2**63  # rmw's RMW_MESSAGE_INFO_SEQUENCE_NUMBER_UNSUPPORTED is UINT64_MAX


class WriterSeqs:
    """Per-reader hole counter over the sequence numbers of each writer (by GID)."""

    __slots__ = ("last", "missing", "numbered", "unnumbered")

    def __init__(self) -> None:
        self.last: dict[bytes, int] = {}  # writer GID -> highest sequence number seen
        self.missing = 0  # holes: samples written and never received (only grows)
        self.numbered = 0  # samples that carried a sequence number
        self.unnumbered = 0  # samples without one (an RMW that does not tell)

    @property
    def exact(self) -> bool:
        """Return True while every sample carried a writer sequence number."""
        return self.unnumbered == 0

    def seen(self, writer: bytes, seq: int | None) -> None:
        """Account for one received sample of ``writer`` numbered ``seq``."""
        if seq is None or seq >= UNSUPPORTED or seq <= 0:
            self.unnumbered += 1
            return
        self.numbered += 1
        last = self.last.get(writer)
        if last is None:
            self.last[writer] = seq  # the first of this writer: nothing known before it
        elif seq > last:
            self.missing += seq - last - 1
            self.last[writer] = seq

    def seen_info(self, info: object) -> None:
        """Account for one sample from an rclpy ``MessageInfo`` dict."""
        if not isinstance(info, dict):
            self.unnumbered += 1
            return
        gid = info.get("publisher_gid")
        writer = gid.get("data", b"") if isinstance(gid, dict) else b""
        self.seen(bytes(writer), info.get("publication_sequence_number"))
