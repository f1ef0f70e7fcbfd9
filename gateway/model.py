"""The one record type that crosses every stage: a stream description and sample batches."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.errors import StreamSpecError

TOPIC_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME_CHARS = 256  # per name: keeps topics, series keys and commit messages small
# Field keys the line protocol writes itself (or InfluxDB refuses), compared casefolded.
RESERVED_FIELDS = frozenset({"quality", "seq", "text", "time"})
RESERVED_STREAMS = frozenset({"status"})  # the last level of a gateway's status topic
RESERVED_MEASUREMENTS = frozenset({"medgw_gap"})
RESERVED_TAGS = frozenset({"site", "device", "stream", "time"})
# What line protocol cannot carry in a key or tag value: backslash, control characters
# (C0, DEL, C1; includes newline and carriage return) and lone surrogates (not UTF-8).
_UNCARRIABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")

TimestampArray = npt.NDArray[np.int64]
ValueArray = npt.NDArray[np.float64]
QualityArray = npt.NDArray[np.uint8]


class StreamKind(str, enum.Enum):
    """Whether a stream is periodic telemetry or discrete events (priority lane)."""

    SAMPLED = "sampled"
    EVENT = "event"


class Quality(enum.IntEnum):
    """Per-sample quality code (uint8 on the wire and in InfluxDB)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    STALE = 3  # source silent: the value is the last one seen, not a current one
    HISTORICAL_GAP = 4  # placeholder for a known hole (never carries a real value)


def _refuse(key: str, part: str, name: object, why: str) -> StreamSpecError:
    shown = name[:60] + "..." if isinstance(name, str) and len(name) > 60 else name
    where = f"stream {key[:200]}: " if key else ""
    return StreamSpecError(f"{where}{part} {shown!r} {why}", part,
                           name if isinstance(name, str) else repr(name)[:200])


def check_topic_name(part: str, value: object, key: str = "") -> None:
    """Refuse a site, device, stream or measurement name (it is an MQTT topic level or a
    line-protocol identifier): StreamSpecError unless ``[A-Za-z0-9_.-]{1,256}``."""
    if not isinstance(value, str) or not TOPIC_SAFE.fullmatch(value):
        raise _refuse(key, part, value,
                      f"must match {TOPIC_SAFE.pattern} (it becomes an MQTT topic level: "
                      "use '.' where a ROS topic has '/')")
    if len(value) > MAX_NAME_CHARS:
        raise _refuse(key, part, value, f"is longer than {MAX_NAME_CHARS} characters")


def check_key_name(part: str, value: object, key: str = "") -> None:
    """Refuse a field key, channel or tag key line protocol cannot carry (StreamSpecError)."""
    if not isinstance(value, str) or not value:
        raise _refuse(key, part, value, "must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise _refuse(key, part, value, f"is longer than {MAX_NAME_CHARS} characters")
    bad = _UNCARRIABLE.search(value)
    if bad is not None:
        raise _refuse(key, part, value, f"contains {bad.group()!r}, which line protocol "
                      "cannot carry (backslash, control characters)")


def map_field_name(name: str) -> str:
    """Return a field name the rule accepts, deterministically: characters line protocol
    cannot carry become ``_``, a reserved name gets a trailing ``_`` (``Quality`` ->
    ``Quality_``), an empty one is ``_``, a long one is cut. Collisions are the caller's."""
    mapped = _UNCARRIABLE.sub("_", name)[:MAX_NAME_CHARS] or "_"
    leaf = mapped.rsplit(".", 1)[-1]
    if leaf.casefold() in RESERVED_FIELDS:
        mapped = mapped[:MAX_NAME_CHARS - 1] + "_"
    return mapped


def validate_stream(spec: StreamSpec) -> None:
    """The one rule for names and fields, at registration and at ingest (StreamSpecError).

    - site, device, stream, measurement: ``[A-Za-z0-9_.-]``, 1..256 characters; no stream
      named ``status``, no measurement ``medgw_gap``;
    - fields: at least one, unique, 1..256 characters without backslash or control
      characters, none named quality, seq, text or time in any case; units one per field;
    - channel_tag: a topic-safe name other than site/device/stream/time (any case), and then
      every field is ``channel.field`` with both parts non-empty.
    """
    key = spec.key
    for part in ("site", "device", "stream", "measurement"):
        check_topic_name(part, getattr(spec, part), key)
    if spec.stream in RESERVED_STREAMS:
        raise _refuse(key, "stream", spec.stream, "is reserved (gateway status topic)")
    if spec.measurement in RESERVED_MEASUREMENTS:
        raise _refuse(key, "measurement", spec.measurement, "is reserved (gap records)")
    if not spec.fields:
        raise StreamSpecError(f"stream {key}: at least one field is required", "fields")
    if len(spec.units) != len(spec.fields):
        raise StreamSpecError(
            f"stream {key}: {len(spec.fields)} fields but {len(spec.units)} units", "units")
    if len(set(spec.fields)) != len(spec.fields):
        raise StreamSpecError(f"stream {key}: duplicate field names", "fields")
    if spec.channel_tag is not None:
        check_topic_name("channel_tag", spec.channel_tag, key)
        if spec.channel_tag.casefold() in RESERVED_TAGS:
            raise _refuse(key, "channel_tag", spec.channel_tag, "is reserved")
    for name in spec.fields:
        _check_field(key, name, spec.channel_tag is not None)


def _check_field(key: str, name: str, channels: bool) -> None:
    check_key_name("field", name, key)
    leaf = name
    if channels:
        parts = name.split(".")
        if len(parts) != 2 or not all(parts):
            raise _refuse(key, "field", name, "is not 'channel.field' (channel_tag is set)")
        leaf = parts[1]
    if leaf.casefold() in RESERVED_FIELDS:
        raise _refuse(key, "field", name, f"is reserved ({', '.join(sorted(RESERVED_FIELDS))}"
                      " in any case are written by medgw itself)")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Describes one stream: where it comes from, what its columns are, how to store it.

    ``fields`` name the value columns. When ``channel_tag`` is set, every field name is
    ``"<channel>.<field>"`` (e.g. ``"outer_yaw.position"``) and InfluxDB gets one point per
    channel with tag ``<channel_tag>=<channel>``, keeping tag cardinality bounded.
    """

    site: str
    device: str
    stream: str
    fields: tuple[str, ...]
    units: tuple[str, ...]
    kind: StreamKind = StreamKind.SAMPLED
    rate_hz: float = 0.0
    measurement: str = "telemetry"
    channel_tag: str | None = None
    labels: tuple[tuple[str, float], ...] = ()  # enum names for event codes, e.g. ("FAULT", 3.0)
    # ``site/device/stream``, the stream's identity everywhere (computed once: hot path)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.site}/{self.device}/{self.stream}")
        validate_stream(self)

    @property
    def width(self) -> int:
        """Return the number of value columns."""
        return len(self.fields)

    @property
    def is_event(self) -> bool:
        """Return True for event streams, which take the priority lane."""
        return self.kind is StreamKind.EVENT


@dataclass(slots=True)
class SampleBatch:
    """A run of consecutive samples of one stream.

    Sequence numbers are per stream and contiguous inside a batch: sample ``i`` has
    sequence number ``first_seq + i``. ``text`` is optional per-sample text for event
    streams (an error message, a state name).
    """

    stream: StreamSpec
    timestamps_ns: TimestampArray
    values: ValueArray
    quality: QualityArray
    first_seq: int
    historical: bool = False
    text: tuple[str, ...] | None = None
    receive_ns: TimestampArray | None = field(default=None)

    def __post_init__(self) -> None:
        n = self.timestamps_ns.shape[0]
        if self.timestamps_ns.dtype != np.int64 or self.timestamps_ns.ndim != 1:
            raise ValueError("timestamps_ns must be a 1-D int64 array")
        if self.values.dtype != np.float64 or self.values.shape != (n, self.stream.width):
            raise ValueError(
                f"values must be float64 shaped ({n}, {self.stream.width}),"
                f" got {self.values.dtype} {self.values.shape}"
            )
        if self.quality.dtype != np.uint8 or self.quality.shape != (n,):
            raise ValueError(f"quality must be uint8 shaped ({n},)")
        if self.text is not None and len(self.text) != n:
            raise ValueError(f"text must have {n} entries")
        if self.first_seq < 0:
            raise ValueError("first_seq must be >= 0")

    def __len__(self) -> int:
        return int(self.timestamps_ns.shape[0])

    @property
    def last_seq(self) -> int:
        """Return the sequence number of the last sample (first_seq - 1 when empty)."""
        return self.first_seq + len(self) - 1

    def slice(self, start: int, stop: int) -> SampleBatch:
        """Return samples ``start:stop`` as a new batch sharing memory with this one."""
        return SampleBatch(
            stream=self.stream,
            timestamps_ns=self.timestamps_ns[start:stop],
            values=self.values[start:stop],
            quality=self.quality[start:stop],
            first_seq=self.first_seq + start,
            historical=self.historical,
            text=None if self.text is None else self.text[start:stop],
            receive_ns=None if self.receive_ns is None else self.receive_ns[start:stop],
        )


def make_batch(
    stream: StreamSpec,
    timestamps_ns: npt.ArrayLike,
    values: npt.ArrayLike,
    quality: npt.ArrayLike | int = Quality.GOOD,
    first_seq: int = 0,
    text: tuple[str, ...] | None = None,
) -> SampleBatch:
    """Build a batch from array-likes, coercing dtypes and broadcasting a scalar quality."""
    ts = np.ascontiguousarray(timestamps_ns, dtype=np.int64).reshape(-1)
    vals = np.ascontiguousarray(values, dtype=np.float64).reshape(ts.shape[0], stream.width)
    if isinstance(quality, int):
        q = np.full(ts.shape[0], quality, dtype=np.uint8)
    else:
        q = np.ascontiguousarray(quality, dtype=np.uint8).reshape(-1)
    return SampleBatch(stream, ts, vals, q, first_seq, text=text)
