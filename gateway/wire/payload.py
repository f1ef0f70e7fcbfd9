"""The wire contract: SampleBatch <-> JSON payload on ``medgw/v1/{site}/{device}/{stream}``.

The JSON Schema of the payload is ``gateway/wire/schema/payload-v1.schema.json``. ``decode``
checks the same rules in code (fast enough for every message), names and fields by the
one rule of gateway.model.validate_stream, and raises PayloadError for any input at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, lru_cache
from importlib import resources
from typing import Any, NamedTuple

import numpy as np
import orjson

from gateway.errors import PayloadError, StreamSpecError
from gateway.model import SampleBatch, StreamKind, StreamSpec, check_topic_name

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

MAX_SEQ = 2**63 - 1  # sequence numbers and epochs are int64 everywhere downstream


class Decoded(NamedTuple):
    """A decoded payload: who sent it (gateway id and start epoch) and the samples."""

    gateway: str
    epoch: int
    batch: SampleBatch


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
    value = doc.get(key)
    try:
        check_topic_name(key, value)
    except StreamSpecError as err:
        raise PayloadError(f"field {key!r}: {err}") from err
    return str(value)


def _counters(doc: dict[str, Any]) -> tuple[int, int, int]:
    """Return (n, seq, epoch), each checked to fit int64 (seq + n - 1 included)."""
    n = _require(doc, "n", int)
    seq = _require(doc, "seq", int)
    epoch = doc.get("epoch", 0)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_SEQ:
        raise PayloadError(f"field 'epoch' must be an integer 0..2**63-1, got {epoch!r:.40}")
    if n < 1 or seq < 0:
        raise PayloadError("n must be >= 1 and seq >= 0")
    if seq + n - 1 > MAX_SEQ:
        raise PayloadError(f"seq {seq} + n {n} runs past 2**63-1")
    return n, seq, epoch


def _check_header(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise PayloadError(f"{what} is not a JSON object")
    if doc.get("v") != PAYLOAD_VERSION:
        raise PayloadError(f"{what}: unsupported payload version {doc.get('v')!r:.40}")
    extra = set(doc) - _KNOWN_KEYS
    if extra:
        raise PayloadError(f"{what}: unknown keys {sorted(extra)[:10]!r:.200}")
    return doc


def decode(payload: bytes) -> Decoded:
    """Parse and check a JSON or binary payload; return (gateway, epoch, batch) or raise
    PayloadError, whatever the bytes (never another exception)."""
    if payload.startswith(BINARY_MAGIC):
        return guarded(_decode_binary, payload)
    return guarded(_decode_json, payload)


def guarded(step: Callable[[Any], Decoded], arg: Any) -> Decoded:
    try:
        return step(arg)
    except (ValueError, TypeError, OverflowError, KeyError, IndexError, RecursionError) as err:
        # a rule above missed a case: still the sender's fault, never the worker's
        raise PayloadError(f"malformed payload ({type(err).__name__}: {err})"[:500]) from err


def _decode_json(payload: bytes) -> Decoded:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"not JSON: {err}") from err
    return decode_doc(doc)


def decode_doc(doc: Any) -> Decoded:
    doc = _check_header(doc, "payload")
    spec = _decode_spec(doc)
    n, seq, epoch = _counters(doc)
    batch = _decode_arrays(doc, spec, n, seq)
    return Decoded(_name(doc, "gateway"), epoch, batch)


def _decode_binary(payload: bytes) -> Decoded:
    start = len(BINARY_MAGIC)
    end = payload.find(b"\n", start)
    if end < 0:
        raise PayloadError("binary payload: header not terminated")
    try:
        doc = orjson.loads(payload[start:end])
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"binary payload: header is not JSON: {err}") from err
    doc = _check_header(doc, "binary payload header")
    if any(key in doc for key in ("t", "q", "values")):
        raise PayloadError("binary payload: arrays t, q, values belong after the header")
    has_rx = _require(doc, "rx", bool)
    spec = _decode_spec(doc)
    n, seq, epoch = _counters(doc)
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
    return Decoded(_name(doc, "gateway"), epoch, batch)


def _check_text(text: Any, n: int) -> tuple[str, ...] | None:
    if text is None:
        return None
    if not isinstance(text, list) or len(text) != n or not all(isinstance(s, str) for s in text):
        raise PayloadError(f"text must hold n={n} strings")
    return tuple(text)


_SEEN: dict[tuple[Any, ...], tuple[Any, Any, Any, Any, StreamSpec]] = {}
_SEEN_MAX = 4096


def _decode_spec(doc: dict[str, Any]) -> StreamSpec:
    """Return the payload's stream spec; a description seen before skips the checks.

    A gateway sends the same description in every message of a stream: when names, fields,
    units, labels and rate equal (type included) those of a description already checked,
    its spec is returned as is; anything else goes through every check.
    """
    key = (doc.get("site"), doc.get("device"), doc.get("stream"), doc.get("measurement"),
           doc.get("kind"), doc.get("channel_tag"))
    fields, units, labels, rate = (doc.get("fields"), doc.get("units"), doc.get("labels"),
                                   doc.get("rate_hz"))
    if all(part is None or type(part) is str for part in key):
        hit = _SEEN.get(key)
        if hit is not None and hit[0] == fields and hit[1] == units and \
                _same_number(hit[3], rate) and _same_labels(hit[2], labels):
            return hit[4]
    spec = _checked_spec(doc)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = (fields, units, labels, rate, spec)
    return spec


def _same_number(seen: Any, value: Any) -> bool:
    return type(seen) is type(value) and seen == value


def _same_labels(seen: Any, value: Any) -> bool:
    if seen is None or value is None:
        return seen is value
    return type(value) is dict and seen == value and all(
        _same_number(seen[k], v) for k, v in value.items())


def _checked_spec(doc: dict[str, Any]) -> StreamSpec:
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise PayloadError(f"field 'kind' = {kind!r:.40} is not sampled/event")
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
    rate = doc.get("rate_hz") or 0.0
    if not isinstance(rate, (int, float)) or isinstance(rate, bool):
        raise PayloadError("rate_hz must be a number")
    names = tuple(doc.get(key) for key in ("site", "device", "stream", "measurement"))
    if not all(isinstance(name, str) for name in names):
        raise PayloadError("site, device, stream and measurement must be strings")
    try:
        return _spec(*names, tuple(fields), tuple(units), kind, float(rate), channel_tag,
                     tuple((str(k), float(v)) for k, v in labels.items()))
    except StreamSpecError as err:
        raise PayloadError(f"bad stream description: {err}") from err


@lru_cache(maxsize=4096)
def _spec(site: str, device: str, stream: str, measurement: str, fields: tuple[str, ...],
          units: tuple[str, ...], kind: str, rate_hz: float, channel_tag: str | None,
          labels: tuple[tuple[str, float], ...]) -> StreamSpec:
    """Build (and validate, once per distinct description) a decoded stream's spec."""
    return StreamSpec(site=site, device=device, stream=stream, fields=fields, units=units,
                      kind=StreamKind(kind), rate_hz=rate_hz, measurement=measurement,
                      channel_tag=channel_tag, labels=labels)


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
    if n <= 16:  # numpy's reductions cost more than Python's on a few codes
        codes = quality.tolist()
        low, high = min(codes), max(codes)
    else:
        low, high = int(quality.min()), int(quality.max())
    if low < 0 or high > 255:
        raise PayloadError("quality codes must be 0..255")
    return SampleBatch(
        spec, ts, values, quality.astype(np.uint8), seq,
        historical=bool(_require(doc, "historical", bool)),
        text=_check_text(doc.get("text"), n),
        receive_ns=rx,
    )


_KINDS = frozenset(kind.value for kind in StreamKind)
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
