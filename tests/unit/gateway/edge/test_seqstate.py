"""seq.json: reservations survive restarts; a lost, corrupt or out-of-range file is loud."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.edge.seqstate import SEQ_LIMIT, SeqRingStore, SeqState, new_epoch
from gateway.metrics import GatewayMetrics
from gateway.model import StreamSpec
from gateway.ring import RingStore

SPEC = StreamSpec("s", "d", "x", ("v",), ("",))
STEP = 100


def _append(store: SeqRingStore, n: int) -> None:
    ring = store.add_stream(SPEC)
    ring.append(np.arange(n, dtype=np.int64), np.zeros((n, 1)), np.zeros(n, np.uint8))
    store.reserve_seq()


def _resets(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("medgw_seq_state_resets_total",
                                              {"reason": reason})
    return value or 0.0


def test_reservation_survives_a_restart_and_stays_ahead(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    store = SeqRingStore(1024, SeqState(path, STEP))
    _append(store, 30)
    assert store.seq_state.reserved[SPEC.key] == STEP  # 30 + 50 < 100: not moved yet
    _append(store, 30)  # write position 60 is within half a step: moves to 160
    assert orjson.loads(path.read_bytes()) == {SPEC.key: 160}
    again = SeqRingStore(1024, SeqState(path, STEP))
    assert again.add_stream(SPEC).start_seq == 160
    assert again.seq_state.reset_reason is None


def test_plain_store_reserve_seq_is_a_no_op() -> None:
    store = RingStore(64)
    store.add_stream(SPEC)
    store.reserve_seq()  # declared on every store: the publisher never asks which it has


def test_first_start_in_an_empty_directory_is_quiet(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    metrics = GatewayMetrics()
    state = SeqState(tmp_path / "spool" / "seq.json", STEP, metrics=metrics)
    assert state.reset_reason is None and state.reserved == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _resets(metrics, "lost") == 0


def test_lost_file_beside_a_used_spool_is_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "seg-00000001.spool").write_bytes(b"x")
    metrics = GatewayMetrics()
    state = SeqState(tmp_path / "seq.json", STEP, epoch=77, metrics=metrics)
    assert state.reset_reason is not None and state.reset_reason.startswith("lost")
    assert "seg-00000001.spool" in state.reset_reason
    assert _resets(metrics, "lost") == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "restart at 0" in warning.getMessage() and "epoch 77" in warning.getMessage()
    assert state.health()["reset"] == state.reset_reason and state.health()["epoch"] == 77


@pytest.mark.parametrize(("content", "expected"), [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "found list"),
    (b"42", "found int"),
    (b'{"s/d/x": -1}', "key 's/d/x': -1 is out of range"),
    (b'{"s/d/x": 1e30}', "key 's/d/x': 1e+30 is not an integer"),
    (b'{"s/d/x": 5.0}', "key 's/d/x': 5.0 is not an integer"),
    (b'{"s/d/x": true}', "key 's/d/x': True is not an integer"),
    (b'{"s/d/x": "12"}', "key 's/d/x': '12' is not an integer"),
    (b'{"s/d/x": null}', "key 's/d/x': None is not an integer"),
    (b'{"s/d/x": [1]}', "key 's/d/x': [1] is not an integer"),
    (f'{{"s/d/x": {SEQ_LIMIT - 10}}}'.encode(), "out of range"),
    (f'{{"s/d/x": {SEQ_LIMIT - STEP}}}'.encode(), "out of range"),
    (f'{{"s/d/x": {SEQ_LIMIT}}}'.encode(), "out of range"),
    (f'{{"s/d/x": {2**64 - 1}}}'.encode(), "out of range"),
    (b'{"s/d/x": 18446744073709551616}', "is not an integer"),  # orjson: a float
    (b'{"": 5}', "an empty stream key"),
    (b'{"s/d/ok": 7, "s/d/x": -3}', "key 's/d/x'"),  # one bad key: the file is corrupt
])
def test_corrupt_file_is_rejected_naming_file_and_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes,
        expected: str) -> None:
    path = tmp_path / "seq.json"
    path.write_bytes(content)
    metrics = GatewayMetrics()
    store = SeqRingStore(64, SeqState(path, STEP, epoch=5, metrics=metrics))
    reason = store.seq_state.reset_reason
    assert reason is not None and reason.startswith("corrupt") and expected in reason
    assert str(path) in reason
    assert _resets(metrics, "corrupt") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and expected in warnings[0] and "epoch 5" in warnings[0]
    # the bad file is kept for a post-mortem, numbers restart at 0 and a fresh file is written
    assert (tmp_path / "seq.json.corrupt").read_bytes() == content
    ring = store.add_stream(SPEC)
    assert ring.start_seq == 0
    assert orjson.loads(path.read_bytes()) == {SPEC.key: STEP}


def test_largest_valid_value_resumes(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    path.write_bytes(orjson.dumps({SPEC.key: SEQ_LIMIT - STEP - 1}))
    store = SeqRingStore(64, SeqState(path, STEP))
    assert store.seq_state.reset_reason is None
    assert store.add_stream(SPEC).start_seq == SEQ_LIMIT - STEP - 1


def test_unreadable_file_is_a_reset_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    path.mkdir()  # reading a directory fails with an OSError other than "not found"
    metrics = GatewayMetrics()
    state = SeqState(path, STEP, metrics=metrics)
    assert state.reset_reason is not None and state.reset_reason.startswith("unreadable")
    assert _resets(metrics, "unreadable") == 1


def test_failed_write_is_reported_once_and_never_raised(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    # the temporary file's name is taken by a directory: the write fails even for root
    _check_failed_write(tmp_path, caplog, lambda d: (d / ".seq.json.tmp").mkdir())


def _check_failed_write(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                        block: Callable[[Path], object]) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    metrics = GatewayMetrics()
    store = SeqRingStore(1024, SeqState(spool / "seq.json", STEP, metrics=metrics))
    ring = store.add_stream(SPEC)
    block(spool)
    for _ in range(3):  # three reservations that each need a write
        ring.append(np.arange(80, dtype=np.int64), np.zeros((80, 1)), np.zeros(80, np.uint8))
        store.reserve_seq([ring])
    state = store.seq_state
    assert state.write_error is not None and "seq.json" in state.write_error
    assert state.health()["write_error"] == state.write_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per failure streak
    assert metrics.registry.get_sample_value("medgw_seq_state_write_errors_total") == 3
    blocker = spool / ".seq.json.tmp"
    if blocker.is_dir():
        blocker.rmdir()
    ring.append(np.arange(80, dtype=np.int64), np.zeros((80, 1)), np.zeros(80, np.uint8))
    store.reserve_seq([ring])
    assert state.write_error is None
    assert orjson.loads((spool / "seq.json").read_bytes()) == {SPEC.key: ring.write_seq + STEP}


def test_epochs_are_positive_63_bit_and_differ() -> None:
    epochs = {new_epoch() for _ in range(1000)}
    assert len(epochs) == 1000
    assert all(0 < e < 2**63 for e in epochs)


def test_appends_keep_the_reservation_ahead_when_the_publisher_stalls(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    store = SeqRingStore(4096, SeqState(path, STEP))
    ring = store.add_stream(SPEC)
    moved = []
    for i in range(1000):  # no reserve_seq() call at all: the publisher thread is stalled
        if i % 2:
            ring.append_one(i, np.zeros(1))
        else:
            ring.append(np.array([i], np.int64), np.zeros((1, 1)), np.zeros(1, np.uint8))
        persisted = orjson.loads(path.read_bytes())[SPEC.key]
        assert persisted > ring.write_seq - 1 + STEP // 4  # every number handed out is below
        moved.append(persisted)
    assert len(set(moved)) == 1000 // (STEP - STEP // 4) + 1  # written only now and then
