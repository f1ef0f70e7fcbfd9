"""Bounded in bytes (issue 13 #11): the inbox, the dead-letter file, republished payloads."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from gateway.server.deadletter import DeadLetters
from gateway.server.inbox import Inbox
from gateway.server.writeloop import LoopSettings, WriteLoop

MB = 1024 * 1024


class NullTransport:
    def __init__(self) -> None:
        self.largest = 0
        self.count = 0

    def ack(self, mid: int, qos: int) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.count += 1
        self.largest = max(self.largest, len(payload))


class NullWriter:
    def write(self, body: bytes, n_lines: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_inbox_waits_for_room_and_admits_one_oversized_item() -> None:
    inbox: Inbox[str] = Inbox(100)
    assert inbox.put("big", 500)  # nothing held: let in, or it would wedge the worker
    done = threading.Event()

    def second() -> None:
        inbox.put("next", 10)
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not done.wait(0.05)  # no room while the big one is held
    got = inbox.get(1.0)
    assert got == ("big", 500)
    assert not done.is_set()  # taken is not done: bytes count until released
    inbox.release(500)
    assert done.wait(5)
    thread.join()
    assert inbox.held_bytes == 10 and inbox.peak_bytes == 500


def test_closed_inbox_refuses_and_wakes_waiters() -> None:
    inbox: Inbox[int] = Inbox(10)
    inbox.put(1, 10)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(inbox.put(2, 10)))
    thread.start()
    inbox.close()
    thread.join(5)
    assert results == [False]
    assert inbox.get(0.0) == (1, 10)  # what was queued still drains
    assert inbox.get(0.0) is None


def test_sixty_messages_of_ten_megabytes_stay_within_the_byte_budget(tmp_path: Path) -> None:
    """60 garbage messages of 10 MB (issue 13 #11: 1.17 GB RSS, 1.49 GB dead-letter file).

    Measured: the bytes the worker holds at its peak, the dead-letter file sizes and the
    largest republished dead letter; not time.
    """
    budget = 32 * MB
    transport = NullTransport()
    dead_file = tmp_path / "dead.jsonl"
    dead = DeadLetters(transport, "medgw/deadletter/v1", dead_file, max_payload_bytes=64 * 1024,
                       file_max_bytes=1 * MB, file_backups=1)
    loop = WriteLoop(LoopSettings(flush_s=0.01, max_pending_bytes=budget), NullWriter(),
                     transport, dead)
    writer = threading.Thread(target=loop.run)
    writer.start()
    garbage = b"\xff" + b"x" * (10 * MB - 1)
    for mid in range(60):
        assert loop.receive(mid, 1, "medgw/v1/site/dev/js", garbage)
    loop.stop()
    writer.join(60)
    assert loop.stats.malformed == 60
    one_message = len(garbage) + 256
    assert loop.inbox.peak_bytes <= budget + one_message
    assert loop.inbox.held_bytes == 0
    assert transport.largest < 200 * 1024  # 64 KiB of payload, escaped, plus the envelope
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["dead.jsonl", "dead.jsonl.1"]
    assert all(f.stat().st_size <= 1 * MB for f in files)
    record = orjson.loads(dead_file.read_bytes().splitlines()[-1])
    assert record["payload_bytes"] == 10 * MB and record["truncated"] is True
    print(f"\nBOUND peak_held={loop.inbox.peak_bytes} budget={budget} "
          f"dead_files={[f.stat().st_size for f in files]} largest_dead={transport.largest}")


def test_dead_letter_failures_are_counted_not_raised(tmp_path: Path) -> None:
    class Refusing(NullTransport):
        def publish(self, topic: str, payload: bytes, qos: int = 0,
                    retain: bool = False) -> None:
            raise ValueError("Invalid topic.")

    dead = DeadLetters(Refusing(), "dl", tmp_path / "missing-dir" / "dead.jsonl")
    dead.send("t", "why", b"x")
    assert dead.failures == 2 and dead.last_failure is not None


def test_large_valid_messages_wait_for_room() -> None:
    """Decoded messages hold their lines and arrays until acknowledged: the receiving
    thread waits while a slow writer holds the budget (measured: bytes held, not time)."""
    import numpy as np

    from gateway.model import StreamSpec, make_batch
    from gateway.server.lineproto import encode_batch
    from gateway.wire.payload import encode

    spec = StreamSpec("site", "dev", "js", ("a",), ("",))
    budget = 2 * MB

    class SlowWriter(NullWriter):
        def write(self, body: bytes, n_lines: int) -> None:
            threading.Event().wait(0.005)

    transport = NullTransport()
    loop = WriteLoop(LoopSettings(flush_s=0.01, batch_lines=20_000, max_pending_bytes=budget),
                     SlowWriter(), transport, DeadLetters(transport, "dl"))
    writer = threading.Thread(target=loop.run)
    writer.start()
    n = 20_000
    one = 0
    for i in range(20):
        batch = make_batch(spec, np.arange(n) + i * n, np.ones((n, 1)), first_seq=i * n)
        body = encode(batch, "gw")
        one = max(one, len(body) + len(encode_batch(batch)[0]) + batch.values.nbytes
                  + 17 * n + 256)
        assert loop.receive(i, 1, "medgw/v1/site/dev/js", body)
    loop.stop()
    writer.join(60)
    assert loop.stats.samples == 20 * n and loop.inbox.held_bytes == 0
    assert 20 * one > 10 * budget  # far more than the budget went through
    assert loop.inbox.peak_bytes <= budget + one
