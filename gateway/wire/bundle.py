"""Bundles: several v1 payloads of one device in one MQTT message on ``medgw/v1/{site}/{device}``.

One publish, one spool record, one PUBACK and one ingest write carry every stream of the
device that was due at a publisher scan (Sparkplug B's DDATA does the same per device).
JSON parts travel as a JSON array of v1 payload objects, each valid against the v1 schema;
binary parts are framed by their length. A bad part is that part's PayloadError alone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from gateway.errors import PayloadError
from gateway.wire.payload import BINARY_MAGIC, Decoded, decode, decode_doc, guarded

BUNDLE_MAGIC = b"MGWN1\n"
_FRAME = struct.Struct("<I")
MAX_BUNDLE_PARTS = 4096


def encode_bundle(parts: Sequence[bytes]) -> bytes:
    """Join encoded v1 payloads of one encoding (JSON or binary) into one bundle payload."""
    if not parts:
        raise ValueError("a bundle needs at least one part")
    if parts[0].startswith(BINARY_MAGIC):
        return BUNDLE_MAGIC + b"".join(_FRAME.pack(len(part)) + part for part in parts)
    return b"[" + b",".join(parts) + b"]"


def is_bundle(payload: bytes) -> bool:
    """True when the payload is a bundle (a JSON array or the framed binary form)."""
    return payload[:1] == b"[" or payload.startswith(BUNDLE_MAGIC)


def split_bundle(payload: bytes) -> list[bytes]:
    """Return the framed parts of a binary bundle (PayloadError if the framing is broken)."""
    parts: list[bytes] = []
    at, end = len(BUNDLE_MAGIC), len(payload)
    while at < end:
        if at + _FRAME.size > end or len(parts) >= MAX_BUNDLE_PARTS:
            raise PayloadError(f"binary bundle: bad frame at byte {at} (part {len(parts)})")
        (size,) = _FRAME.unpack_from(payload, at)
        at += _FRAME.size
        if size > end - at:
            raise PayloadError(f"binary bundle: part {len(parts)} of {size} bytes runs past "
                               f"the end ({end - at} left)")
        parts.append(payload[at:at + size])
        at += size
    if not parts:
        raise PayloadError("bundle holds no part")
    return parts


def decode_bundle(payload: bytes) -> list[Decoded | PayloadError]:
    """Decode every part of a bundle: a Decoded, or the PayloadError of that part alone.

    Raises PayloadError only when the bundle itself cannot be split into parts.
    """
    if payload.startswith(BUNDLE_MAGIC):
        return [_decode_part(decode, part) for part in split_bundle(payload)]
    try:
        docs = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"bundle is not JSON: {err}") from err
    if not isinstance(docs, list) or not docs or len(docs) > MAX_BUNDLE_PARTS:
        raise PayloadError(f"a bundle is a JSON array of 1..{MAX_BUNDLE_PARTS} payloads")
    return [_decode_part(_decode_one_doc, doc) for doc in docs]


def _decode_one_doc(doc: Any) -> Decoded:
    return guarded(decode_doc, doc)


def _decode_part(step: Callable[[Any], Decoded], arg: Any) -> Decoded | PayloadError:
    try:
        return step(arg)
    except PayloadError as err:
        return err


def bundle_key(parts: Iterable[tuple[str, int]]) -> str:
    """Return the record key of a bundle: ``key|n`` per part, comma-separated, in order.

    Spool and commit messages identify a record by (key, first seq of its first part);
    the ingest rebuilds the same key from the parts it decoded. Stream keys never hold
    ``|`` or ``,`` (gateway.model's name rule), so the key splits back unambiguously.
    """
    return ",".join(f"{key}|{n}" for key, n in parts)


def split_bundle_key(key: str) -> list[tuple[str, int]]:
    """Return the (stream key, samples) parts of a record key; [(key, 0)] for one stream."""
    if "|" not in key:
        return [(key, 0)]
    out = []
    for part in key.split(","):
        stream, _, n = part.rpartition("|")
        out.append((stream, int(n)))
    return out


def per_stream(key: str, n: int) -> list[tuple[str, int]]:
    """Return the (stream key, samples) of a record of ``n`` samples keyed ``key``."""
    return split_bundle_key(key) if "|" in key else [(key, n)]


_LIVE = b'"historical":false'
_HISTORICAL = b'"historical":true'


def as_historical(payload: bytes) -> bytes:
    """Return an encoded payload or bundle (JSON or binary) marked as replayed, not live.

    Both encodings start with the same orjson header, in which ``historical`` is written
    exactly once and before any sample array, so the first occurrence is the flag. In a
    JSON bundle every occurrence is a flag (JSON strings escape their quotes); a binary
    bundle is marked part by part (its arrays are raw bytes).
    """
    if payload.startswith(BUNDLE_MAGIC):
        return encode_bundle([part.replace(_LIVE, _HISTORICAL, 1)
                              for part in split_bundle(payload)])
    if payload[:1] == b"[":
        return payload.replace(_LIVE, _HISTORICAL)
    return payload.replace(_LIVE, _HISTORICAL, 1)
