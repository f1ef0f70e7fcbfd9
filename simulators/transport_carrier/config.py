"""The carrier simulator's settings and records: SimConfig, WriteRecord, SimStats."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.transport_carrier.certs import CertPair

SECURITY_CHOICES = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")


@dataclass(frozen=True)
class SimConfig:
    """How the simulator runs: port, fleet size, update rate, security."""

    port: int = 4840
    carriers: int = 20
    rate_hz: float = 10.0
    manual: bool = False  # True: no clock task, tests call step()
    path: str = "medgw/carriers"
    security: tuple[str, ...] = SECURITY_CHOICES
    server_cert: CertPair | None = None  # required for the Basic256Sha256 endpoints
    trusted_clients: tuple[Path, ...] = ()  # pinned client certificates; empty = any
    users: Mapping[str, str] | None = None  # username -> password; None = anonymous
    history_size: int = 200_000
    warmup_s: float = 30.0  # fleet state is advanced by this much before serving
    start_ns: int | None = None  # manual mode: source time of tick 0 (default: now)

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 100.0:
            raise ValueError(f"rate_hz must be within 1..100 Hz, got {self.rate_hz}")
        if not 1 <= self.carriers <= 10_000:
            raise ValueError(f"carriers must be within 1..10000, got {self.carriers}")
        unknown = [s for s in self.security if s not in SECURITY_CHOICES]
        if unknown or not self.security:
            raise ValueError(f"security must be a non-empty subset of {SECURITY_CHOICES}")
        if any(s != "None" for s in self.security) and self.server_cert is None:
            raise ValueError("server_cert is required for Basic256Sha256 endpoints")


@dataclass(frozen=True)
class WriteRecord:
    """One value the simulator wrote: what a subscriber should see."""

    tick: int
    source_ns: int
    carrier: str
    variable: str
    value: Any
    status: int  # OPC UA status code value (0 = Good)
    injected: bool = False  # written by inject_raw (garbage a subscriber should refuse)


@dataclass
class SimStats:
    """Counters of what the simulator did."""

    ticks: int = 0
    writes: int = 0
    numeric_writes: int = 0  # writes of non-string variables (what a numeric subscriber sees)
    restarts: int = 0
