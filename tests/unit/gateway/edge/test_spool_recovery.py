"""Spool recovery keeps every intact record and reports (with counts) what it cut or skipped."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.edge.spool import Spool
from gateway.edge.spool.records import HEADER, segment_name
from gateway.model import StreamSpec, make_batch
from gateway.wire.payload import encode

SPEC = StreamSpec("site", "dev", "s", ("a",), ("",), rate_hz=100.0)
N = 10  # samples per record


def spool_with(tmp_path: Path, count: int) -> list[int]:
    """Spool ``count`` records of N samples, flushed; return each record's byte offset."""
    spool = Spool(tmp_path, 1 << 20)
    offsets = []
    for i in range(count):
        offsets.append(spool.held_bytes)
        batch = make_batch(SPEC, np.arange(i * N, (i + 1) * N) * 10, np.arange(N), 0, i * N)
        assert spool.add(SPEC.key, "t/x", encode(batch, "gw"), i * N, N, replay=False)
    spool.close()
    return offsets


def first_seqs(spool: Spool) -> list[int]:
    out: list[int] = []
    while batch := spool.batch(8):
        out.extend(orjson.loads(m.payload)["seq"] for m in batch)
    return out


def only_segment(tmp_path: Path) -> Path:
    (segment,) = tmp_path.glob("seg-*.spool")
    return segment


def test_a_bad_checksum_in_record_3_keeps_records_4_to_n(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    offsets = spool_with(tmp_path, 13)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    data[offsets[2] + HEADER.size + 40] ^= 0xFF  # one flipped byte in record 3's payload
    segment.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "medgw.spool"):
        again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 12 and again.cut_records == 1
    assert first_seqs(again) == [i * N for i in range(13) if i != 2]
    cut = offsets[3] - offsets[2]
    expected = f"cut {cut} bytes / 1 records in {segment.name}"
    assert any(expected in line for line in again.report)
    assert expected in caplog.text


def test_two_damaged_stretches_and_a_torn_tail(tmp_path: Path) -> None:
    offsets = spool_with(tmp_path, 20)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    for index in (4, 5, 11):  # records 5, 6 and 12: header bytes overwritten
        data[offsets[index]:offsets[index] + 8] = b"\xaa" * 8
    data += b"\x40\x00\x00\x00garbage"  # a record header cut short by a crash
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 17
    assert again.cut_records == 4  # 2 + 1 inside (from the record ids), 1 torn at the end
    assert first_seqs(again) == [i * N for i in range(20) if i not in (4, 5, 11)]


def test_a_zero_filled_tail_is_cut_and_counted(tmp_path: Path) -> None:
    spool_with(tmp_path, 5)
    segment = only_segment(tmp_path)
    with open(segment, "ab") as out:
        out.write(bytes(4096))  # blocks allocated but never written before a power loss
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 5 and again.cut_records == 1
    assert any("cut 4096 bytes" in line for line in again.report)


def test_new_records_after_recovery_go_to_a_new_segment(tmp_path: Path) -> None:
    offsets = spool_with(tmp_path, 4)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    data[offsets[1] + HEADER.size + 30] ^= 0x01
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, 1 << 20)
    assert again.add(SPEC.key, "t/x", b"{}", 1000, 1, replay=False)
    again.close()
    assert len(list(tmp_path.glob("seg-*.spool"))) == 2
    third = Spool(tmp_path, 1 << 20)
    assert third.recovered == 4  # 3 intact old ones and the new one


@pytest.mark.parametrize("state", [
    b"not json", b"[]", b'{"first_unacked": -1}', b'{"first_unacked": "3"}',
    b'{"first_unacked": 1e30}', b'{"other": 1}', b'{"first_unacked": 999999999999}',
])
def test_a_malformed_or_absurd_state_file_is_reported_and_everything_replayed(
        tmp_path: Path, state: bytes) -> None:
    spool_with(tmp_path, 6)
    (tmp_path / "state.json").write_bytes(state)
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 6
    assert len(again.report) == 1 and "state.json" in again.report[0]
    assert first_seqs(again) == [i * N for i in range(6)]


def test_a_valid_state_file_skips_delivered_records_quietly(tmp_path: Path) -> None:
    spool_with(tmp_path, 6)
    (tmp_path / "state.json").write_bytes(b'{"first_unacked": 4}')
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 2 and again.report == []


def test_stray_files_and_directories_are_reported_and_skipped(tmp_path: Path) -> None:
    spool_with(tmp_path, 3)
    (tmp_path / "seg-5.spool").write_bytes(b"stray")
    (tmp_path / segment_name(99)).mkdir()
    (tmp_path / "seg-notes.txt").write_text("x")
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 3
    assert len(again.report) == 3
    assert any("seg-5.spool: not a segment name" in line for line in again.report)
    assert any(f"{segment_name(99)}: not a regular file" in line for line in again.report)
    assert again.add(SPEC.key, "t/x", b"{}", 1000, 1, replay=False)  # still usable
    assert (tmp_path / "seg-5.spool").read_bytes() == b"stray"  # left alone


def test_a_segment_with_nothing_intact_is_deleted(tmp_path: Path) -> None:
    spool_with(tmp_path, 3)
    segment = only_segment(tmp_path)
    segment.write_bytes(b"\x55" * 500)
    again = Spool(tmp_path, 1 << 20)
    assert again.recovered == 0 and again.cut_records == 1
    assert not segment.exists()
