"""CDR decoding under hostile input: every payload is a row or a counted quarantine.

For every type in the mapping table, valid payloads, mutated ones (bytes flipped,
inserted, deleted, truncated, sequence lengths inflated) and arbitrary bytes go through
the driver's per-topic entry point (:meth:`TopicRouter.samples`, which feeds the topic's
pipeline) into a real ring. Never another exception: nothing escapes, no topic is ever
quarantined as "topic_failed" (the catch-all for an unexpected exception), and each
payload is appended, quarantined by the pipeline, or dropped by a counted topic
quarantine (a stream the contract refuses, e.g. joint names mutated into ones ingest
would reject). Stamps and values appended are in range and match the quality rules.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ros2.mapping import TYPE_TABLE
from drivers.ros2.options import Ros2Options
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from drivers.ros2.router import TopicRouter
from drivers.ros2.transport import Publication, RawBatch, ReaderSpec, ReaderStatus, TransportSink
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import Quality
from gateway.ring import RingStore
from tests.unit.drivers.ros2.strategies import MESSAGES

pytestmark = pytest.mark.hostile

BUDGET = settings(max_examples=200, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
MAPPED = sorted(TYPE_TABLE)
RX_NS = 1_700_000_000 * 1_000_000_000
INT64_MAX = 2**63 - 1


class _Transport:
    name = "fuzz"

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Unused."""

    def open_reader(self, spec: ReaderSpec) -> None:
        """Accept every reader."""

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """Unused."""
        return None

    def publications(self) -> list[Publication]:
        """Unused."""
        return []


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    """A few byte-level mutations of ``payload`` (or arbitrary bytes)."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length", "junk"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        elif op == "length" and len(data) >= at + 4:  # a uint32 here: maybe a length
            struct.pack_into("<I", data, at, draw(st.sampled_from(
                [0, 1, 7, 2**16, 2**31 - 1, 2**32 - 1])))
        elif op == "junk":
            data = bytearray(draw(st.binary(max_size=64)))
    return bytes(data)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """A mapped type and a batch: valid messages with mutated and arbitrary ones mixed in."""
    ros_type = draw(st.sampled_from(MAPPED))
    good = [draw(MESSAGES[ros_type]).serialize() for _ in range(draw(st.integers(1, 3)))]
    batch: list[bytes] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["good", "mutated", "mutated", "arbitrary"]))
        base = draw(st.sampled_from(good))
        if kind == "good":
            batch.append(base)
        elif kind == "mutated":
            batch.append(draw(mutated(base)))
        else:
            batch.append(draw(st.binary(max_size=96)))
    return ros_type, batch


@BUDGET
@given(cases(), st.integers(1, 3))
def test_every_payload_is_a_row_or_counted(case: tuple[str, list[bytes]], chunks: int) -> None:
    ros_type, payloads = case
    ctx = DriverContext("fuzz", "robot", RingStore(4096), GatewayMetrics(),
                        logging.getLogger("test.fuzz"), ring_capacity=4096)
    pipelines: dict[str, TopicPipeline] = {}
    router = TopicRouter(ctx, Ros2Options(patterns=["/f/*"]), _Transport(), HealthStream(ctx),
                         pipelines)
    topic = "/f/error" if ros_type.endswith("String") else "/f/topic"
    router.publication(Publication(topic, ros_type, ros_type, "k", "p"))
    step = max(1, len(payloads) // chunks)
    for start in range(0, len(payloads), step):  # several batches: fast and general paths
        router.samples(topic, RawBatch(payloads[start:start + step], RX_NS))
    pipeline = pipelines[topic]
    m = ctx.metrics
    dropped = sum(m.malformed.labels(ctx.device, r)._value.get()
                  for r in ("stream_refused", "topic_quarantined"))
    assert "topic_failed" not in router.quarantined.get(topic, ""), router.quarantined
    assert pipeline.received + pipeline.quarantined + dropped == len(payloads)
    if pipeline.ring is not None and pipeline.received:
        _check_rows(pipeline, pipeline.received)


def _check_rows(pipeline: TopicPipeline, n: int) -> None:
    assert pipeline.ring is not None
    batch = pipeline.ring.snapshot()
    assert batch is not None and batch.timestamps_ns.shape[0] == n
    assert (batch.timestamps_ns >= 0).all() and (batch.timestamps_ns <= INT64_MAX).all()
    finite = np.isfinite(batch.values).all(axis=1)
    assert (batch.quality[~finite] == Quality.BAD).all()
    assert set(np.unique(batch.quality).tolist()) <= {Quality.GOOD, Quality.UNCERTAIN,
                                                      Quality.BAD}


@BUDGET
@given(st.sampled_from(MAPPED), st.binary(max_size=256))
def test_arbitrary_bytes_never_raise(ros_type: str, payload: Any) -> None:
    ctx = DriverContext("fuzz", "robot", RingStore(64), GatewayMetrics(),
                        logging.getLogger("test.fuzz"), ring_capacity=64)
    pipelines: dict[str, TopicPipeline] = {}
    router = TopicRouter(ctx, Ros2Options(patterns=["/f/*"]), _Transport(), HealthStream(ctx),
                         pipelines)
    router.publication(Publication("/f/x", ros_type, ros_type, "k", "p"))
    router.samples("/f/x", RawBatch([payload], RX_NS))
    assert "topic_failed" not in router.quarantined.get("/f/x", "")
    p = pipelines["/f/x"]
    assert p.received + p.quarantined + len(router.quarantined) == 1
