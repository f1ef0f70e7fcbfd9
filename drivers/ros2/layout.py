"""The fixed byte layout of a topic's payloads, and the two batch decoders built on it.

Once the first good message of a sampled topic fixes the layout, every later payload of
the same length whose non-data bytes (joint names, frame ids, sequence lengths, padding)
equal that template can be decoded without parsing: :func:`decode_small` with
``bytes.startswith`` and ``struct`` (a 100 Hz topic gives one or two per batch window,
where a few dozen numpy calls would cost more than the decoding), :func:`decode_uniform`
with a handful of numpy calls over the joined payloads. Both return None, having decided
nothing, unless every payload matches and has a stamp in range; stamps, values and
quality are exactly those of the pipeline's general path.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from drivers.ros2.cdr import CDR2_LE, CDR_LE
from drivers.ros2.mapping import Decoded, FloatArray, IntArray
from gateway.model import Quality

NS = 1_000_000_000
_STAMP = struct.Struct("<iI")  # builtin_interfaces/Time, little endian


class Layout:
    """The fixed byte layout of one topic's payloads, for vectorized batch decoding."""

    def __init__(self, payload: bytes, decoded: Decoded) -> None:
        if decoded.value_offsets is None:
            raise ValueError("events have no fixed layout")
        self.length = len(payload)
        self.little = bytes(payload[:2]) in (CDR_LE, CDR2_LE)
        template = np.frombuffer(payload, dtype=np.uint8)
        mask = np.ones(self.length, dtype=bool)
        self.stamp_offset = decoded.stamp_offset
        if self.stamp_offset >= 0:
            mask[self.stamp_offset:self.stamp_offset + 8] = False
        self.value_idx = (decoded.value_offsets[:, None] + np.arange(8)[None, :]).reshape(-1)
        mask[self.value_idx] = False
        self.struct_idx = np.flatnonzero(mask)
        self.struct_bytes = template[self.struct_idx].copy()
        # the same template for the plain-Python path: (start, bytes) of each run of
        # non-data bytes, and one struct that unpacks every value in payload order
        self.struct_runs = _runs(payload, mask)
        offsets = [int(o) for o in decoded.value_offsets]
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        fmt, end = ["<"], offsets[order[0]]
        for i in order:
            if offsets[i] > end:
                fmt.append(f"{offsets[i] - end}x")
            fmt.append("d")
            end = offsets[i] + 8
        self.values_start = offsets[order[0]]
        self.values_struct = struct.Struct("".join(fmt))
        rank = [0] * len(order)
        for position, i in enumerate(order):
            rank[i] = position
        # field order from payload order; None when they are the same
        self.reorder: Callable[[tuple[float, ...]], tuple[float, ...]] | None = (
            None if rank == sorted(rank) else operator.itemgetter(*rank))

    def extract(self, mat: npt.NDArray[np.uint8]) -> tuple[
            npt.NDArray[np.bool_], IntArray, IntArray, FloatArray]:
        """Return (matches template, sec, nanosec, values) for payload rows of ``mat``."""
        match = (mat[:, self.struct_idx] == self.struct_bytes).all(axis=1)
        rows = mat[match]
        if self.stamp_offset >= 0:
            stamp = np.ascontiguousarray(rows[:, self.stamp_offset:self.stamp_offset + 8])
            sec = stamp.view("<i4")[:, 0].astype(np.int64)
            nanosec = stamp.view("<u4")[:, 1].astype(np.int64)
        else:
            sec = nanosec = np.zeros(rows.shape[0], dtype=np.int64)
        values = np.ascontiguousarray(rows[:, self.value_idx]).view("<f8").astype(np.float64)
        return match, sec, nanosec, values


def _runs(payload: bytes, mask: npt.NDArray[np.bool_]) -> tuple[tuple[int, bytes], ...]:
    """Return (start, bytes) of each run of ``payload`` where ``mask`` is True."""
    runs: list[tuple[int, bytes]] = []
    flags = mask.tolist()
    i = 0
    while i < len(flags):
        if not flags[i]:
            i += 1
            continue
        j = i
        while j < len(flags) and flags[j]:
            j += 1
        runs.append((i, bytes(payload[i:j])))
        i = j
    return tuple(runs)


def decode_small(layout: Layout, payloads: Sequence[bytes], rx_list: list[int]) -> tuple[
        list[tuple[float, ...]], list[int], list[int]] | None:
    """Return (values rows, stamps, quality) of payloads matching ``layout``, else None."""
    length, runs = layout.length, layout.struct_runs
    stamp_at = layout.stamp_offset
    unpack_values, values_at = layout.values_struct.unpack_from, layout.values_start
    reorder = layout.reorder
    rows: list[tuple[float, ...]] = []
    stamps: list[int] = []
    quality: list[int] = []
    for payload, rx in zip(payloads, rx_list, strict=True):
        if payload.__class__ is not bytes or len(payload) != length:
            return None
        for at, run in runs:
            if not payload.startswith(run, at):
                return None
        values = unpack_values(payload, values_at)
        if reorder is not None:
            values = reorder(values)
        q = Quality.GOOD
        if stamp_at < 0:
            stamp = rx
        else:
            sec, nanosec = _STAMP.unpack_from(payload, stamp_at)
            if nanosec >= NS or sec < 0:
                return None
            if sec == 0 and nanosec == 0:
                stamp, q = rx, Quality.UNCERTAIN
            else:
                stamp = sec * NS + nanosec
        # a finite sum means every value is finite; otherwise check them one by one
        if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
            q = Quality.BAD
        rows.append(values)
        stamps.append(stamp)
        quality.append(q)
    return rows, stamps, quality


def decode_uniform(layout: Layout, payloads: Sequence[bytes], rx: IntArray) -> tuple[
        IntArray, FloatArray, npt.NDArray[np.uint8]] | None:
    """Return (stamps, values, quality) of payloads matching ``layout``, else None."""
    n = len(payloads)
    if set(map(len, payloads)) != {layout.length}:
        return None
    mat = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, layout.length)
    match, sec, nanosec, values = layout.extract(mat)
    if not match.all():
        return None
    quality = np.zeros(n, dtype=np.uint8)
    if layout.stamp_offset < 0:
        ts = rx.copy()
    else:
        if int(nanosec.max()) >= NS or int(sec.min()) < 0:
            return None
        ts = sec * NS + nanosec  # in range: 0 exactly when the stamp is unset
        if not ts.all():
            unset = ts == 0
            ts[unset] = rx[unset]
            quality[unset] = Quality.UNCERTAIN
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        quality[~finite] = Quality.BAD
    return ts, values, quality
