"""Generates deterministic waveforms: the value of sample ``seq`` depends on ``seq`` only."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.driver import DriverContext
from gateway.model import Quality, StreamKind, StreamSpec
from gateway.ring import StreamRing

Waveform = Literal["sine", "ramp", "noise", "square"]


class SyntheticStream(BaseModel):
    """One generated stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    fields: int = Field(default=3, ge=1, le=1024, description="number of value columns")
    unit: str = ""
    rate_hz: float = Field(default=100.0, gt=0, le=100_000)
    waveform: Waveform = "sine"
    amplitude: float = 1.0
    period_s: float = Field(default=2.0, gt=0)
    kind: StreamKind = StreamKind.SAMPLED
    measurement: str = "synthetic"


class SyntheticOptions(BaseModel):
    """Options of the synthetic driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    streams: list[SyntheticStream] = Field(min_length=1)
    tick_ms: float = Field(default=20.0, gt=0, description="how often samples are appended")
    total_samples: int | None = Field(
        default=None, ge=1, description="stop each stream after this many samples"
    )
    seed: int = 0


def waveform_values(stream: SyntheticStream, seq: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return the (n, fields) values of samples ``seq``: a pure function, tests recompute it."""
    t = seq.astype(np.float64)[:, None] / stream.rate_hz
    column = np.arange(stream.fields, dtype=np.float64)[None, :]
    phase = 2.0 * np.pi * (t / stream.period_s) + column * (np.pi / 8.0)
    if stream.waveform == "sine":
        return stream.amplitude * np.sin(phase)
    if stream.waveform == "ramp":
        return stream.amplitude * ((t / stream.period_s + column / 10.0) % 1.0)
    if stream.waveform == "square":
        return stream.amplitude * np.sign(np.sin(phase))
    # "noise": a hash of (seq, column, seed) mapped to [-amplitude, amplitude)
    mixed = (seq.astype(np.uint64)[:, None] * np.uint64(6364136223846793005)
             + np.arange(stream.fields, dtype=np.uint64)[None, :] * np.uint64(1442695040888963407)
             + np.uint64(seed))
    mixed ^= mixed >> np.uint64(33)
    unit = (mixed % np.uint64(1 << 20)).astype(np.float64) / (1 << 20)
    return stream.amplitude * (2.0 * unit - 1.0)


class SyntheticDriver:
    """Appends generated samples on a wall-clock schedule, with exact per-sample timestamps."""

    def __init__(self, ctx: DriverContext, options: SyntheticOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.rings: list[tuple[SyntheticStream, StreamRing]] = [
            (stream, ctx.add_stream(self._spec(stream))) for stream in options.streams
        ]

    def _spec(self, stream: SyntheticStream) -> StreamSpec:
        return self.ctx.stream_spec(
            stream.name,
            tuple(f"f{i}" for i in range(stream.fields)),
            (stream.unit,) * stream.fields,
            kind=stream.kind,
            rate_hz=stream.rate_hz,
            measurement=stream.measurement,
        )

    async def run(self) -> None:
        """Generate until cancelled (or until every stream reached ``total_samples``)."""
        self.ctx.set_connected(True)
        start_ns = time.time_ns()
        start_mono = time.monotonic()
        emitted = [0] * len(self.rings)
        while True:
            elapsed = time.monotonic() - start_mono
            done = True
            for i, (stream, ring) in enumerate(self.rings):
                due = int(elapsed * stream.rate_hz) + 1
                if self.options.total_samples is not None:
                    due = min(due, self.options.total_samples)
                    done = done and due >= self.options.total_samples
                else:
                    done = False
                if due > emitted[i]:
                    self._emit(stream, ring, start_ns, emitted[i], due)
                    emitted[i] = due
            if done:
                return
            await asyncio.sleep(self.options.tick_ms / 1000.0)

    def _emit(self, stream: SyntheticStream, ring: StreamRing, start_ns: int, lo: int,
              hi: int) -> None:
        index = np.arange(lo, hi, dtype=np.int64)
        timestamps = start_ns + (index * 1e9 / stream.rate_hz).astype(np.int64)
        seq = ring.write_seq + np.arange(hi - lo, dtype=np.int64)
        values = waveform_values(stream, seq, self.options.seed)
        quality = np.full(hi - lo, Quality.GOOD, dtype=np.uint8)
        text = None
        if stream.kind is StreamKind.EVENT:
            text = tuple(f"synthetic event {int(s)}" for s in seq)
        ring.append(timestamps, values, quality, text=text)
        self.ctx.count(ring, hi - lo, int(timestamps[-1]))
