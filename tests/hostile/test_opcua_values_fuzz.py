"""OPC UA values under hostile input: every data change is a row or a counted quarantine.

Arbitrary DataValue-like inputs (variants of any type and size, any 32-bit status code,
timestamps absent, naive, aware, at the ends of the datetime range, or not datetimes at
all) go through the driver's publish handler into a real ring. Never another exception,
never the handler's catch-all ("unprocessable"), never a timestamp outside int64 ns.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.opcua.discovery import Variable
from drivers.opcua.handler import MAX_TS_NS, MIN_TS_NS, PublishHandler
from drivers.opcua.options import OpcUaOptions
from drivers.opcua.streams import DriverStats, StreamTable
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.model import Quality
from gateway.ring import RingStore

pytestmark = pytest.mark.hostile

BUDGET = settings(max_examples=300, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
FIELDS = ("battery", "payload_temperature", "door_open")

RAW = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**300)
       | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
       | st.lists(st.floats(), max_size=3) | st.datetimes()
       | st.builds(ua.LocalizedText, st.text(max_size=5)) | st.just(object()))
VARIANT_TYPES = st.sampled_from(list(ua.VariantType))
STAMPS = (st.none() | st.datetimes() | st.datetimes(timezones=st.timezones())
          | st.sampled_from([datetime.min, datetime.max, datetime(1601, 1, 1),
                             datetime(1970, 1, 1), datetime(2262, 4, 12),
                             datetime.max.replace(tzinfo=timezone(timedelta(hours=-23)))])
          | st.integers() | st.text(max_size=4))


def variant(raw: Any, vtype: ua.VariantType | None) -> Any:
    """A Variant of ``raw`` (typed as told when asyncua accepts it), else the raw object."""
    try:
        return ua.Variant(raw, vtype) if vtype is not None else ua.Variant(raw)
    except Exception:  # asyncua refuses to build it: hand the raw object over instead
        return raw


@st.composite
def data_values(draw: st.DrawFn) -> ua.DataValue:
    value = variant(draw(RAW), draw(st.none() | VARIANT_TYPES))
    status = draw(st.none() | st.integers(0, 0xFFFF_FFFF).map(lambda c: ua.StatusCode(c))
                  | st.sampled_from([ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown),
                                     ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)]))
    dv = ua.DataValue(SourceTimestamp=draw(STAMPS), ServerTimestamp=draw(STAMPS))
    object.__setattr__(dv, "Value", value)  # as it came, not re-wrapped by DataValue
    object.__setattr__(dv, "StatusCode", status)
    return dv


def harness(timestamp_source: str = "source") -> tuple[PublishHandler, DriverContext,
                                                      StreamTable]:
    ctx = DriverContext("site", "dev", RingStore(default_capacity=4096), GatewayMetrics(),
                        logging.getLogger("test.opcua.fuzz"), ring_capacity=4096)
    options = OpcUaOptions(endpoint="opc.tcp://127.0.0.1:1", security_policy="None",
                           browse=({"pattern": "Fleet/*/*"},),  # type: ignore[arg-type]
                           timestamp_source=timestamp_source)  # type: ignore[arg-type]
    stats = DriverStats()
    table = StreamTable(ctx, options, stats)
    table.bind([Variable(ua.NodeId(f"c.{f}", 2), "carrier-01", f, "", f"Fleet/carrier-01/{f}")
                for f in FIELDS])
    handler = PublishHandler(ctx, options, table, stats, lambda: None, lambda reason: None)
    return handler, ctx, table


def publish(handler: PublishHandler, items: list[tuple[int, ua.DataValue]]) -> None:
    changes = ua.DataChangeNotification(MonitoredItems=[
        ua.MonitoredItemNotification(ClientHandle=handle, Value=dv) for handle, dv in items])
    result = ua.PublishResult(NotificationMessage=ua.NotificationMessage(
        NotificationData=[changes]))
    handler.on_publish(result)


def malformed(ctx: DriverContext, reason: str) -> float:
    value = ctx.metrics.registry.get_sample_value(
        "medgw_malformed_messages_total", {"source": "dev", "reason": reason})
    return 0.0 if value is None else value


def quarantined(ctx: DriverContext) -> float:
    return sum(malformed(ctx, r) for r in ("wrong_type", "not_finite"))


@BUDGET
@given(data_values(), st.integers(1, len(FIELDS)), st.sampled_from(["source", "server"]))
def test_one_change_is_one_row_or_one_quarantine(dv: ua.DataValue, handle: int,
                                                 timestamp_source: str) -> None:
    handler, ctx, table = harness(timestamp_source)
    ring = table.streams["carrier-01"].ring
    publish(handler, [(handle, dv)])
    rows = len(ring)
    assert rows + quarantined(ctx) == 1
    assert malformed(ctx, "unprocessable") == 0
    if rows:
        batch = ring.snapshot()
        assert batch is not None
        ts, quality = int(batch.timestamps_ns[0]), Quality(int(batch.quality[0]))
        assert MIN_TS_NS < ts < MAX_TS_NS or ts == int(batch.receive_ns[0])  # type: ignore[index]
        cell = float(batch.values[0, handle - 1])
        assert math.isnan(cell) if quality is Quality.BAD else math.isfinite(cell)


@BUDGET
@given(st.lists(st.tuples(st.integers(0, len(FIELDS) + 1), data_values()), max_size=12))
def test_a_publish_of_many_changes_never_raises_and_loses_nothing(
        items: list[tuple[int, ua.DataValue]]) -> None:
    handler, ctx, table = harness()
    ring = table.streams["carrier-01"].ring
    publish(handler, items)
    assert malformed(ctx, "unprocessable") == 0
    ours = sum(1 for handle, _ in items if handle in table.bindings)
    known = handler.stats.changes  # unknown handles are not ours: skipped; so are changes
    assert known <= ours  # of a node reported deleted (BadNodeIdUnknown) until rediscovery
    if not any(dv.StatusCode == ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
               for _, dv in items):
        assert known == ours
    batch = ring.snapshot()
    stored = 0 if batch is None else int(
        np.count_nonzero(~np.isnan(batch.values[batch.quality != Quality.BAD])))
    bad = 0 if batch is None else int(np.count_nonzero(batch.quality == Quality.BAD))
    # every change is a stored value, a Bad row (one row may hold several Bad columns), or
    # a counted quarantine
    assert stored + quarantined(ctx) <= known <= stored + quarantined(ctx) + bad * len(FIELDS)
    if batch is not None:
        assert np.all(batch.timestamps_ns > 0)
