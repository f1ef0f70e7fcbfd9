"""WriterSeqs: holes in the writers' sequence numbers, and the rclpy callback that feeds it."""

from __future__ import annotations

import threading

import pytest

from drivers.ros2.seqgaps import UNSUPPORTED, WriterSeqs


def test_holes_are_counted_per_writer_from_its_first_sample() -> None:
    seqs = WriterSeqs()
    for seq in (5, 6, 9, 10):  # 1..4 before our first sample: not counted; 7, 8 lost
        seqs.seen(b"A", seq)
    for seq in (1, 2, 3, 7):  # another writer on the topic: its own numbering
        seqs.seen(b"B", seq)
    assert seqs.missing == 2 + 3 and seqs.exact and seqs.numbered == 8


def test_late_and_duplicate_samples_make_no_hole() -> None:
    seqs = WriterSeqs()
    for seq in (1, 2, 4, 3, 4, 5):
        seqs.seen(b"A", seq)
    assert seqs.missing == 1  # 3 counted when 4 came first (best effort reordering)


def test_a_sample_without_a_number_ends_exactness() -> None:
    seqs = WriterSeqs()
    seqs.seen_info({"publication_sequence_number": 1, "publisher_gid": {"data": b"A"}})
    assert seqs.exact
    seqs.seen_info({"publication_sequence_number": UNSUPPORTED * 2 - 1,
                    "publisher_gid": {"data": b"A"}})
    seqs.seen_info({"publication_sequence_number": None})
    seqs.seen_info(None)
    assert not seqs.exact and seqs.unnumbered == 3 and seqs.missing == 0


def test_rclpy_callback_takes_both_executor_conventions_and_status_picks_one_source() -> None:
    rclpy_transport = pytest.importorskip("drivers.ros2.rclpy_transport")
    import inspect

    from drivers.ros2.options import QosOptions
    from drivers.ros2.transport import ReaderSpec

    spec = ReaderSpec("/a/js", "sensor_msgs/msg/JointState", QosOptions(depth=1), 100.0)
    reader = rclpy_transport._Reader(spec, capacity=2)
    on_message = rclpy_transport._OnMessage(reader, threading.Event(), urgent=False)
    sig = inspect.signature(on_message)
    with pytest.raises(TypeError):
        sig.bind(object())  # rclpy must choose the MessageInfo form
    sig.bind(object(), object())

    def info(seq: int) -> dict[str, object]:
        return {"publication_sequence_number": seq, "publisher_gid": {"data": b"w"}}
    on_message(b"p1", info(1))  # SingleThreadedExecutor: two arguments
    on_message((b"p2", info(4)))  # rclpy 9 EventsExecutor: the tuple as one
    on_message(b"p3", info(5))  # the queue (capacity 2) is full: our overflow, not a hole
    assert list(reader.queue) == [b"p1", b"p2"] and reader.overflow == 1
    reader.lost = 2  # Fast DDS's SAMPLE_LOST for the same two samples
    status = reader.status()
    assert (status.exact, status.seq_lost, status.lost) == (True, 2, 1)  # counted once
    on_message(b"p6", None)  # an RMW without numbers: SAMPLE_LOST counts from now on
    reader.status()
    reader.lost = 5
    status = reader.status()
    assert (status.exact, status.seq_lost, status.lost) == (False, 2, 3 + 2)  # p6 overflowed
