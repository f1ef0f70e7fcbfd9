"""The OPC UA driver: subscriptions -> one stream per carrier + an event stream per carrier.

Session cycle: connect (security, user) -> discover -> one subscription with a monitored
item per numeric variable -> serve publish responses until the session is lost -> close,
report the gap, reconnect with jittered exponential backoff. Read-only: the driver only
browses, reads and subscribes; it never writes a value or calls a method.

Rows and events are made in handler.py, streams and bindings in streams.py, the
subscription in subscription.py. The session loop here sleeps on an event: it wakes when
asyncua reports the connection lost, the subscription reports a Bad status, a node is
deleted (rediscover soon), or at the next deadline (rediscovery, publish silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.opcua import fastpublish
from drivers.opcua.discovery import Discovery, discover
from drivers.opcua.handler import PublishHandler
from drivers.opcua.options import OpcUaOptions
from drivers.opcua.session import close_client, open_client, translate_error
from drivers.opcua.streams import Binding, CarrierStream, DriverStats, StreamTable
from drivers.opcua.subscription import create_subscription, keepalive_s, monitor, unmonitor
from gateway.backoff import Backoff
from gateway.driver import DriverContext
from gateway.errors import DeviceError

_REDISCOVER_SOON_S = 0.5  # after a BadNodeIdUnknown: the node may be re-created right away


class OpcUaDriver:
    """Pulls carrier telemetry from one OPC UA server into the rings."""

    def __init__(self, ctx: DriverContext, options: OpcUaOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.stats = DriverStats()
        self.table = StreamTable(ctx, options, self.stats)
        self.handler = PublishHandler(ctx, options, self.table, self.stats,
                                      self._rediscover_soon, self._mark_lost)
        self.client: Client | None = None
        self.subscription_id: int | None = None
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost_reason: str | None = None
        self._rediscover_at = math.inf

    @property
    def streams(self) -> dict[str, CarrierStream]:
        """The carrier streams seen so far, by name."""
        return self.table.streams

    @property
    def bindings(self) -> dict[int, Binding]:
        """The monitored items of the current session, by client handle."""
        return self.table.bindings

    @property
    def last_error(self) -> str | None:
        """The device's latest error as text (None while it works), as /health shows it."""
        return self.ctx.state.last_error

    # ------------------------------------------------------------------ lifecycle
    async def check(self) -> str:
        """Preflight for ``medgw check``: open a session as a run would, read the server state.

        Read-only like everything else: one attribute read, then the session is closed.
        """
        notes: list[str] = []
        client = await open_client(self.options, notes)
        try:
            state = await client.nodes.server_state.read_value()
            mode = (f"{self.options.security_policy} {self.options.security_mode}"
                    if self.options.secure else "security None")
        finally:
            await close_client(client)
        extra = "".join(f"; {note}" for note in notes)
        return f"session ok ({mode}), server state {ua.ServerState(state).name}{extra}"

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
                down_since = self.handler.last_contact
                await self.disconnect()
                await asyncio.sleep(backoff.next())
        finally:
            await self.disconnect()

    def _failed(self, err: DeviceError) -> None:
        self.ctx.set_error(str(err))
        self.ctx.set_connected(False)
        self.ctx.log.warning("device %s: %s", self.ctx.device, err)

    async def connect(self) -> None:
        """Open a session, discover the variables and subscribe; DeviceError on failure."""
        await self.disconnect()
        self._lost_reason = None
        notes: list[str] = []
        self.client = await open_client(self.options, notes)
        if self.options.fast_decode:
            fastpublish.install(self.client)
        for note in notes:  # the session is up, but something could not be checked
            self.table.warn_once(f"note:{note}", note)
        self.client.connection_lost_callback = self._connection_lost
        try:
            discovery = await self._discover()
            self.table.bindings.clear()
            bindings = self.table.bind(discovery.variables)
            self.subscription_id = await create_subscription(self.client, self.options,
                                                             self.handler.on_publish)
            await self._monitor(bindings)
        except Exception as err:
            await self.disconnect()
            raise translate_error(err, self.options) from err
        self.stats.sessions += 1
        self.ctx.set_error(None)
        self.handler.last_contact = time.monotonic()
        self._rediscover_at = math.inf
        self._schedule_rediscovery(self.options.rediscover_interval_s)
        self.ctx.set_connected(True)
        self.ready.set()
        if not self.table.bindings:
            self.table.warn_once("no-items", "the browse patterns and nodes matched no numeric"
                                 " variable; nothing is monitored (rediscovery keeps looking)")
        self.ctx.log.info("device %s: session up, %d monitored items in %d streams",
                          self.ctx.device, len(self.table.bindings), len(self.table.streams))

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
        if self._lost_reason is None:
            self._lost_reason = reason
            self._wake.set()

    async def _serve(self) -> None:
        """Sleep until an event or a deadline; rediscover when due; return on a lost session."""
        silence_limit = keepalive_s(self.options) * 3 + self.options.request_timeout_s
        where = f"OPC UA server {self.options.endpoint}"
        while True:
            self._wake.clear()
            deadline = min(self.handler.last_contact + silence_limit, self._rediscover_at)
            delay = deadline - time.monotonic()
            if delay > 0 and self._lost_reason is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            if self._lost_reason is not None:
                raise DeviceError(f"{where}: {self._lost_reason}")
            client = self.client
            if client is None or client.uaclient.state is not UaClientState.CONNECTED:
                raise DeviceError(f"{where}: transport closed")
            if time.monotonic() - self.handler.last_contact > silence_limit:
                raise DeviceError(f"{where}: no publish response for {silence_limit:.1f} s")
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
        for note in discovery.renamed:
            target = f"named {note.name}" if note.name else "skipped"
            self.table.warn_once(f"renamed:{note.path}:{note.name}",
                                 f"browse name {note.path!r} {target} ({note.reason})")
        return discovery

    def _rediscover_soon(self) -> None:
        self._schedule_rediscovery(_REDISCOVER_SOON_S)

    def _schedule_rediscovery(self, delay_s: float) -> None:
        """Rediscover within ``delay_s`` (0 = not at all); an earlier schedule is kept."""
        if delay_s > 0:
            due = time.monotonic() + delay_s
            if due < self._rediscover_at:
                self._rediscover_at = due
                self._wake.set()

    async def _rediscover(self) -> None:
        """Drop vanished or dead items, subscribe new ones (carriers added, nodes re-created)."""
        self._rediscover_at = math.inf
        discovery = await self._discover()
        found = {(v.stream, v.field): v for v in discovery.variables}
        drop = self.table.dead_or_vanished(found)
        self.handler.mark_vanished([b for b in drop if not b.dead])
        self.table.forget(drop)
        if self.client is not None and self.subscription_id is not None:
            await unmonitor(self.client, self.subscription_id, drop, self.ctx.log)
        kept = {(b.stream.name, b.variable.field) for b in self.table.bindings.values()}
        fresh = self.table.bind([v for key, v in found.items() if key not in kept])
        await self._monitor(fresh)
        if fresh or drop:
            self.ctx.log.info("device %s: rediscovery added %d and removed %d items",
                              self.ctx.device, len(self.table.bindings) - len(kept), len(drop))
        self._schedule_rediscovery(self.options.rediscover_interval_s)

    async def _monitor(self, bindings: list[Binding]) -> None:
        assert self.client is not None and self.subscription_id is not None
        refused = await monitor(self.client, self.subscription_id, self.options, bindings,
                                self.ctx.log)
        self.table.forget(refused)
