"""The VDA 5050 driver on its own event loop in a thread, against a real fleet broker."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from drivers.vda5050 import Vda5050Driver, Vda5050Options
from drivers.vda5050.fleet import Vehicle
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ops.services import MosquittoService
from gateway.ring import RingStore, StreamRing

T = TypeVar("T")


async def cancel_all() -> None:
    """Cancel every other task of the running loop and wait until they finished."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class DriverThread:
    """Runs ``Vda5050Driver.run`` until stopped; the test thread inspects its rings."""

    def __init__(self, service: MosquittoService, **options: Any) -> None:
        self.store = RingStore()
        self.metrics = GatewayMetrics()
        self.ctx = DriverContext("site", "fleet", self.store, self.metrics,
                                 logging.getLogger("test.vda5050"))
        broker = {"port": service.port, "connect_timeout_s": 3, **options.pop("broker", {})}
        opts = {"broker": broker, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0,
                **options}
        self.driver = Vda5050Driver(self.ctx, Vda5050Options.model_validate(opts))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="vda5050-driver")
        self.task: Future[None] | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the driver's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> DriverThread:
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self.driver.run(), self.loop)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def vehicle(self, serial: str) -> Vehicle:
        """The driver's record of one simulated vehicle."""
        return self.driver.fleet.vehicles[("medgw-sim", serial)]

    def states(self, serial: str) -> int:
        """States appended for a vehicle so far."""
        found = self.driver.fleet.vehicles.get(("medgw-sim", serial))
        return found.stats.states if found else 0

    def ring(self, stream: str) -> StreamRing:
        """The ring of a stream of this device."""
        return next(r for r in self.store.rings() if r.stream.stream == stream)

    def texts(self, stream: str) -> list[str]:
        """The text of every event of an event stream."""
        r = self.ring(stream)
        batch = r.read(r.start_seq, r.write_seq - r.start_seq).batch
        return list(batch.text or ()) if batch is not None else []
