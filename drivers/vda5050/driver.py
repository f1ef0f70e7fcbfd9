"""The VDA 5050 driver: a read-only subscriber on a fleet's own MQTT broker.

Session cycle: connect (TLS, credentials) -> subscribe to state, connection, factsheet (and
visualization) of the configured vehicles -> hand every message to the Fleet on paho's
network thread -> on loss, report it and reconnect with the shared jittered backoff.
Read-only by construction: the client has no Will and this module never publishes (no
order, no instantActions); an integration test checks the broker never sees a PUBLISH.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from drivers.vda5050.fleet import Fleet
from drivers.vda5050.options import Vda5050Options
from gateway.backoff import Backoff
from gateway.driver import DriverContext
from gateway.errors import ConfigError, DeviceError
from gateway.mqtt import paho_client

Handler = Callable[[str, bytes, int], None]


class Vda5050Driver:
    """Follows one fleet broker; every vehicle on it becomes streams of this device."""

    def __init__(self, ctx: DriverContext, options: Vda5050Options) -> None:
        self.ctx = ctx
        self.options = options
        self.fleet = Fleet(ctx, options)
        self.sessions = 0
        self.last_error: str | None = None
        self._password = self._secret()
        broker = options.broker
        self.where = f"fleet broker {broker.host}:{broker.port}"

    def _secret(self) -> str | None:
        ref = self.options.broker.password
        if ref is None:
            return None
        try:
            return ref.resolve().get_secret_value()
        except ValueError as err:
            raise ConfigError(f"{err} (device {self.ctx.device})",
                              key="options.broker.password") from err

    # ------------------------------------------------------------------ client
    def _client(self, suffix: str = "") -> mqtt.Client:
        """Build a paho client for the fleet broker (auth and TLS from the options)."""
        broker = self.options.broker
        client_id = (broker.client_id or f"medgw-vda5050-{self.ctx.device}") + suffix
        protocol = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
        try:
            client = paho_client(client_id, username=broker.username, password=self._password,
                                 tls=broker.tls, protocol=protocol)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise DeviceError(f"{self.where}: TLS files: {err}") from err
        return client

    async def _open(self, client: mqtt.Client, on_message: Handler,
                    lost: Callable[[str], None]) -> None:
        """Connect, start the network thread, wait for CONNACK and SUBACK; DeviceError if not."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str | None] = loop.create_future()
        filters = self.options.topic_filters()

        def settle(outcome: str | None) -> None:
            if not ready.done():
                ready.set_result(outcome)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                loop.call_soon_threadsafe(settle, f"connection refused: {reason}")
                return
            c.subscribe([(topic, 1) for topic in filters])

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, reasons: Any, _p: Any) -> None:
            refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
            loop.call_soon_threadsafe(settle, f"subscription refused (ACL?): {refused}"
                                      if refused else None)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(settle, f"disconnected: {reason}")
            loop.call_soon_threadsafe(lost, str(reason))

        def on_msg(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self._deliver(on_message, msg)

        client.on_connect, client.on_subscribe = on_connect, on_subscribe
        client.on_disconnect, client.on_message = on_disconnect, on_msg
        broker = self.options.broker
        try:
            await asyncio.wait_for(asyncio.to_thread(
                client.connect, broker.host, broker.port, broker.keepalive_s),
                broker.connect_timeout_s)
        except (OSError, ValueError, asyncio.TimeoutError) as err:
            raise DeviceError(f"{self.where}: cannot connect: {err or type(err).__name__}"
                              ) from err
        client.loop_start()
        try:
            outcome = await asyncio.wait_for(ready, broker.connect_timeout_s)
        except asyncio.TimeoutError:
            outcome = f"no CONNACK/SUBACK within {broker.connect_timeout_s:g} s"
        except BaseException:  # cancelled while waiting: never leave the thread running
            await self._close(client)
            raise
        if outcome is not None:
            await self._close(client)
            raise DeviceError(f"{self.where}: {outcome}")

    def _deliver(self, handler: Handler, msg: mqtt.MQTTMessage) -> None:
        """Hand one message to ``handler`` on the network thread; a bug is logged, counted."""
        received = time.time_ns()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<not UTF-8>"
        try:
            handler(topic, bytes(msg.payload), received)
        except Exception as err:  # a bug here must not stop the network thread
            self.ctx.log.exception("device %s: message on %s not handled",
                                   self.ctx.device, topic[:120])
            self.ctx.quarantine("internal_error", f"{type(err).__name__}: {err}")

    @staticmethod
    async def _close(client: mqtt.Client) -> None:
        """Disconnect and stop the network thread (best effort)."""
        with contextlib.suppress(Exception):
            client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    # ------------------------------------------------------------------ lifecycle
    async def check(self) -> str:
        """Preflight for ``medgw check``: subscribe briefly, list the vehicles seen."""
        seen: set[str] = set()

        def collect(topic: str, _payload: bytes, _rx: int) -> None:
            parts = topic.split("/")
            if len(parts) == 5:
                seen.add(f"{parts[2]}/{parts[3]}")

        client = self._client("-check")
        await self._open(client, collect, lambda _reason: None)
        try:
            await asyncio.sleep(self.options.check_window_s)
        finally:
            await self._close(client)
        names = sorted(seen)
        listed = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        return (f"{self.where} ok, {len(names)} vehicle(s) seen in "
                f"{self.options.check_window_s:g} s" + (f": {listed}" if names else ""))

    async def run(self) -> None:
        """Serve sessions until cancelled; reconnect with jittered backoff after any loss."""
        backoff = Backoff(self.options.reconnect_initial_s, self.options.reconnect_max_s)
        down_since: float | None = None  # when the last good session ended
        self.ctx.set_connected(False)
        while True:
            before = self.sessions
            try:
                await self._session(down_since)
            except DeviceError as err:
                self._failed(str(err))
            if self.sessions > before:  # it was up: a new outage starts now
                backoff.reset()
                down_since = time.monotonic()
            await backoff.wait()

    async def _session(self, down_since: float | None) -> None:
        """One session: open (DeviceError if not), serve until the connection is lost, close."""
        lost: asyncio.Event = asyncio.Event()
        reason: list[str] = []

        def mark_lost(text: str) -> None:
            reason.append(text)
            lost.set()

        client = self._client()
        # before the first message of the new session (the old network thread has ended):
        # what was missed while medgw was away is medgw's gap, not the vehicles'
        self.fleet.rebase()
        await self._open(client, self.fleet.handle, mark_lost)
        self.sessions += 1
        self.last_error = None
        self.ctx.set_error(None)
        self.ctx.set_connected(True)
        if down_since is not None:
            self.ctx.report_gap(max(0.0, time.monotonic() - down_since))
        self.ctx.log.info("device %s: subscribed to %s (%s)", self.ctx.device, self.where,
                          ", ".join(self.options.topic_filters()))
        try:
            await lost.wait()
            self._failed(f"{self.where}: connection lost ({reason[0] if reason else '?'})")
        finally:
            self.ctx.set_connected(False)
            await self._close(client)

    def _failed(self, text: str) -> None:
        self.last_error = text
        self.ctx.set_connected(False)
        self.ctx.set_error(text)
        self.ctx.log.warning("device %s: %s", self.ctx.device, text)
