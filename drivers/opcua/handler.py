"""Publish responses -> rows per carrier -> rings, and the carrier events right after.

Runs in asyncua's publish callback. A value that cannot be stored (wrong type, not
finite) is a counted quarantine; nothing a server sends can raise out of the callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
from asyncua import ua

from drivers.opcua.fastpublish import FastDataChange
from drivers.opcua.mapping import Row, RowAssembler, datetime_to_ns, quality_of, to_float
from drivers.opcua.options import OpcUaOptions
from drivers.opcua.streams import Binding, CarrierStream, DriverStats, StreamTable
from gateway.driver import DriverContext
from gateway.model import Quality

MIN_TS_NS = 946_684_800 * 1_000_000_000  # 2000-01-01: anything older is not a real clock
MAX_TS_NS = 2**63 - 2**40  # int64 ns (InfluxDB's limit, 2262), room for the 1 ns moves

Assemblers = dict[str, tuple[CarrierStream, RowAssembler]]


def stamp_ns(stamp: object) -> int | None:
    """Return an OPC UA timestamp as ns since 1970, or None when absent or not plausible."""
    if not isinstance(stamp, datetime):
        return None
    try:
        ns = datetime_to_ns(stamp)
    except (OverflowError, ValueError, TypeError):
        return None
    return ns if MIN_TS_NS < ns < MAX_TS_NS else None


class PublishHandler:
    """Turns the data changes of one publish response into rows and events."""

    def __init__(self, ctx: DriverContext, options: OpcUaOptions, table: StreamTable,
                 stats: DriverStats, rediscover_soon: Callable[[], None],
                 lost: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.options = options
        self.table = table
        self.stats = stats
        self.rediscover_soon = rediscover_soon
        self.lost = lost
        self.last_contact = time.monotonic()

    def on_publish(self, result: ua.PublishResult) -> None:
        """Handle one publish response: rows per stream, events right after."""
        self.last_contact = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        rx = time.time_ns()
        try:
            assemblers: Assemblers = {}
            for notification in data:
                if isinstance(notification, FastDataChange):
                    self.fast_changes(notification, rx, assemblers)
                elif isinstance(notification, ua.DataChangeNotification):
                    self.changes(notification.MonitoredItems, rx, assemblers)
                elif isinstance(notification, ua.StatusChangeNotification):
                    self.status_change(notification.Status)
            for stream, asm in assemblers.values():
                self.flush(stream, asm, rx)
        except Exception as err:  # a bug, not the device: counted and logged, the session goes on
            self.ctx.quarantine("unprocessable", repr(err))
            self.ctx.log.exception("device %s: publish response not processed", self.ctx.device)

    def changes(self, items: list[ua.MonitoredItemNotification], rx: int,
                assemblers: Assemblers) -> None:
        """Add each data change to the row assembler of its stream."""
        for item in items:
            binding = self.table.bindings.get(item.ClientHandle)
            if binding is None or binding.dead:
                continue
            self.stats.changes += 1
            self._change(binding, item.Value, rx, assemblers)

    def fast_changes(self, note: FastDataChange, rx: int, assemblers: Assemblers) -> None:
        """``changes`` for a notification decoded by fastpublish (flat lists, no objects)."""
        bindings = self.table.bindings
        source_first = self.options.timestamp_source == "source"
        for handle, status, raw, source, server in zip(
                note.handles, note.statuses, note.values, note.source_ns, note.server_ns,
                strict=True):
            binding = bindings.get(handle)
            if binding is None or binding.dead:
                continue
            self.stats.changes += 1
            first, second = (source, server) if source_first else (server, source)
            ts = first if first is not None else second if second is not None else rx
            stream = binding.stream
            entry = assemblers.get(stream.name)
            if entry is None:
                entry = assemblers[stream.name] = (stream,
                                                   RowAssembler(stream.ring.stream.width))
            if status & 0xC000_0000:  # not Good: the general path (Bad, Uncertain)
                self._store(binding, entry[1], quality_of(status), status, raw, ts)
                continue
            if raw.__class__ is float and raw - raw == 0.0:  # finite float: the common case
                entry[1].add(ts, Quality.GOOD, binding.column, raw)
            else:
                self._store(binding, entry[1], Quality.GOOD, status, raw, ts)

    def _change(self, binding: Binding, dv: ua.DataValue, rx: int,
                assemblers: Assemblers) -> None:
        code = dv.StatusCode
        status = int(code.value) & 0xFFFF_FFFF if isinstance(code, ua.StatusCode) else 0
        quality = quality_of(status)
        stream = binding.stream
        entry = assemblers.get(stream.name)
        if entry is None:
            entry = assemblers[stream.name] = (stream, RowAssembler(stream.ring.stream.width))
        variant = dv.Value
        raw = variant.Value if isinstance(variant, ua.Variant) else None
        self._store(binding, entry[1], quality, status, raw, self.timestamp(dv, rx))

    def _store(self, binding: Binding, asm: RowAssembler, quality: Quality, status: int,
               raw: object, ts: int) -> None:
        """Add one change to its row: Bad with its status, else the value as a float."""
        if quality is Quality.BAD:
            asm.add(ts, quality, binding.column, math.nan, status,
                    ua.StatusCode(ua.UInt32(status)).name)
            if status == ua.StatusCodes.BadNodeIdUnknown:
                binding.dead = True
                self.rediscover_soon()
            return
        value = to_float(raw)
        if isinstance(value, str):
            self.stats.quarantined += 1
            self.ctx.quarantine(value, f"{binding.variable.path} = {raw!r}"[:200])
            return
        asm.add(ts, quality, binding.column, value)

    def timestamp(self, dv: ua.DataValue, rx: int) -> int:
        """Return the configured timestamp of a value, else the other one, else receive time."""
        first, second = ((dv.SourceTimestamp, dv.ServerTimestamp)
                         if self.options.timestamp_source == "source"
                         else (dv.ServerTimestamp, dv.SourceTimestamp))
        for stamp in (first, second):
            ns = stamp_ns(stamp)
            if ns is not None:
                return ns
        return rx

    def status_change(self, status: ua.StatusCode) -> None:
        """A subscription status: a deleted node means rediscover, any other Bad a lost session."""
        if status.value == ua.StatusCodes.BadNodeIdUnknown:
            self.rediscover_soon()
        elif status.is_bad():
            self.lost(f"subscription status {status.name}")

    def mark_vanished(self, bindings: list[Binding]) -> None:
        """Store a BAD sample for variables that disappeared without a Bad notification."""
        if not bindings:
            return
        now = time.time_ns()
        assemblers: Assemblers = {}
        for b in bindings:
            _, asm = assemblers.setdefault(
                b.stream.name, (b.stream, RowAssembler(b.stream.ring.stream.width)))
            asm.add(now, Quality.BAD, b.column, math.nan, ua.StatusCodes.BadNodeIdUnknown,
                    "BadNodeIdUnknown")
        for stream, asm in assemblers.values():
            self.flush(stream, asm, now)

    def flush(self, stream: CarrierStream, asm: RowAssembler, rx: int) -> None:
        """Append the assembled rows of one stream (one step, counted), then its events."""
        rows = asm.sorted_rows()
        if not rows:
            return
        # rows of another quality never share a timestamp (InfluxDB merges); rows of one
        # quality at one time may, also across publish responses (see UniqueTimes)
        for row in rows:
            row.timestamp_ns = stream.times.place(row.timestamp_ns, int(row.quality))
        n = len(rows)
        if n == 1:  # one row per publish is the common case: skip the array building
            row = rows[0]
            self.ctx.append_one(stream.ring, row.timestamp_ns, row.values, int(row.quality),
                                None, rx)
        else:
            self._append_rows(stream, rows, asm.width, rx)
        self.stats.rows += n
        if stream.detector is not None and stream.event_ring is not None:
            self._events(stream, rows, rx)

    def _append_rows(self, stream: CarrierStream, rows: list[Row], width: int,
                     rx: int) -> None:
        n = len(rows)
        ts = np.fromiter((r.timestamp_ns for r in rows), dtype=np.int64, count=n)
        values = np.array([r.values for r in rows], dtype=np.float64).reshape(n, width)
        quality = np.fromiter((r.quality for r in rows), dtype=np.uint8, count=n)
        self.ctx.append(stream.ring, ts, values, quality,
                        receive_ns=np.full(n, rx, dtype=np.int64))

    def _events(self, stream: CarrierStream, rows: list[Row], rx: int) -> None:
        """Append the events of these rows at once (priority lane), each at its own time."""
        assert stream.detector is not None and stream.event_ring is not None
        for row in rows:
            for event in stream.detector.update(row):
                stream.events += 1
                ts = stream.event_times.place(row.timestamp_ns, stream.events)
                self.ctx.append_one(stream.event_ring, ts, event.values(), Quality.GOOD,
                                    event.text, rx)
                self.stats.events += 1
