"""A real full disk under the spool: a 2 MiB tmpfs mounted by the test (root; CI runs as root).

The spool's own bound (``max_bytes``) is far above the disk, so only the filesystem says no
(ENOSPC). Every test asserts counts: samples refused or dropped == samples counted as
dropped, and nothing already spooled is damaged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.edge.spool import Spool
from tests.unit.gateway.edge.test_publisher import SPEC, Clock, append, make

N = 10  # samples per record
PAYLOAD = 8192  # bytes per record: about 250 records fill the disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def record(i: int) -> bytes:
    return np.random.default_rng(i).bytes(PAYLOAD)  # incompressible, not that tmpfs cares


def add_until(spool: Spool, count: int) -> tuple[list[int], list[int]]:
    """Add ``count`` records; return the indexes of those accepted and those refused."""
    accepted: list[int] = []
    refused: list[int] = []
    for i in range(count):
        ok = spool.add(SPEC.key, "t/x", record(i), i * N, N, replay=False)
        (accepted if ok else refused).append(i)
    return accepted, refused


def test_drop_newest_refuses_and_counts_every_sample_and_keeps_the_rest_intact(
        small_disk: Path) -> None:
    drops: list[tuple[str, int, str]] = []
    spool = Spool(small_disk / "spool", 64 << 20, segment_bytes=256 << 10,
                  policy="drop_newest", replay_window_s=0,
                  on_drop=lambda key, n, reason: drops.append((key, n, reason)))
    accepted, refused = add_until(spool, 400)
    assert accepted and refused
    assert accepted == list(range(len(accepted)))  # refused from the first failure on
    assert {reason for _, _, reason in drops} == {"disk_full"}
    assert sum(n for _, n, _ in drops) == N * len(refused) == spool.dropped[SPEC.key]
    assert spool.degraded is not None and "No space left" in spool.degraded
    assert spool.stats().write_errors >= len(refused)
    spool.close()
    again = Spool(small_disk / "spool", 64 << 20, segment_bytes=256 << 10)
    assert again.recovered == len(accepted) and again.cut_records == 0
    got = []
    while batch := again.batch(64):
        got.extend(batch)
    assert [m.payload for m in got] == [record(i) for i in accepted]
    again.close()


def test_delivered_records_free_the_disk_and_the_spool_recovers(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", 64 << 20, segment_bytes=256 << 10,
                  policy="drop_newest", replay_window_s=0)
    accepted, refused = add_until(spool, 400)
    assert refused
    for message in spool.batch(len(accepted)):
        spool.accept(message.record_id, message.attempt)
    assert spool.add(SPEC.key, "t/x", record(1000), 10_000, N, replay=False)
    assert spool.degraded is None  # acknowledged records were evicted to make room
    spool.close()


def test_drop_oldest_drops_unsent_records_for_room_and_counts_them(small_disk: Path) -> None:
    drops: list[tuple[str, int, str]] = []
    spool = Spool(small_disk / "spool", 64 << 20, segment_bytes=128 << 10,
                  policy="drop_oldest",
                  on_drop=lambda key, n, reason: drops.append((key, n, reason)))
    accepted, refused = add_until(spool, 600)
    assert len(accepted) == 600 and refused == []  # room was made for every new record
    assert drops and {reason for _, _, reason in drops} == {"disk_full"}
    dropped = sum(n for _, n, _ in drops)
    # every sample offered is either still spooled or counted as dropped
    assert spool.unconfirmed_samples() + dropped == N * 600
    kept = [m.payload for m in spool.batch(600)]
    assert kept == [record(i) for i in range(600 - len(kept), 600)]  # the newest survive
    spool.close()


def test_block_refuses_without_counting(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", 64 << 20, segment_bytes=256 << 10, policy="block")
    accepted, refused = add_until(spool, 400)
    assert accepted and refused and spool.dropped == {}
    assert spool.degraded is not None
    spool.close()


def test_the_publisher_keeps_running_on_a_full_disk_and_counts_the_drops(
        small_disk: Path) -> None:
    clock = Clock()
    publisher, _, ring = make(small_disk, clock,
                              spool={"policy": "drop_newest", "max_bytes": 64 << 20,
                                     "segment_bytes": 256 << 10})
    produced = 0
    for _ in range(40):  # the broker is down: everything goes to the spool
        append(ring, 2000)
        produced += 2000
        clock.now += 1.0  # a spool flush (and a health snapshot) at every step
        publisher.flush(force=True)
    spooled = publisher.metrics.registry.get_sample_value(
        "medgw_samples_spooled_total", {"stream": SPEC.key}) or 0.0
    dropped = publisher.metrics.registry.get_sample_value(
        "medgw_samples_dropped_total", {"stream": SPEC.key, "reason": "disk_full"}) or 0.0
    assert dropped > 0 and spooled > 0
    assert spooled + dropped == produced
    health = publisher.health()
    assert health.spool_degraded and "No space left" in health.spool_degraded
    assert health.samples_dropped == dropped
    publisher.stop(drain_timeout=0)
    shutil.rmtree(small_disk / "spool", ignore_errors=True)
