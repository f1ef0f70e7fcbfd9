"""Encode SampleBatches into InfluxDB line protocol (the ingest hot path).

One line per sample (per channel when ``stream.channel_tag`` is set)::

    <measurement>,device=<d>[,<channel_tag>=<channel>],site=<s>,stream=<st> \
<field>=<float>,...,quality=<q>i,seq=<seq>i[,text="<text>"] <timestamp_ns>

- Tags are sorted by key (what InfluxDB does anyway); ``historical`` is never a tag, so
  a replayed sample lands on the same series + timestamp and overwrites itself.
- Float fields use Python's shortest round-trip ``repr``; NaN/inf cannot be stored, so
  such a field is left out of that line (quality and seq are always written).
- Names are checked once, by StreamSpec (gateway.model.validate_stream); the escaping
  below still follows the spec for any name.
- Measurement: commas and spaces escaped; tag keys/values and field keys: commas,
  equals signs and spaces escaped. Identifiers containing a backslash, a newline or a
  carriage return are refused (PayloadError): line protocol cannot carry them safely.
  An empty tag value leaves that tag out.
- String field ``text``: backslash and double quote are escaped, newline and carriage
  return become the two-character sequences ``\\n`` / ``\\r``, so the body never holds a
  raw newline inside a line: splitting a body on ``b"\\n"`` always yields whole points.
- Channel streams: lines are grouped channel by channel (all samples of the first
  channel, then the next ...).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from gateway.errors import PayloadError
from gateway.model import RESERVED_FIELDS, SampleBatch, StreamSpec

GAP_MEASUREMENT = "medgw_gap"

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
_FORBIDDEN = ("\\", "\n", "\r")


def _check_identifier(kind: str, value: str) -> None:
    """Refuse empty identifiers and characters line protocol cannot carry."""
    if not value:
        raise PayloadError(f"line protocol: empty {kind}")
    for char in _FORBIDDEN:
        if char in value:
            raise PayloadError(f"line protocol: {kind} {value!r} contains {char!r}")


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas, spaces)."""
    _check_identifier("measurement", name)
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str, kind: str = "tag key or field key") -> str:
    """Escape a tag key, tag value or field key (commas, equals signs, spaces)."""
    _check_identifier(kind, name)
    return name.translate(_KEY_ESCAPES)


def escape_string(value: str) -> str:
    """Escape a string field value (without the surrounding quotes)."""
    return value.translate(_STRING_ESCAPES)


@functools.lru_cache(maxsize=4096)
def _groups(stream: StreamSpec) -> tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...]:
    """Return per line group: (escaped 'measurement,tags' prefix, column indices, field keys)."""
    base_tags = {"site": stream.site, "device": stream.device, "stream": stream.stream}
    if stream.channel_tag in base_tags:
        raise PayloadError(f"stream {stream.key}: channel_tag {stream.channel_tag!r} is reserved")
    measurement = escape_measurement(stream.measurement)
    if stream.channel_tag is None:
        channels: dict[str | None, list[tuple[int, str]]] = {
            None: list(enumerate(stream.fields))
        }
    else:
        channels = {}
        for index, name in enumerate(stream.fields):
            chan, leaf = name.split(".", 1)
            channels.setdefault(chan, []).append((index, leaf))
    groups = []
    for channel, columns in channels.items():
        tags = dict(base_tags)
        if channel is not None and stream.channel_tag is not None:
            tags[stream.channel_tag] = channel
        prefix = measurement + "".join(
            f",{escape_key(key, 'tag key')}={escape_key(value, 'tag value')}"
            for key, value in sorted(tags.items()) if value
        )
        keys = []
        for _, field in columns:
            if field.casefold() in RESERVED_FIELDS:  # StreamSpec refuses them already
                raise PayloadError(f"stream {stream.key}: field name {field!r} is reserved")
            keys.append(escape_key(field, "field key"))
        groups.append((prefix, tuple(i for i, _ in columns), tuple(keys)))
    return tuple(groups)


def lines_per_sample(stream: StreamSpec) -> int:
    """Return how many lines one sample of ``stream`` becomes (its channel count, or 1)."""
    return len(_groups(stream))


def _brace(text: str) -> str:
    """Escape ``{`` and ``}`` for str.format templates."""
    return text.replace("{", "{{").replace("}", "}}")


def _slow_line(prefix: str, keys: Sequence[str], row: Sequence[float], tail: str) -> str:
    """Format one line leaving out non-finite values."""
    fields = "".join(f"{key}={value!r}," for key, value in zip(keys, row, strict=True)
                     if math.isfinite(value))
    return f"{prefix} {fields}{tail}"


def _texts(array: npt.NDArray[Any]) -> list[str]:
    """Format a 1-D numeric array as strings, in bulk: orjson writes the shortest
    round-trip form of each float (like repr), about ten times faster than Python."""
    return orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY
                        )[1:-1].decode().split(",")


def _column_texts(block: npt.NDArray[Any]) -> tuple[list[list[str]], bool]:
    """Format each row of a C-contiguous 2-D array (one row per field) as strings; also
    say whether all values are finite."""
    if block.shape[1] > 16:  # long rows: one orjson call each is the cheaper split
        return [_texts(row) for row in block], bool(np.isfinite(block).all())
    # short rows (the usual few samples per message): one orjson call for all of them;
    # orjson writes NaN and infinities as null
    text = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].decode()
    return [row.split(",") for row in text.split("],[")], "null" not in text


def _seq_texts(first: int, n: int) -> list[str]:
    """Return the sequence numbers ``first .. first + n - 1`` as strings."""
    if n <= 64:  # below this str() beats building and serialising an array
        return list(map(str, range(first, first + n)))
    return _texts(np.arange(first, first + n, dtype=np.int64))


Template = tuple[Callable[..., str], tuple[int, ...] | None, str, tuple[str, ...], str]


@functools.lru_cache(maxsize=4096)
def _templates(stream: StreamSpec, with_text: bool) -> tuple[Template, ...]:
    """Return per line group: (line format, its columns or None for all, prefix, field keys,
    tail format); built once per stream, not per batch."""
    tail = "quality={}i,seq={}i" + (',text="{}"' if with_text else "") + " {}\n"
    every = tuple(range(len(stream.fields)))
    out = []
    for prefix, columns, keys in _groups(stream):
        head = _brace(prefix) + " " + "".join(f"{_brace(key)}={{}}," for key in keys)
        out.append(((head + tail).format, None if columns == every else columns, prefix,
                    keys, tail))
    return tuple(out)


SMALL_BATCH = 4  # up to this many samples, per-row formatting beats the array machinery


def encode_lines(batch: SampleBatch) -> list[str]:
    """Return the batch as line-protocol lines, each ending in ``\\n``."""
    n = len(batch)
    if n == 0:
        return []
    if n <= SMALL_BATCH:
        return _small_lines(batch)
    timestamps = _texts(batch.timestamps_ns)
    qualities = _texts(batch.quality)
    seqs = _seq_texts(batch.first_seq, n)
    texts = None
    if batch.text is not None:
        texts = [escape_string(t) for t in batch.text]
    by_column = np.ascontiguousarray(batch.values.T)
    out: list[str] = []
    for fmt, columns, prefix, keys, tail in _templates(batch.stream, texts is not None):
        picked: slice | list[int] = slice(None) if columns is None else list(columns)
        cols, all_finite = _column_texts(by_column[picked])
        rows: Iterable[tuple[object, ...]]
        if texts is None:
            rows = zip(*cols, qualities, seqs, timestamps, strict=True)
        else:
            rows = zip(*cols, qualities, seqs, texts, timestamps, strict=True)
        lines = [fmt(*row) for row in rows]
        if not all_finite:
            ok = np.isfinite(batch.values[:, picked]).all(axis=1)
            for i in np.flatnonzero(~ok).tolist():
                values = batch.values[i, picked].tolist()
                rest = (qualities[i], seqs[i]) + (() if texts is None else (texts[i],))
                lines[i] = _slow_line(prefix, keys, values, tail.format(*rest, timestamps[i]))
        out.extend(lines)
    return out


def _small_lines(batch: SampleBatch) -> list[str]:
    """``encode_lines`` for a few samples (a bundle part of one row, typically): each row's
    values in one orjson call (its float text, as the array path writes it); NaN and
    infinities come out as null and are left out of the line."""
    stream, first = batch.stream, batch.first_seq
    rows = batch.values.tolist()
    stamps = batch.timestamps_ns.tolist()
    qualities = batch.quality.tolist()
    texts = None if batch.text is None else [escape_string(t) for t in batch.text]
    row_texts = [orjson.dumps(row)[1:-1].decode().split(",") for row in rows]
    out: list[str] = []
    for prefix, columns, keys in _groups(stream):
        pairs = tuple(zip(keys, columns, strict=True))
        for i, values in enumerate(row_texts):
            fields = "".join([f"{key}={values[c]}," for key, c in pairs if values[c] != "null"])
            text = "" if texts is None else f',text="{texts[i]}"'
            out.append(f"{prefix} {fields}quality={qualities[i]}i,seq={first + i}i{text} "
                       f"{stamps[i]}\n")
    return out


def encode_batch(batch: SampleBatch) -> tuple[bytes, int]:
    """Return ``(body, n_lines)`` for one batch."""
    lines = encode_lines(batch)
    return "".join(lines).encode("utf-8"), len(lines)


def encode_batches(batches: Iterable[SampleBatch]) -> tuple[bytes, int]:
    """Return ``(body, n_lines)`` for several batches concatenated."""
    lines: list[str] = []
    for batch in batches:
        lines.extend(encode_lines(batch))
    return "".join(lines).encode("utf-8"), len(lines)


def split_body(body: bytes, parts: int = 2) -> list[tuple[bytes, int]]:
    """Split a body at line boundaries into up to ``parts`` chunks of about equal line count.

    Returns ``[(chunk, n_lines), ...]`` without empty chunks (used to retry after a 413).
    """
    lines = body.splitlines(keepends=True)
    if not lines:
        return []
    parts = max(1, min(parts, len(lines)))
    step = -(-len(lines) // parts)
    return [(b"".join(lines[i:i + step]), len(lines[i:i + step]))
            for i in range(0, len(lines), step)]


def gap_line(stream: StreamSpec, from_seq: int, to_seq: int, ts_ns: int,
             gateway: str = "") -> bytes:
    """Return the ``medgw_gap`` point of a confirmed run of missing sequence numbers."""
    tags = "".join(f",{key}={escape_key(value, 'tag value')}" for key, value in (
        ("device", stream.device), ("site", stream.site), ("stream", stream.stream)))
    text = f',gateway="{escape_string(gateway)}"' if gateway else ""
    return (f"{GAP_MEASUREMENT}{tags} from_seq={from_seq}i,to_seq={to_seq}i,"
            f'missing={to_seq - from_seq + 1}i,measurement="{escape_string(stream.measurement)}"'
            f"{text} {ts_ns}\n").encode()
