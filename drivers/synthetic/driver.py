"""Generates deterministic waveforms: the value of sample ``seq`` depends on ``seq`` only."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    measurement: str = Field(default="synthetic", pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _storable(self) -> SyntheticStream:
        # the one rule of gateway.model (the ingest's): checked at load, not at start
        spec(self, "site", "device")
        return self


class SyntheticOptions(BaseModel):
    """Options of the synthetic driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    streams: list[SyntheticStream] = Field(min_length=1)
    tick_ms: float = Field(default=20.0, gt=0, description="how often samples are appended")
    total_samples: int | None = Field(
        default=None, ge=1, description="stop each stream after this many samples"
    )
    seed: int = Field(default=0, ge=0, lt=2**64)

    @model_validator(mode="after")
    def _unique_names(self) -> SyntheticOptions:
        names = [s.name for s in self.streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stream names must be unique, repeated: {', '.join(dupes)}")
        return self


def spec(stream: SyntheticStream, site: str, device: str) -> StreamSpec:
    """Return the StreamSpec of a generated stream (StreamSpecError if the ingest refuses it)."""
    return StreamSpec(site, device, stream.name, tuple(f"f{i}" for i in range(stream.fields)),
                      (stream.unit,) * stream.fields, kind=stream.kind, rate_hz=stream.rate_hz,
                      measurement=stream.measurement)


def waveform_values(stream: SyntheticStream, seq: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return the (n, fields) values of samples ``seq``: a pure function, tests recompute it."""
    seq = seq.astype(np.uint64)  # any sequence number (wraps at 2**64, never overflows)
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
    mixed = (seq[:, None] * np.uint64(6364136223846793005)
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
            (stream, ctx.add_stream(spec(stream, ctx.site, ctx.device)))
            for stream in options.streams
        ]

    async def run(self) -> None:
        """Generate until cancelled (or until every stream reached ``total_samples``)."""
        self.ctx.set_error(None)
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
        seq = np.uint64(ring.write_seq) + np.arange(hi - lo, dtype=np.uint64)
        values = waveform_values(stream, seq, self.options.seed)
        quality = np.full(hi - lo, Quality.GOOD, dtype=np.uint8)
        text = None
        if stream.kind is StreamKind.EVENT:
            text = tuple(f"synthetic event {int(s)}" for s in seq)
        self.ctx.append(ring, timestamps, values, quality, text=text)
