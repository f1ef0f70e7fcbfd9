"""The wire contract: SampleBatch <-> JSON payload on ``medgw/v1/{site}/{device}/{stream}``.

The JSON Schema of the payload is ``gateway/schema/payload-v1.schema.json``. ``decode``
checks the same rules in code (fast enough for every message) and raises PayloadError.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import orjson

from gateway.errors import PayloadError
from gateway.model import TOPIC_SAFE, SampleBatch, StreamKind, StreamSpec

PAYLOAD_VERSION = 1
BINARY_MAGIC = b"MGWB1\n"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _header(batch: SampleBatch, gateway: str, epoch: int) -> dict[str, Any]:
    """Every payload key except the sample arrays (shared by both encodings)."""
    spec = batch.stream
    doc: dict[str, Any] = {
        "v": PAYLOAD_VERSION,
        "gateway": gateway,
        "epoch": epoch,
        "site": spec.site,
        "device": spec.device,
        "stream": spec.stream,
        "kind": spec.kind.value,
        "measurement": spec.measurement,
        "channel_tag": spec.channel_tag,
        "rate_hz": spec.rate_hz,
        "fields": spec.fields,
        "units": spec.units,
        "seq": batch.first_seq,
        "n": len(batch),
        "historical": batch.historical,
    }
    if spec.labels:
        doc["labels"] = dict(spec.labels)
    if batch.text is not None:
        doc["text"] = batch.text
    return doc


def _has_rx(batch: SampleBatch) -> bool:
    rx = batch.receive_ns
    # drivers set rx on every sample or on none: the last one decides without a scan mostly
    return rx is not None and (bool(rx[-1]) or bool(rx.any()))


def encode(batch: SampleBatch, gateway: str, epoch: int = 0) -> bytes:
    """Serialize a non-empty batch to the v1 JSON payload (NaN and inf become null).

    ``epoch`` identifies one start of the gateway (a random 63-bit number drawn at start):
    a sample is identified by (gateway, epoch, stream, seq), see DESIGN.md "Identity".
    """
    doc = _header(batch, gateway, epoch)
    doc["t"] = batch.timestamps_ns
    doc["q"] = batch.quality
    doc["values"] = batch.values
    if _has_rx(batch):
        doc["rx"] = batch.receive_ns
    return orjson.dumps(doc, option=_NUMPY)


def encode_binary(batch: SampleBatch, gateway: str, epoch: int = 0) -> bytes:
    """Serialize a batch to the v1 binary payload: the JSON header, then raw arrays.

    Layout: ``MGWB1\n`` + header JSON (the JSON payload's keys without t/q/values/rx,
    plus ``"rx": true|false``) + ``\n`` + t (int64 LE, n) + q (uint8, n) + values
    (float64 LE, n x width, row-major) [+ rx (int64 LE, n) when ``"rx"`` is true].
    orjson never writes a raw newline, so the first one after the magic ends the header.
    NaN and inf survive as IEEE 754 values.
    """
    has_rx = _has_rx(batch)
    doc = _header(batch, gateway, epoch)
    doc["rx"] = has_rx
    parts = [BINARY_MAGIC, orjson.dumps(doc), b"\n",
             batch.timestamps_ns.astype("<i8", copy=False).tobytes(),
             batch.quality.tobytes(),
             batch.values.astype("<f8", copy=False).tobytes()]
    if has_rx:
        assert batch.receive_ns is not None
        parts.append(batch.receive_ns.astype("<i8", copy=False).tobytes())
    return b"".join(parts)


ENCODERS = {"json": encode, "binary": encode_binary}


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise PayloadError(f"field {key!r} missing or not {_type_names(kind)}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def _name(doc: dict[str, Any], key: str) -> str:
    value = _require(doc, key, str)
    if not TOPIC_SAFE.fullmatch(value):
        raise PayloadError(f"field {key!r} = {value[:40]!r} is not a valid name")
    return str(value)


def decode(payload: bytes) -> tuple[str, SampleBatch]:
    """Parse and check a JSON or binary payload; return (gateway id, batch) or PayloadError."""
    if payload.startswith(BINARY_MAGIC):
        return _decode_binary(payload)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise PayloadError("payload is not a JSON object")
    if doc.get("v") != PAYLOAD_VERSION:
        raise PayloadError(f"unsupported payload version {doc.get('v')!r}")
    extra = set(doc) - _KNOWN_KEYS
    if extra:
        raise PayloadError(f"unknown keys {sorted(extra)}")
    spec = _decode_spec(doc)
    n = _require(doc, "n", int)
    seq = _require(doc, "seq", int)
    if n < 1 or seq < 0:
        raise PayloadError("n must be >= 1 and seq >= 0")
    batch = _decode_arrays(doc, spec, n, seq)
    return _name(doc, "gateway"), batch


def _decode_binary(payload: bytes) -> tuple[str, SampleBatch]:
    start = len(BINARY_MAGIC)
    end = payload.find(b"\n", start)
    if end < 0:
        raise PayloadError("binary payload: header not terminated")
    try:
        doc = orjson.loads(payload[start:end])
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"binary payload: header is not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("v") != PAYLOAD_VERSION:
        raise PayloadError("binary payload: header is not a v1 object")
    extra = set(doc) - _KNOWN_KEYS
    if extra or any(key in doc for key in ("t", "q", "values")):
        raise PayloadError(f"binary payload: unexpected header keys {sorted(extra)}")
    has_rx = _require(doc, "rx", bool)
    spec = _decode_spec(doc)
    n = _require(doc, "n", int)
    seq = _require(doc, "seq", int)
    if n < 1 or seq < 0:
        raise PayloadError("n must be >= 1 and seq >= 0")
    sizes = (8 * n, n, 8 * n * spec.width, 8 * n if has_rx else 0)
    body = memoryview(payload)[end + 1:]
    if len(body) != sum(sizes):
        raise PayloadError(f"binary payload: {len(body)} bytes of arrays, expected {sum(sizes)}"
                           f" for n={n} and width {spec.width}")
    offsets = np.cumsum((0, *sizes))
    ts = np.frombuffer(body[offsets[0]:offsets[1]], dtype="<i8").astype(np.int64)
    quality = np.frombuffer(body[offsets[1]:offsets[2]], dtype=np.uint8).copy()
    values = np.frombuffer(body[offsets[2]:offsets[3]], dtype="<f8").astype(np.float64)
    rx = np.frombuffer(body[offsets[3]:offsets[4]], dtype="<i8").astype(np.int64) \
        if has_rx else None
    text = _check_text(doc.get("text"), n)
    batch = SampleBatch(spec, ts, values.reshape(n, spec.width), quality, seq,
                        historical=bool(_require(doc, "historical", bool)),
                        text=text, receive_ns=rx)
    return _name(doc, "gateway"), batch


def _check_text(text: Any, n: int) -> tuple[str, ...] | None:
    if text is None:
        return None
    if not isinstance(text, list) or len(text) != n or not all(isinstance(s, str) for s in text):
        raise PayloadError(f"text must hold n={n} strings")
    return tuple(text)


def _decode_spec(doc: dict[str, Any]) -> StreamSpec:
    try:
        kind = StreamKind(doc.get("kind"))
    except ValueError as err:
        raise PayloadError(f"field 'kind' = {doc.get('kind')!r} is not sampled/event") from err
    fields = _require(doc, "fields", list)
    units = _require(doc, "units", list)
    if not all(isinstance(f, str) for f in fields + units):
        raise PayloadError("fields and units must be strings")
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels.values()
    ):
        raise PayloadError("labels must map names to numbers")
    channel_tag = doc.get("channel_tag")
    if channel_tag is not None and not isinstance(channel_tag, str):
        raise PayloadError("channel_tag must be a string or null")
    try:
        return StreamSpec(
            site=_name(doc, "site"),
            device=_name(doc, "device"),
            stream=_name(doc, "stream"),
            fields=tuple(fields),
            units=tuple(units),
            kind=kind,
            rate_hz=float(doc.get("rate_hz") or 0.0),
            measurement=_name(doc, "measurement"),
            channel_tag=channel_tag,
            labels=tuple((str(k), float(v)) for k, v in labels.items()),
        )
    except (ValueError, TypeError) as err:
        raise PayloadError(f"bad stream description: {err}") from err


def _decode_arrays(doc: dict[str, Any], spec: StreamSpec, n: int, seq: int) -> SampleBatch:
    try:
        ts = np.array(_require(doc, "t", list), dtype=np.int64)
        quality = np.array(_require(doc, "q", list), dtype=np.int64)
        values = np.array(_require(doc, "values", list), dtype=np.float64)
        rx = np.array(doc["rx"], dtype=np.int64) if "rx" in doc else None
    except (ValueError, TypeError, OverflowError) as err:
        raise PayloadError(f"bad array contents: {err}") from err
    if ts.shape != (n,) or quality.shape != (n,) or (rx is not None and rx.shape != (n,)):
        raise PayloadError(f"t, q (and rx) must hold n={n} integers")
    if values.shape != (n, spec.width):
        raise PayloadError(f"values must be {n} rows of {spec.width} numbers, got {values.shape}")
    if quality.min() < 0 or quality.max() > 255:
        raise PayloadError("quality codes must be 0..255")
    return SampleBatch(
        spec, ts, values, quality.astype(np.uint8), seq,
        historical=bool(_require(doc, "historical", bool)),
        text=_check_text(doc.get("text"), n),
        receive_ns=rx,
    )


_KNOWN_KEYS = frozenset((
    "v", "gateway", "epoch", "site", "device", "stream", "kind", "measurement", "channel_tag",
    "rate_hz", "fields", "units", "labels", "seq", "n", "historical", "t", "rx", "q",
    "values", "text",
))


@cache
def payload_schema() -> dict[str, Any]:
    """Return the JSON Schema of the v1 payload shipped with the package."""
    text = resources.files(__package__).joinpath("schema/payload-v1.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


_LIVE = b'"historical":false'
_HISTORICAL = b'"historical":true'


def as_historical(payload: bytes) -> bytes:
    """Return an encoded payload (JSON or binary) marked as replayed rather than live.

    Both encodings start with the same orjson header, in which ``historical`` is written
    exactly once and before any sample array, so the first occurrence is the flag.
    """
    return payload.replace(_LIVE, _HISTORICAL, 1)
