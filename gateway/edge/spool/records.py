"""The spool's on-disk format: records in segment files, the segment directory, ``state.json``.

Record layout (little endian)::

    u32 body_len | u32 crc32(body) | u64 record_id | u64 first_seq | u32 n_samples | u8 flags
    body = stream_key NUL topic NUL payload

Record ids grow by one per record, so when recovery skips a damaged stretch the ids of the
intact records on either side say how many records were cut.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gateway.files import atomic_write

log = logging.getLogger("medgw.spool")

HEADER = struct.Struct("<IIQQIB")
FLAG_REPLAY = 1
STATE_FILE = "state.json"
_SEGMENT_NAME = re.compile(r"seg-(\d{16})\.spool")
# A candidate record start while resyncing: body_len below 16 MiB and not tiny (byte 3 is 0,
# one of bytes 0..2 is not), flags 0 or 1 (the header's last byte). Found by the regex
# engine, not a Python loop over every byte.
_CANDIDATE = re.compile(rb"(?=(?:[^\x00]..|.[^\x00].|..[^\x00])\x00.{%d}[\x00\x01])"
                        % (HEADER.size - 5), re.S)
_MAX_SAMPLES = 1 << 31


def segment_name(segment: int) -> str:
    """Return the file name of the segment whose first record id is ``segment``."""
    return f"seg-{segment:016d}.spool"


def pack(record_id: int, first_seq: int, n: int, replay: bool, key: str, topic: str,
         payload: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (header, key+topic prefix, payload): one record, ready for a single writev."""
    prefix = b"%s\0%s\0" % (key.encode(), topic.encode())
    crc = zlib.crc32(payload, zlib.crc32(prefix))
    header = HEADER.pack(len(prefix) + len(payload), crc, record_id, first_seq, n,
                         FLAG_REPLAY if replay else 0)
    return header, prefix, payload


def unpack_body(data: bytes) -> tuple[str, str, bytes]:
    """Split a record read back from disk (header included) into key, topic and payload."""
    key, topic, payload = data[HEADER.size:].split(b"\0", 2)
    return key.decode(), topic.decode(), payload


@dataclass(frozen=True, slots=True)
class Scanned:
    """An intact record found on disk."""

    record_id: int
    offset: int
    size: int
    key: str
    topic: str
    first_seq: int
    n: int


@dataclass
class ScanResult:
    """Every intact record of one segment, and what was cut around them."""

    records: list[Scanned] = field(default_factory=list)
    cut_bytes: int = 0
    cut_records: int = 0  # known from the gaps in the record ids (a torn tail counts one)


def _parse(data: bytes, offset: int, segment: int, after: int) -> Scanned | None:
    """Return the record at ``offset`` if its header is plausible and its CRC matches."""
    if offset + HEADER.size > len(data):
        return None
    body_len, crc, rid, first_seq, n, flags = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + body_len
    if (end > len(data) or flags > FLAG_REPLAY or rid < segment or rid <= after
            or not 0 < n < _MAX_SAMPLES):
        return None
    body = data[offset + HEADER.size:end]
    if zlib.crc32(body) != crc:
        return None
    parts = body.split(b"\0", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        key, topic = parts[0].decode(), parts[1].decode()
    except UnicodeDecodeError:
        return None
    return Scanned(rid, offset, end - offset, key, topic, first_seq, n)


def scan(data: bytes, segment: int) -> ScanResult:
    """Index every intact record of a segment, resyncing past damaged stretches."""
    result = ScanResult()
    offset, last_id = 0, segment - 1
    while offset < len(data):
        record = _parse(data, offset, segment, last_id)
        if record is None:
            record = _resync(data, offset + 1, segment, last_id)
            skipped = (record.offset if record else len(data)) - offset
            result.cut_bytes += skipped
            result.cut_records += record.record_id - last_id - 1 if record else 1
            if record is None:
                break
        result.records.append(record)
        offset, last_id = record.offset + record.size, record.record_id
    return result


def _resync(data: bytes, start: int, segment: int, after: int) -> Scanned | None:
    """Return the first intact record at or after ``start``, or None."""
    for match in _CANDIDATE.finditer(data, start):
        record = _parse(data, match.start(), segment, after)
        if record is not None:
            return record
    return None


def list_segments(directory: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """Return the segment files in id order and a description of every stray entry."""
    segments: list[tuple[int, Path]] = []
    strays: list[str] = []
    for path in sorted(directory.iterdir()):
        if not path.name.startswith("seg-"):
            continue
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match is None:
            strays.append(f"{path.name}: not a segment name (seg-<16 digits>.spool)")
        elif not path.is_file():
            strays.append(f"{path.name}: not a regular file")
        else:
            segments.append((int(match.group(1)), path))
    return sorted(segments), strays


def read_state(directory: Path) -> tuple[int | None, str | None]:
    """Return (first unconfirmed record id, problem); None and a problem when unusable."""
    path = directory / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as err:
        return None, f"{path} cannot be read: {err.strerror}"
    try:
        doc = orjson.loads(raw)
        value = doc["first_unacked"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None, f"{path} is not a JSON object with first_unacked"
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        return None, f"{path}: first_unacked {value!r} is not a record id"
    return value, None


def write_state(directory: Path, first_unacked: int) -> None:
    """Persist the first unconfirmed record id atomically (raises OSError)."""
    atomic_write(directory / STATE_FILE, orjson.dumps({"first_unacked": first_unacked}),
                 mode=0o640)
