"""The one record type that crosses every stage: a stream description and sample batches."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

TOPIC_SAFE = re.compile(r"[A-Za-z0-9_.-]+")

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
        for part, value in (("site", self.site), ("device", self.device), ("stream", self.stream)):
            if not TOPIC_SAFE.fullmatch(value):
                raise ValueError(
                    f"{part} name {value!r} must match {TOPIC_SAFE.pattern} (it becomes an MQTT"
                    " topic level: use '.' where a ROS topic has '/')"
                )
        if not self.fields:
            raise ValueError(f"stream {self.key}: at least one field is required")
        if len(self.units) != len(self.fields):
            raise ValueError(
                f"stream {self.key}: {len(self.fields)} fields but {len(self.units)} units"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"stream {self.key}: duplicate field names")
        if self.channel_tag is not None:
            bad = [name for name in self.fields if name.count(".") != 1]
            if bad:
                raise ValueError(
                    f"stream {self.key}: channel_tag set but fields {bad} are not 'channel.field'"
                )

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
