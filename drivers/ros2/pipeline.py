"""From raw CDR payloads of one topic to ring appends: shared by the DDS driver and bag replay.

Sampled topics are decoded batch-wise: once the first good message fixes the payload
layout, every later payload of the same length whose non-data bytes (joint names, frame
ids, sequence lengths, padding) equal that template is decoded with a few numpy ops for
the whole batch. Anything else goes through the strict scalar decoder; what that rejects
is quarantined. One ``ctx.append`` per batch (append and count) keeps the order of arrival.

The common batch (every payload matches the template, every stamp is in range) takes a
short path with no per-batch scratch: up to ``SMALL_BATCH`` payloads are checked and
unpacked with ``bytes.startswith`` and ``struct`` (a 100 Hz topic gives one or two per
20 ms batch window, where a few dozen numpy calls would cost more than the decoding);
larger ones with a handful of numpy calls over the joined payloads (both in
:mod:`drivers.ros2.layout`). Any batch that is not that common case goes through the
general path unchanged, so what is appended and what is quarantined does not depend on
the path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from drivers.ros2.cdr import CdrError
from drivers.ros2.gaps import StampGaps
from drivers.ros2.health import HEALTH_STREAM as HEALTH_STREAM
from drivers.ros2.health import HealthStream as HealthStream
from drivers.ros2.layout import Layout, decode_small, decode_uniform
from drivers.ros2.mapping import (
    CRTK_STATES,
    SEVERITIES,
    Decoded,
    Family,
    FloatArray,
    IntArray,
    MappingError,
    TypeMapping,
    decode,
    joint_fields,
)
from drivers.ros2.stale import StaleClock
from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind, StreamSpec
from gateway.ring import StreamRing

NS = 1_000_000_000
SMALL_BATCH = 8  # batches up to this size skip numpy (see the module docstring)


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """Resolved settings of one subscribed topic."""

    topic: str
    ros_type: str
    stream: str
    rate_hz: float
    stale_periods: float | None = None  # None: no stale detection for this topic
    prismatic: frozenset[str] = frozenset()
    stale_min_ns: int = 0


@dataclass
class _Decoded:
    """Per-batch scratch arrays."""

    ok: npt.NDArray[np.bool_]
    sec: IntArray
    nanosec: IntArray
    values: FloatArray
    texts: list[str | None] = field(default_factory=list)


class TopicPipeline:
    """Decodes one topic's payloads and appends them to its stream's ring."""

    def __init__(self, ctx: DriverContext, settings: TopicSettings, mapping: TypeMapping,
                 health: HealthStream | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.mapping = mapping
        self.health = health
        self.ring: StreamRing | None = None
        self.layout: Layout | None = None
        self.channels: tuple[str, ...] = ()
        self.parts: tuple[str, ...] = ()
        self.received = 0
        self.quarantined = 0
        self.fast_rows = 0  # payloads decoded through the layout template (batch paths)
        self.slow_rows = 0  # payloads decoded one by one
        self.last_stamp_ns = 0
        self.first_stamp_ns: int | None = None  # earliest / latest sample time appended
        self.max_stamp_ns: int | None = None
        self.last_values: FloatArray | None = None
        self.clock: StaleClock | None = None
        if settings.stale_periods is not None and settings.rate_hz > 0:
            self.clock = StaleClock.for_rate(settings.rate_hz, settings.stale_periods,
                                             settings.stale_min_ns)
        # live periodic topics: samples missing between header stamps (drivers.ros2.gaps)
        self.gaps = (StampGaps(self.clock.limit_ns)
                     if self.clock is not None and not mapping.is_event else None)
        self.checked_ns: int | None = None  # monotonic: the last stale check (housekeeping)
        self._stalled = False  # the batch being appended ends a stall of the driver itself

    @property
    def spec(self) -> StreamSpec | None:
        """Return the stream spec once the first good message fixed it."""
        return None if self.ring is None else self.ring.stream

    def ingest(self, payloads: Sequence[bytes], receive_ns: int | IntArray,
               now_mono_ns: int | None = None) -> int:
        """Decode and append a batch in arrival order; return how many samples were appended."""
        n = len(payloads)
        if n == 0:
            return 0
        self._stalled = self._driver_stalled(now_mono_ns)
        appended: int | None = None
        if self.layout is not None and self.layout.little:  # sampled, registered
            if n <= SMALL_BATCH:
                appended = self._append_small(payloads, receive_ns)
            else:
                appended = self._append_uniform(payloads, receive_ns)
        if appended is None:  # not the common case: the general path
            rx = (np.full(n, receive_ns, dtype=np.int64) if isinstance(receive_ns, int)
                  else np.asarray(receive_ns, dtype=np.int64))
            if self.mapping.is_event:
                appended = sum(self._ingest_event(p, int(t))
                               for p, t in zip(payloads, rx, strict=True))
            else:
                appended = self._ingest_sampled(payloads, rx)
        if appended:
            self._mark_seen(now_mono_ns)
        return appended

    # -- events: one append per message, at once ---------------------------------------

    def _ingest_event(self, payload: bytes, rx: int) -> int:
        decoded = self._decode_one(payload)
        if decoded is None:
            return 0
        ts = self._stamp_one(decoded, rx)
        if ts is None:
            return 0
        ring = self.ring or self._register(decoded)
        self.ctx.append_one(ring, ts, decoded.values, Quality.GOOD, decoded.text, rx)
        self.received += 1
        self.last_stamp_ns = ts
        self._track_range(ts, ts)
        self.last_values = decoded.values
        return 1

    # -- sampled streams: vectorized when the layout matches -------------------------

    def _ingest_sampled(self, payloads: Sequence[bytes], rx: IntArray) -> int:
        start = 0
        while self.ring is None and start < len(payloads):
            decoded = self._decode_one(payloads[start])
            start += 1
            if decoded is not None and self._stamp_one(decoded, int(rx[start - 1])) is not None:
                self._register(decoded)
                self.layout = Layout(payloads[start - 1], decoded)
                start -= 1  # decode it again with the batch, in order
        if self.ring is None or start >= len(payloads):
            return 0
        return self._append_batch(payloads[start:], rx[start:])

    def _append_small(self, payloads: Sequence[bytes],
                      receive_ns: int | IntArray) -> int | None:
        """Append a small batch that matches the layout, decoded with struct (no numpy).

        Return None, having changed nothing, unless every payload matches the template and
        has a stamp in range: the general path then handles (and quarantines) the batch.
        """
        assert self.layout is not None and self.ring is not None
        n = len(payloads)
        if isinstance(receive_ns, int):
            rx_list = [receive_ns] * n
        else:
            rx_arr = np.asarray(receive_ns, dtype=np.int64)
            if rx_arr.shape != (n,):
                return None
            rx_list = rx_arr.tolist()
        decoded = decode_small(self.layout, payloads, rx_list)
        if decoded is None:
            return None
        rows, stamps, quality = decoded
        self.fast_rows += n
        if n == 1:  # the common 100 Hz case: no arrays to build
            last = np.array(rows[0], dtype=np.float64)
            self.ctx.append_one(self.ring, stamps[0], last, quality[0], None, rx_list[0])
        else:
            values = np.array(rows, dtype=np.float64)
            self.ctx.append(self.ring, np.array(stamps, dtype=np.int64), values,
                            np.array(quality, dtype=np.uint8),
                            receive_ns=np.array(rx_list, dtype=np.int64))
            last = values[-1].copy()
        self._after_append(n, min(stamps), max(stamps), stamps[-1], last, stamps)
        return n

    def _append_uniform(self, payloads: Sequence[bytes],
                        receive_ns: int | IntArray) -> int | None:
        """Append a batch that matches the layout with a few numpy operations, no scratch.

        Return None, having changed nothing, unless every payload matches the template and
        has a stamp in range (as :meth:`_append_small`).
        """
        assert self.layout is not None and self.ring is not None
        n = len(payloads)
        if isinstance(receive_ns, int):
            rx = np.full(n, receive_ns, dtype=np.int64)
        else:
            rx = np.asarray(receive_ns, dtype=np.int64)
            if rx.shape != (n,):
                return None
        decoded = decode_uniform(self.layout, payloads, rx)
        if decoded is None:
            return None
        ts, values, quality = decoded
        self.fast_rows += n
        self.ctx.append(self.ring, ts, values, quality, receive_ns=rx)
        self._after_append(n, int(ts.min()), int(ts.max()), int(ts[-1]), values[-1].copy(),
                           ts)
        return n

    def _append_batch(self, payloads: Sequence[bytes], rx: IntArray) -> int:
        assert self.ring is not None
        n = len(payloads)
        scratch = _Decoded(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64),
                           np.zeros(n, dtype=np.int64),
                           np.zeros((n, self.ring.stream.width), dtype=np.float64))
        pending = self._vectorized(payloads, scratch)
        for i in pending:
            self._scalar_into(payloads[int(i)], int(i), scratch)
        ts, quality = self._timestamps(scratch, rx)
        keep = np.flatnonzero(scratch.ok)
        if keep.size == 0:
            return 0
        if keep.size < n:
            ts, quality, rx = ts[keep], quality[keep], rx[keep]
            values = scratch.values[keep]
        else:
            values = scratch.values
        self.ctx.append(self.ring, ts, values, quality, receive_ns=rx)
        self._after_append(int(keep.size), int(ts.min()), int(ts.max()), int(ts[-1]),
                           values[-1].copy(), ts)
        return int(keep.size)

    def _vectorized(self, payloads: Sequence[bytes], out: _Decoded) -> IntArray:
        """Decode every payload that matches the layout; return the indices left over."""
        n = len(payloads)
        layout = self.layout
        if layout is None or not layout.little:
            return np.arange(n, dtype=np.int64)
        lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=n)
        cand = np.flatnonzero(lengths == layout.length)
        if cand.size == 0:
            return np.arange(n, dtype=np.int64)
        joined = b"".join(payloads) if cand.size == n else b"".join(payloads[int(i)]
                                                                      for i in cand)
        mat = np.frombuffer(joined, dtype=np.uint8).reshape(cand.size, layout.length)
        match, sec, nanosec, values = layout.extract(mat)
        rows = cand[match]
        self.fast_rows += int(rows.size)
        out.ok[rows] = True
        out.sec[rows] = sec
        out.nanosec[rows] = nanosec
        out.values[rows] = values
        leftover = np.ones(n, dtype=bool)
        leftover[rows] = False
        return np.flatnonzero(leftover)

    def _scalar_into(self, payload: bytes, i: int, out: _Decoded) -> None:
        self.slow_rows += 1
        decoded = self._decode_one(payload)
        if decoded is None:
            return
        if decoded.channels != self.channels or decoded.parts != self.parts:
            self._quarantine("layout_changed", f"joints {decoded.channels} arrays "
                             f"{decoded.parts}, stream has {self.channels} {self.parts}")
            return
        out.ok[i] = True
        out.sec[i] = decoded.sec
        out.nanosec[i] = decoded.nanosec
        out.values[i] = decoded.values

    def _timestamps(self, out: _Decoded, rx: IntArray) -> tuple[IntArray, npt.NDArray[np.uint8]]:
        """Header stamp as sample time (receive time when unset); quarantine invalid stamps."""
        quality = np.zeros(out.ok.shape[0], dtype=np.uint8)
        if self.layout is not None and self.layout.stamp_offset < 0:
            ts = rx.copy()
        else:
            bad = out.ok & ((out.nanosec >= NS) | (out.sec < 0))
            for _ in range(int(bad.sum())):
                self._quarantine("bad_stamp", "header stamp out of range")
            out.ok &= ~bad
            unset = (out.sec == 0) & (out.nanosec == 0)
            ts = np.where(unset, rx, out.sec * NS + out.nanosec)
            quality[unset] = Quality.UNCERTAIN
        quality[~np.isfinite(out.values).all(axis=1)] = Quality.BAD
        return ts, quality

    # -- shared helpers ----------------------------------------------------------------

    def _decode_one(self, payload: bytes) -> Decoded | None:
        try:
            return decode(self.mapping, payload, self.settings.topic)
        except MappingError as err:
            self._quarantine(err.reason, str(err))
        except CdrError as err:
            self._quarantine("decode", str(err))
        return None

    def _stamp_one(self, decoded: Decoded, rx: int) -> int | None:
        if not decoded.has_stamp or (decoded.sec == 0 and decoded.nanosec == 0):
            return rx
        if decoded.sec < 0 or decoded.nanosec >= NS:
            self._quarantine("bad_stamp", f"stamp {decoded.sec}.{decoded.nanosec:09d}")
            return None
        return decoded.sec * NS + decoded.nanosec

    def _quarantine(self, reason: str, detail: str) -> None:
        self.quarantined += 1
        self.ctx.quarantine(reason, f"{self.settings.topic}: {detail}")

    def _register(self, decoded: Decoded) -> StreamRing:
        self.ring = self.ctx.add_stream(self._spec_for(decoded))
        self.channels, self.parts = decoded.channels, decoded.parts
        return self.ring

    def _spec_for(self, decoded: Decoded) -> StreamSpec:
        m = self.mapping
        name, rate = self.settings.stream, self.settings.rate_hz
        if m.family is Family.JOINT_STATE:
            fields, units = joint_fields(decoded.channels, decoded.parts, self.settings.prismatic)
            return self.ctx.stream_spec(name, fields, units, rate_hz=rate,
                                        measurement=m.measurement, channel_tag="joint")
        if m.is_event:
            labels = CRTK_STATES if m.family is Family.OPERATING_STATE else SEVERITIES
            return self.ctx.stream_spec(name, m.fields, m.units, kind=StreamKind.EVENT,
                                        measurement=m.measurement, labels=labels)
        return self.ctx.stream_spec(name, m.fields, m.units, rate_hz=rate,
                                    measurement=m.measurement)

    def _after_append(self, n: int, lo: int, hi: int, newest: int, last_values: FloatArray,
                      stamps: list[int] | IntArray) -> None:
        """Bookkeeping after ``n`` samples (stamps lo..hi, the last one ``newest``) went in
        (appended and counted by ``ctx.append``)."""
        self.received += n
        self.last_stamp_ns = newest
        self._track_range(lo, hi)
        self.last_values = last_values
        if self.gaps is not None and self.layout is not None and self.layout.stamp_offset >= 0:
            self.gaps.feed(stamps if isinstance(stamps, list) else stamps.tolist(),
                           self._stalled)

    def _driver_stalled(self, now_mono_ns: int | None) -> bool:
        """Return True if no stale check ran for the stale limit: the driver itself stalled
        (a publisher's silence while the driver runs is seen as one: see drivers.ros2.gaps)."""
        if self.clock is None or self.checked_ns is None or now_mono_ns is None:
            return False
        return now_mono_ns - self.checked_ns >= self.clock.limit_ns

    def _track_range(self, lo: int, hi: int) -> None:
        self.first_stamp_ns = lo if self.first_stamp_ns is None else min(self.first_stamp_ns, lo)
        self.max_stamp_ns = hi if self.max_stamp_ns is None else max(self.max_stamp_ns, hi)

    # -- staleness -----------------------------------------------------------------------

    def _mark_seen(self, now_mono_ns: int | None) -> None:
        if self.clock is None:
            return
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        silent = self.clock.seen(now)
        if silent is not None and self.ring is not None:
            self.ctx.metrics.stale.labels(self.ring.stream.key).set(0)
            if self.health is not None:
                self.health.emit(self.last_stamp_ns, "FRESH", f"{self.settings.topic} recovered "
                                 f"after {silent / 1e9:.3f} s of silence")

    def silent_s(self, now_mono_ns: int) -> float:
        """Return seconds since the last message (0 before the first or without a clock)."""
        return 0.0 if self.clock is None else self.clock.silent_ns(now_mono_ns) / 1e9

    def check_stale(self, now_mono_ns: int | None = None) -> bool:
        """Mark the stream stale if its topic went silent; return True on that transition.

        A STALE-quality sample repeating the last values is appended (timestamped on the
        source's timeline: last stamp + silence), the stale gauge is set and an event is
        emitted on the health stream.
        """
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        self.checked_ns = now
        if self.clock is None or self.ring is None or self.last_values is None:
            return False
        silent = self.clock.check(now)
        if silent is None:
            return False
        ts = self.last_stamp_ns + silent
        if not self.mapping.is_event:
            self.ctx.append_one(self.ring, ts, self.last_values, Quality.STALE, None,
                                time.time_ns())
        self.ctx.metrics.stale.labels(self.ring.stream.key).set(1)
        if self.health is not None:
            self.health.emit(ts, "STALE", f"{self.settings.topic} stale: silent for "
                             f"{silent / 1e9:.3f} s (> {self.clock.periods:g} periods at "
                             f"{self.settings.rate_hz:g} Hz)")
        return True
