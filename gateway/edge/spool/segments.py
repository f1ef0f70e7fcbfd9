"""The spool's segment files: append with one writev, read back with pread, fsync, delete.

Every OSError of a write (ENOSPC, EDQUOT, EIO...) leaves the segment as it was before the
write (a partial record is truncated away when the filesystem lets us) and is raised as
:class:`SpoolWriteError` for the spool to apply its policy.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from gateway.edge.spool.records import segment_name
from gateway.errors import MedgwError

log = logging.getLogger("medgw.spool")


class SpoolError(MedgwError):
    """The spool directory cannot be used at all (it cannot be created or listed)."""


class SpoolWriteError(SpoolError):
    """One record could not be written (disk full, quota, I/O error)."""


class SegmentFiles:
    """Open segment files of one spool directory, by segment number (its first record id)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._fds: dict[int, int] = {}
        self._known: set[int] = set()  # segment files on disk, open or not
        self.deleted = 0  # segment files deleted so far
        self.active: int | None = None  # the segment new records go to
        self.active_size = 0

    def path(self, segment: int) -> Path:
        """Return the file of a segment."""
        return self.dir / segment_name(segment)

    def _fd(self, segment: int) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
            fd = self._fds[segment] = os.open(self.path(segment), flags, 0o640)
            self._known.add(segment)
        return fd

    def adopt(self, segment: int) -> None:
        """Take charge of a segment found on disk at recovery."""
        self._known.add(segment)

    def append(self, parts: tuple[bytes, ...], size: int, new_segment: int,
               segment_bytes: int) -> tuple[int, int]:
        """Write one record, starting segment ``new_segment`` if the active one is full.

        Returns (segment, offset). Raises SpoolWriteError; the files are then unchanged.
        """
        segment: int | None = None
        offset = 0
        try:
            if self.active is None or self.active_size + size > segment_bytes:
                self.roll(new_segment)
            assert self.active is not None
            segment, offset = self.active, self.active_size
            fd = self._fd(segment)
            written = os.writev(fd, parts)
            while written < size:  # short write (disk nearly full): finish it or raise
                more = os.write(fd, b"".join(parts)[written:])
                if more <= 0:
                    raise OSError(28, os.strerror(28))
                written += more
        except OSError as err:
            where = self.path(new_segment if segment is None else segment)
            if segment is not None:
                self._undo(segment, offset)
            raise SpoolWriteError(f"cannot write {where}: {err.strerror or err}") from err
        self.active_size += size
        return segment, offset

    def _undo(self, segment: int, offset: int) -> None:
        """Cut a partial record off; if that fails too, the next record starts a new file."""
        fd = self._fds.get(segment)
        try:
            if fd is not None:
                os.ftruncate(fd, offset)
        except OSError as err:
            log.warning("spool: cannot cut a partial record off %s (%s); recovery will skip it",
                        self.path(segment), err.strerror)
            self.active = None

    def roll(self, new_segment: int) -> None:
        """Make ``new_segment`` the active segment (the old one is fsynced first)."""
        if self.active is not None:
            self.fsync(self.active)
        self.active, self.active_size = new_segment, 0
        with contextlib.suppress(OSError):
            self.active_size = self.path(new_segment).stat().st_size

    def read(self, segment: int, offset: int, size: int) -> bytes:
        """Read one record back (OSError when the file is gone or unreadable)."""
        return os.pread(self._fd(segment), size, offset)

    def fsync(self, segment: int) -> None:
        """fsync one segment if it is open (raises OSError)."""
        fd = self._fds.get(segment)
        if fd is not None:
            os.fsync(fd)

    def fsync_active(self) -> None:
        """fsync the active segment (raises OSError)."""
        if self.active is not None:
            self.fsync(self.active)

    def delete(self, segment: int) -> None:
        """Close and delete a segment that holds nothing needed any more."""
        fd = self._fds.pop(segment, None)
        if fd is not None:
            os.close(fd)
        self._known.discard(segment)
        if segment == self.active:
            self.active = None
        try:
            self.path(segment).unlink(missing_ok=True)
            self.deleted += 1
        except OSError as err:
            log.warning("spool: cannot delete %s: %s", self.path(segment), err.strerror)

    def segments(self) -> list[int]:
        """Return every segment file in charge, oldest first."""
        return sorted(self._known)

    def close(self) -> None:
        """Close every file."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
