"""The synthetic driver: exact counts and values through ctx.append, options checked at load."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.synthetic import SyntheticDriver, SyntheticOptions
from drivers.synthetic.driver import spec, waveform_values
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore


def context() -> DriverContext:
    return DriverContext("site", "gen", RingStore(default_capacity=4096), GatewayMetrics(),
                         logging.getLogger("test.synthetic"), ring_capacity=4096)


def options(**extra: Any) -> SyntheticOptions:
    streams = extra.pop("streams", [{"name": "s1", "fields": 2, "rate_hz": 1000,
                                     "waveform": "noise"},
                                    {"name": "ev", "fields": 1, "rate_hz": 500, "kind": "event"}])
    return SyntheticOptions.model_validate({"streams": streams, "tick_ms": 1,
                                            "total_samples": 40, **extra})


def metric(ctx: DriverContext, name: str, **labels: str) -> float:
    value = ctx.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_every_sample_is_appended_and_counted_with_its_recomputable_value() -> None:
    ctx = context()
    opts = options()
    asyncio.run(asyncio.wait_for(SyntheticDriver(ctx, opts).run(), 30))
    for stream in opts.streams:
        key = f"site/gen/{stream.name}"
        batch = ctx.store.ring(key).snapshot()
        assert batch is not None and len(batch) == 40 and batch.first_seq == 0
        assert metric(ctx, "medgw_samples_received_total", stream=key) == 40
        expected = waveform_values(stream, np.arange(40, dtype=np.int64), opts.seed)
        assert np.array_equal(batch.values, expected)
        assert np.all(np.diff(batch.timestamps_ns) > 0)
    events = ctx.store.ring("site/gen/ev").snapshot()
    assert events is not None and events.text is not None and events.text[0] == "synthetic event 0"
    assert ctx.state.connected and ctx.state.last_error is None
    json.dumps(asdict(ctx.state))  # what /health shows serializes


def test_sequence_numbers_near_the_int64_limit_do_not_crash() -> None:
    ctx = context()
    opts = options(streams=[{"name": "s1", "fields": 3, "rate_hz": 1000}], total_samples=5)
    stream = opts.streams[0]
    ctx.store.add_stream(spec(stream, "site", "gen"), 4096, first_seq=2**63 - 10)
    asyncio.run(asyncio.wait_for(SyntheticDriver(ctx, opts).run(), 30))
    batch = ctx.store.ring("site/gen/s1").snapshot()
    assert batch is not None and len(batch) == 5 and batch.first_seq == 2**63 - 10
    seq = np.arange(2**63 - 10, 2**63 - 5, dtype=np.uint64)
    assert np.array_equal(batch.values, waveform_values(stream, seq))


@pytest.mark.parametrize(("streams", "message"), [
    ([{"name": "a"}, {"name": "a"}], "repeated: a"),
    ([{"name": "status"}], "reserved"),
    ([{"name": "a/b"}], "name"),
    ([{"name": "a", "measurement": "a b"}], "measurement"),
    ([{"name": "a", "measurement": "medgw_gap"}], "reserved"),
    ([], "at least 1"),
])
def test_streams_the_ingest_would_refuse_are_refused_at_load(streams: list[dict[str, Any]],
                                                             message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticOptions.model_validate({"streams": streams})
