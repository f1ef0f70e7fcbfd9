"""DriverContext: event timestamps never collide (InfluxDB would merge them), small event rings."""

from __future__ import annotations

import logging

from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import StreamKind
from gateway.ring import RingStore


def make_ctx() -> DriverContext:
    return DriverContext("site", "dev", RingStore(1024), GatewayMetrics(),
                         logging.getLogger("test"), ring_capacity=1024, event_ring_capacity=16)


def test_simultaneous_events_get_distinct_timestamps() -> None:
    ctx = make_ctx()
    ring = ctx.add_stream(ctx.stream_spec("health", ("stale",), ("",), kind=StreamKind.EVENT))
    for text in ("a stale", "b stale", "c stale"):
        ctx.append_one(ring, 1_000, [1.0], text=text)
    ctx.append_one(ring, 5_000, [0.0], text="a back")
    batch = ring.snapshot()
    assert batch is not None
    assert batch.timestamps_ns.tolist() == [1_000, 1_001, 1_002, 5_000]
    assert batch.text == ("a stale", "b stale", "c stale", "a back")


def test_an_event_stamped_where_earlier_ties_were_moved_gets_its_own_time() -> None:
    ctx = make_ctx()
    ring = ctx.add_stream(ctx.stream_spec("health", ("stale",), ("",), kind=StreamKind.EVENT))
    for ts in (1_000, 1_000, 1_001, 900, 2_000):
        ctx.append_one(ring, ts, [1.0], text=str(ts))
    batch = ring.snapshot()
    assert batch is not None
    # 1_001 was taken by the moved tie; 900 is older than the ties and keeps its time
    assert batch.timestamps_ns.tolist() == [1_000, 1_001, 1_002, 900, 2_000]


def test_sampled_streams_keep_their_timestamps_and_events_get_small_rings() -> None:
    ctx = make_ctx()
    sampled = ctx.add_stream(ctx.stream_spec("js", ("p",), ("rad",)))
    events = ctx.add_stream(ctx.stream_spec("ev", ("code",), ("",), kind=StreamKind.EVENT))
    ctx.append_one(sampled, 7, [1.0])
    ctx.append_one(sampled, 7, [2.0])
    batch = sampled.snapshot()
    assert batch is not None and batch.timestamps_ns.tolist() == [7, 7]
    assert (sampled.capacity, events.capacity) == (1024, 16)


def test_rings_of_streams_with_a_known_rate_are_sized_in_time() -> None:
    ctx = DriverContext("site", "dev", RingStore(16384), GatewayMetrics(), logging.getLogger("t"),
                        ring_capacity=16384, event_ring_capacity=4096, ring_seconds=60.0,
                        min_ring_capacity=2000)
    sizes = {name: ctx.add_stream(ctx.stream_spec(name, ("x",), ("",), rate_hz=rate)).capacity
             for name, rate in (("arm", 100.0), ("carrier", 10.0), ("fast", 1000.0),
                                ("unknown", 0.0))}
    # 100 Hz x 60 s; 10 Hz x 60 s is below the floor; 1 kHz is capped; no rate: the maximum
    assert sizes == {"arm": 6000, "carrier": 2000, "fast": 16384, "unknown": 16384}
    events = ctx.add_stream(ctx.stream_spec("ev", ("x",), ("",), kind=StreamKind.EVENT,
                                            rate_hz=100.0))
    assert events.capacity == 4096
