"""The OPC UA driver: subscriptions -> one stream per carrier + an event stream per carrier.

Session cycle: connect (security, user) -> discover -> one subscription with a monitored
item per numeric variable -> serve publish responses until the session is lost -> close,
report the gap, reconnect with jittered exponential backoff. Read-only: the driver only
browses, reads and subscribes; it never writes a value or calls a method.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.opcua.discovery import Discovery, Variable, discover
from drivers.opcua.mapping import (
    EVENT_FIELDS,
    EVENT_LABELS,
    EventDetector,
    Row,
    RowAssembler,
    UniqueTimes,
    chunk_by_stream,
    datetime_to_ns,
    quality_of,
    to_float,
)
from drivers.opcua.options import OpcUaOptions
from drivers.opcua.session import close_client, open_client, translate_error
from gateway.backoff import Backoff
from gateway.driver import DriverContext
from gateway.errors import DeviceError
from gateway.model import Quality, StreamKind
from gateway.ring import StreamRing

# Most monitored items per CreateMonitoredItems request; a stream is never split over two
# requests (chunk_by_stream), so one carrier with more items than this goes alone.
ITEM_BATCH = 1000
_WAKE_S = 0.25
_MIN_TS_NS = 946_684_800 * 1_000_000_000  # 2000-01-01: anything older is not a real clock


@dataclass
class CarrierStream:
    """One sampled stream (a carrier), its column map and its event stream."""

    name: str
    ring: StreamRing
    columns: dict[str, int]
    event_ring: StreamRing | None = None
    detector: EventDetector | None = None
    times: UniqueTimes = field(default_factory=UniqueTimes)
    event_times: UniqueTimes = field(default_factory=UniqueTimes)
    events: int = 0


@dataclass
class Binding:
    """A monitored item: which column of which stream its changes fill."""

    handle: int
    variable: Variable
    stream: CarrierStream
    column: int
    item_id: int | None = None
    dead: bool = False  # the server reported the node gone


def _stream_name(binding: Binding) -> str:
    return binding.stream.name


@dataclass
class DriverStats:
    """Counters the tests and the benchmark read."""

    changes: int = 0
    rows: int = 0
    events: int = 0
    quarantined: int = 0
    sessions: int = 0
    discoveries: int = 0
    skipped: tuple[str, ...] = field(default_factory=tuple)


class OpcUaDriver:
    """Pulls carrier telemetry from one OPC UA server into the rings."""

    def __init__(self, ctx: DriverContext, options: OpcUaOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.streams: dict[str, CarrierStream] = {}
        self.bindings: dict[int, Binding] = {}
        self.client: Client | None = None
        self.subscription_id: int | None = None
        self.last_error: DeviceError | None = None
        self.stats = DriverStats()
        self.ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._rediscover_at = math.inf
        self._last_contact = time.monotonic()
        self._next_handle = 1
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    async def check(self) -> str:
        """Preflight for ``medgw check``: open a session as a run would, read the server state.

        Read-only like everything else: one attribute read, then the session is closed.
        """
        client = await open_client(self.options)
        try:
            state = await client.nodes.server_state.read_value()
            mode = (f"{self.options.security_policy} {self.options.security_mode}"
                    if self.options.secure else "security None")
        finally:
            await close_client(client)
        return f"session ok ({mode}), server state {ua.ServerState(state).name}"

    async def run(self) -> None:
        """Serve sessions until cancelled; reconnect with jittered backoff after any loss."""
        options = self.options
        backoff = Backoff(options.reconnect_initial_s, options.reconnect_max_s)
        down_since: float | None = None
        self.ctx.set_connected(False)
        try:
            while True:
                try:
                    await self.connect()
                except DeviceError as err:
                    self._failed(err)
                    await asyncio.sleep(backoff.next())
                    continue
                backoff.reset()
                if down_since is not None:
                    self.ctx.report_gap(max(0.0, time.monotonic() - down_since))
                try:
                    await self._serve()
                except DeviceError as err:
                    self._failed(err)
                down_since = self._last_contact
                await self.disconnect()
                await asyncio.sleep(backoff.next())
        finally:
            await self.disconnect()

    def _failed(self, err: DeviceError) -> None:
        self.last_error = err
        self.ctx.set_connected(False)
        self.ctx.log.warning("device %s: %s", self.ctx.device, err)

    async def connect(self) -> None:
        """Open a session, discover the variables and subscribe; DeviceError on failure."""
        await self.disconnect()
        self._lost.clear()
        self.client = await open_client(self.options)
        self.client.connection_lost_callback = self._connection_lost
        try:
            discovery = await self._discover()
            self.bindings.clear()
            bindings = self._bind(discovery.variables)
            await self._create_subscription()
            await self._monitor(bindings)
        except Exception as err:
            await self.disconnect()
            raise translate_error(err, self.options) from err
        self.stats.sessions += 1
        self.last_error = None
        self._last_contact = time.monotonic()
        self._rediscover_at = math.inf
        self._schedule_rediscovery(self.options.rediscover_interval_s)
        self.ctx.set_connected(True)
        self.ready.set()
        if not self.bindings:
            self._warn_once("no-items", "the browse patterns and nodes matched no numeric"
                            " variable; nothing is monitored (rediscovery keeps looking)")
        self.ctx.log.info("device %s: session up, %d monitored items in %d streams",
                          self.ctx.device, len(self.bindings), len(self.streams))

    async def disconnect(self) -> None:
        """Close the session (best effort) and mark the device disconnected."""
        self.ready.clear()
        client, self.client = self.client, None
        self.subscription_id = None
        if client is not None:
            await close_client(client)
            self.ctx.set_connected(False)

    async def _connection_lost(self, exc: Exception) -> None:
        self._mark_lost(f"connection lost: {exc!r}")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _serve(self) -> None:
        """Wait for data; run rediscovery when due; return when the session is lost."""
        silence_limit = self._keepalive_s() * 3 + self.options.request_timeout_s
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), _WAKE_S)
            if self._lost.is_set():
                raise DeviceError(f"OPC UA server {self.options.endpoint}: {self._lost_reason}")
            client = self.client
            if client is None or client.uaclient.state is not UaClientState.CONNECTED:
                raise DeviceError(f"OPC UA server {self.options.endpoint}: transport closed")
            if time.monotonic() - self._last_contact > silence_limit:
                raise DeviceError(f"OPC UA server {self.options.endpoint}: no publish response"
                                  f" for {silence_limit:.1f} s")
            if time.monotonic() >= self._rediscover_at:
                try:
                    await self._rediscover()
                except (ua.UaError, OSError, asyncio.TimeoutError) as err:
                    raise translate_error(err, self.options) from err

    # ------------------------------------------------------------------ discovery
    async def _discover(self) -> Discovery:
        assert self.client is not None
        discovery = await discover(self.client, self.options)
        self.stats.discoveries += 1
        if discovery.skipped != self.stats.skipped:
            self.stats.skipped = discovery.skipped
            if discovery.skipped:
                self.ctx.log.info("device %s: %d non-numeric variables not monitored (%s ...)",
                                  self.ctx.device, len(discovery.skipped), discovery.skipped[0])
        return discovery

    def _schedule_rediscovery(self, delay_s: float) -> None:
        """Rediscover within ``delay_s`` (0 = not at all); an earlier schedule is kept."""
        if delay_s > 0:
            self._rediscover_at = min(self._rediscover_at, time.monotonic() + delay_s)

    async def _rediscover(self) -> None:
        """Drop vanished or dead items, subscribe new ones (carriers added, nodes re-created)."""
        self._rediscover_at = math.inf
        discovery = await self._discover()
        found = {(v.stream, v.field): v for v in discovery.variables}
        bound = {(b.stream.name, b.variable.field): b for b in self.bindings.values()}
        drop = [b for key, b in bound.items()
                if b.dead or key not in found or found[key].node_id != b.variable.node_id]
        self._mark_vanished([b for b in drop if not b.dead])
        await self._unmonitor(drop)
        kept = {key for key, b in bound.items() if b not in drop}
        fresh = self._bind([v for key, v in found.items() if key not in kept])
        await self._monitor(fresh)
        if fresh or drop:
            self.ctx.log.info("device %s: rediscovery added %d and removed %d items",
                              self.ctx.device, len(self.bindings) - len(kept), len(drop))
        self._schedule_rediscovery(self.options.rediscover_interval_s)

    def _mark_vanished(self, bindings: list[Binding]) -> None:
        """Store a BAD sample for variables that disappeared without a Bad notification."""
        if not bindings:
            return
        now = time.time_ns()
        assemblers: dict[str, tuple[CarrierStream, RowAssembler]] = {}
        for b in bindings:
            _, asm = assemblers.setdefault(
                b.stream.name, (b.stream, RowAssembler(b.stream.ring.stream.width)))
            asm.add(now, Quality.BAD, b.column, math.nan, ua.StatusCodes.BadNodeIdUnknown,
                    "BadNodeIdUnknown")
        for stream, asm in assemblers.values():
            self._flush(stream, asm, now)

    def _bind(self, variables: tuple[Variable, ...] | list[Variable]) -> list[Binding]:
        """Create streams on first sight and a binding (client handle) per variable."""
        by_stream: dict[str, list[Variable]] = {}
        for var in variables:
            by_stream.setdefault(var.stream, []).append(var)
        out = []
        for name, group in by_stream.items():
            stream = self.streams.get(name) or self._add_stream(name, group)
            for var in group:
                column = stream.columns.get(var.field)
                if column is None:
                    self._warn_once(f"{name}.{var.field}",
                                    f"variable {var.path} is not a field of stream {name}"
                                    f" {tuple(stream.columns)}; not monitored")
                    continue
                binding = Binding(self._next_handle, var, stream, column)
                self._next_handle += 1
                self.bindings[binding.handle] = binding
                out.append(binding)
        return out

    def _add_stream(self, name: str, group: list[Variable]) -> CarrierStream:
        units = {v.field: v.unit for v in group}
        fields = group[0].fields or tuple(dict.fromkeys(v.field for v in group))
        spec = self.ctx.stream_spec(name, tuple(fields), tuple(units.get(f, "") for f in fields),
                                    kind=StreamKind.SAMPLED, measurement=self.options.measurement,
                                    rate_hz=self._nominal_rate_hz())
        stream = CarrierStream(name, self.ctx.add_stream(spec),
                               {f: i for i, f in enumerate(fields)})
        rules = self.options.events
        watched = {rules.temperature_field, rules.door_field, rules.mission_field,
                   rules.alarm_field}
        if rules.enabled and watched & set(fields):
            event_spec = self.ctx.stream_spec(
                f"{name}.events", EVENT_FIELDS, ("", "", ""), kind=StreamKind.EVENT,
                measurement=self.options.event_measurement, labels=EVENT_LABELS)
            stream.event_ring = self.ctx.add_stream(event_spec)
            stream.detector = EventDetector(rules.rule(), fields)
        self.streams[name] = stream
        return stream

    def _nominal_rate_hz(self) -> float:
        """A carrier's nominal rows per second: one per sampling interval, or, with
        ``sampling_interval_ms: 0`` (the server's fastest), one per publishing interval.

        Only sizes the ring (gateway/driver.py ``capacity_for``), whose floor of 2 x
        ``max_batch_samples`` leaves a wide margin for queued values arriving faster.
        """
        interval_ms = self.options.sampling_interval_ms or self.options.publishing_interval_ms
        return 1000.0 / interval_ms

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.ctx.log.warning("device %s: %s", self.ctx.device, message)

    # ------------------------------------------------------------------ subscription
    def _keepalive_count(self) -> int:
        return max(1, math.ceil(1000.0 / self.options.publishing_interval_ms))

    def _keepalive_s(self) -> float:
        return self._keepalive_count() * self.options.publishing_interval_ms / 1000.0

    async def _create_subscription(self) -> None:
        assert self.client is not None
        keepalive = self._keepalive_count()
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self.options.publishing_interval_ms,
            RequestedLifetimeCount=keepalive * 10,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await self.client.uaclient.create_subscription(params, self._on_publish)
        self.subscription_id = result.SubscriptionId

    def _item_request(self, binding: Binding) -> ua.MonitoredItemCreateRequest:
        options = self.options
        params = ua.MonitoringParameters(
            ClientHandle=binding.handle, SamplingInterval=options.sampling_interval_ms,
            QueueSize=options.queue_size, DiscardOldest=True)
        if options.deadband > 0:
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=options.deadband)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=binding.variable.node_id,
                                         AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)

    async def _monitor(self, bindings: list[Binding]) -> None:
        """Create monitored items in batches; drop bindings the server refuses.

        A batch holds whole streams: the initial values of one carrier then arrive in one
        publish response and become one row, not two rows of one source time.
        """
        assert self.client is not None and self.subscription_id is not None
        for chunk in chunk_by_stream(bindings, _stream_name, ITEM_BATCH):
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=self.subscription_id,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[self._item_request(b) for b in chunk])
            results = await self.client.uaclient.create_monitored_items(params)
            for binding, result in zip(chunk, results, strict=True):
                if result.StatusCode.is_good():
                    binding.item_id = result.MonitoredItemId
                else:
                    self.bindings.pop(binding.handle, None)
                    self.ctx.log.warning("device %s: cannot monitor %s: %s", self.ctx.device,
                                         binding.variable.path, result.StatusCode.name)

    async def _unmonitor(self, bindings: list[Binding]) -> None:
        for b in bindings:
            self.bindings.pop(b.handle, None)
        ids = [b.item_id for b in bindings if b.item_id is not None]
        if not ids or self.client is None or self.subscription_id is None:
            return
        params = ua.DeleteMonitoredItemsParameters(SubscriptionId=self.subscription_id,
                                                   MonitoredItemIds=ids)
        try:
            await self.client.uaclient.delete_monitored_items(params)
        except ua.UaStatusCodeError as err:  # items of deleted nodes may be gone already
            self.ctx.log.debug("device %s: delete_monitored_items: %s", self.ctx.device, err)

    # ------------------------------------------------------------------ data path
    def _on_publish(self, result: ua.PublishResult) -> None:
        """Handle one publish response: rows per stream, events right after."""
        self._last_contact = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        rx = time.time_ns()
        try:
            assemblers: dict[str, tuple[CarrierStream, RowAssembler]] = {}
            for notification in data:
                if isinstance(notification, ua.DataChangeNotification):
                    self._changes(notification.MonitoredItems, rx, assemblers)
                elif isinstance(notification, ua.StatusChangeNotification):
                    self._status_change(notification.Status)
            for stream, asm in assemblers.values():
                self._flush(stream, asm, rx)
        except Exception as err:
            self.ctx.quarantine("unprocessable", repr(err))
            self.ctx.log.exception("device %s: publish response not processed", self.ctx.device)

    def _changes(self, items: list[ua.MonitoredItemNotification], rx: int,
                 assemblers: dict[str, tuple[CarrierStream, RowAssembler]]) -> None:
        for item in items:
            binding = self.bindings.get(item.ClientHandle)
            if binding is None or binding.dead:
                continue
            dv = item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            quality = quality_of(status)
            stream = binding.stream
            entry = assemblers.get(stream.name)
            if entry is None:
                entry = assemblers[stream.name] = (stream,
                                                   RowAssembler(stream.ring.stream.width))
            ts = self._timestamp(dv, rx)
            self.stats.changes += 1
            if quality is Quality.BAD:
                entry[1].add(ts, quality, binding.column, math.nan, status,
                             ua.StatusCode(ua.UInt32(status)).name)
                if status == ua.StatusCodes.BadNodeIdUnknown:
                    binding.dead = True
                    self._schedule_rediscovery(0.5)
                continue
            raw = dv.Value.Value if dv.Value is not None else None
            value = to_float(raw)
            if isinstance(value, str):
                self.stats.quarantined += 1
                self.ctx.quarantine(value, f"{binding.variable.path} = {raw!r}"[:200])
                continue
            entry[1].add(ts, quality, binding.column, value)

    def _timestamp(self, dv: ua.DataValue, rx: int) -> int:
        first, second = ((dv.SourceTimestamp, dv.ServerTimestamp)
                         if self.options.timestamp_source == "source"
                         else (dv.ServerTimestamp, dv.SourceTimestamp))
        for stamp in (first, second):
            if stamp is not None:
                ns = datetime_to_ns(stamp)
                if ns > _MIN_TS_NS:
                    return ns
        return rx

    def _status_change(self, status: ua.StatusCode) -> None:
        if status.value == ua.StatusCodes.BadNodeIdUnknown:
            self._schedule_rediscovery(0.5)
        elif status.is_bad():
            self._mark_lost(f"subscription status {status.name}")

    def _flush(self, stream: CarrierStream, asm: RowAssembler, rx: int) -> None:
        rows = asm.sorted_rows()
        # rows of another quality never share a timestamp (InfluxDB merges); rows of one
        # quality at one time may, also across publish responses (see UniqueTimes)
        for row in rows:
            row.timestamp_ns = stream.times.place(row.timestamp_ns, int(row.quality))
        n = len(rows)
        ts = np.fromiter((r.timestamp_ns for r in rows), dtype=np.int64, count=n)
        values = np.array([r.values for r in rows], dtype=np.float64).reshape(n, asm.width)
        quality = np.fromiter((r.quality for r in rows), dtype=np.uint8, count=n)
        stream.ring.append(ts, values, quality, receive_ns=np.full(n, rx, dtype=np.int64))
        self.ctx.count(stream.ring, n, int(ts[-1]), rx)
        self.stats.rows += n
        if stream.detector is not None and stream.event_ring is not None:
            self._events(stream, stream.detector, stream.event_ring, rows, rx)

    def _events(self, stream: CarrierStream, detector: EventDetector, ring: StreamRing,
                rows: list[Row], rx: int) -> None:
        """Append the events of these rows at once (priority lane), each at its own time."""
        for row in rows:
            for event in detector.update(row):
                stream.events += 1
                ts = stream.event_times.place(row.timestamp_ns, stream.events)
                self.ctx.append_one(ring, ts, event.values(), Quality.GOOD, event.text, rx)
                self.stats.events += 1
