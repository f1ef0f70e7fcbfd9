"""ROS 2 driver: reads ROS 2 topics through a transport (cyclonedds or rclpy), never publishes.

The transport (:mod:`drivers.ros2.transport`) runs a session in a thread of its own and
delivers discoveries, raw CDR samples and ticks to a :class:`TopicRouter`, which picks the
topics, feeds the per-topic :class:`TopicPipeline` (decode, rings) and watches matching,
loss and silence. ``run()`` awaits the session's end (a future the thread resolves, no
polling) and starts a new one after the shared :class:`gateway.backoff.Backoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from drivers.ros2.check import run_check
from drivers.ros2.options import Ros2Options
from drivers.ros2.pipeline import HealthStream, TopicPipeline
from drivers.ros2.router import TopicRouter
from drivers.ros2.transport import Ros2Transport, make_transport
from gateway.backoff import Backoff
from gateway.driver import DriverContext
from gateway.errors import DeviceError

HEALTHY_SESSION_S = 30.0  # a session that lasted this long resets the backoff


class Ros2Driver:
    """Reads ROS 2 topics into rings; read-only (no DDS writer is ever created)."""

    def __init__(self, ctx: DriverContext, options: Ros2Options, *,
                 transport: Ros2Transport | None = None, node: Any | None = None) -> None:
        self.ctx = ctx
        self.options = options
        self.health = HealthStream(ctx)
        self._pipelines: dict[str, TopicPipeline] = {}  # survive session re-creation
        self._transport = transport
        self._node = node  # an rclpy Node to read through (the ros_ws node's own)
        self._router: TopicRouter | None = None
        self._build_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backoff = Backoff(options.reconnect_min_s, options.reconnect_max_s)
        self.sessions = 0

    @property
    def transport(self) -> Ros2Transport:
        """Return the transport, built from ``options.transport`` on first use."""
        with self._build_lock:  # run() and a caller's thread may ask at the same time
            if self._transport is None:
                self._transport = make_transport(self.options, self.ctx.log, node=self._node)
            return self._transport

    @property
    def router(self) -> TopicRouter:
        """Return the router (the transport's sink), built on first use."""
        transport = self.transport
        with self._build_lock:
            if self._router is None:
                self._router = TopicRouter(self.ctx, self.options, transport, self.health,
                                           self._pipelines)
            return self._router

    async def check(self, listen_s: float = 3.0) -> str:
        """Preflight for ``medgw check``: every wanted topic, discovered/matched/type/rate.

        Opens readers for the wanted topics for ``listen_s`` (reading only, as run does).
        """
        return await asyncio.to_thread(run_check, self.options, self.transport, listen_s)

    async def run(self) -> None:
        """Read until cancelled; when a session fails start another after the backoff."""
        try:
            router = self.router
        except DeviceError as refused:  # e.g. transport: rclpy without rclpy installed
            self.ctx.set_error(refused)
            self.ctx.log.error("ros2 %s: %s", self.ctx.device, refused)
            raise
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = time.monotonic()
                err = await self._session(loop, router)
                self.ctx.set_connected(False)
                self.ctx.set_error(err if err is not None else "DDS session ended")
                if time.monotonic() - started >= HEALTHY_SESSION_S:
                    self.backoff.reset()
                delay = self.backoff.next()
                why = "stopped" if err is None else f"{type(err).__name__}: {err}"
                self.ctx.log.warning("ros2 %s: %s session ended (%s); retrying in %.1f s",
                                     self.ctx.device, self.transport.name, why, delay)
                await asyncio.sleep(delay)
        finally:
            self.stop()

    async def _session(self, loop: asyncio.AbstractEventLoop,
                       router: TopicRouter) -> BaseException | None:
        """Run one transport session in a thread; return how it ended."""
        done: asyncio.Future[BaseException | None] = loop.create_future()
        self._stop.clear()
        router.reset()
        self.sessions += 1
        self._thread = threading.Thread(target=self._thread_main, args=(loop, done, router),
                                        daemon=True, name=f"ros2-{self.ctx.device}")
        self._thread.start()
        return await done

    def _thread_main(self, loop: asyncio.AbstractEventLoop,
                     done: asyncio.Future[BaseException | None], router: TopicRouter) -> None:
        error: BaseException | None = None
        try:
            self.transport.run(router, self._stop)
        except (DeviceError, OSError) as err:
            error = err
        except Exception as err:  # keep the gateway alive whatever the middleware did
            self.ctx.log.exception("ros2 %s: reader thread failed", self.ctx.device)
            error = err
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, done, error)

    def stop(self) -> None:
        """Stop the reader thread and wait for it (bounded)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(2.0, 5 * self.options.poll_ms / 1000))

    @property
    def pipelines(self) -> dict[str, TopicPipeline]:
        """Return the topic pipelines created so far (topic -> pipeline)."""
        return dict(self._pipelines)


def _resolve(done: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not done.done():
        done.set_result(error)
