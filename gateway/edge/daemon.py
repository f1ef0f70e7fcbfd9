"""The edge daemon: drivers append to the rings, the publisher drains them to MQTT."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import dataclass

from gateway import plugins
from gateway.config import LoadedConfig
from gateway.driver import Driver, DriverContext
from gateway.edge.publisher import MqttPublisher, resolve_spool_dir
from gateway.edge.seqstate import SeqRingStore, SeqState
from gateway.metrics import GatewayMetrics

log = logging.getLogger("medgw.daemon")


@dataclass
class DeviceRuntime:
    """A configured device, its driver and its context."""

    name: str
    driver_name: str
    driver: Driver
    ctx: DriverContext
    restarts: int = 0
    finished: bool = False
    last_error: str | None = None


class Gateway:
    """Builds every enabled device's driver and the publisher from one config."""

    def __init__(self, loaded: LoadedConfig, metrics: GatewayMetrics | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.metrics = metrics or GatewayMetrics()
        # sequence numbers resume after a restart from the reservations in the spool dir
        spool_dir, temporary = resolve_spool_dir(loaded)
        self.store = SeqRingStore(self.config.publisher.ring_capacity,
                                  SeqState(spool_dir / "seq.json",
                                           2 * self.config.publisher.max_batch_samples))
        self.devices: list[DeviceRuntime] = []
        for device in self.config.devices:
            if not device.enabled:
                continue
            ctx = DriverContext(
                site=self.config.site, device=device.name, store=self.store,
                metrics=self.metrics, log=logging.getLogger(f"medgw.device.{device.name}"),
                ring_capacity=self.config.publisher.ring_capacity,
                ring_seconds=self.config.publisher.ring_seconds,
                min_ring_capacity=max(1024, 2 * self.config.publisher.max_batch_samples),
            )
            info = plugins.load_driver(device.driver)
            driver = info.create(ctx, loaded.driver_options[device.name])
            self.devices.append(DeviceRuntime(device.name, device.driver, driver, ctx))
        self.publisher = MqttPublisher(loaded, self.store, self.metrics, spool_dir, temporary)

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until ``stop`` is set; then drain the publisher. True if everything was acked."""
        self.publisher.start()
        tasks = [
            asyncio.create_task(self._supervise(device), name=f"driver:{device.name}")
            for device in self.devices
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return await asyncio.to_thread(self.publisher.stop)

    async def _supervise(self, device: DeviceRuntime) -> None:
        """Run one driver; if it crashes, log it and restart it with jittered backoff."""
        backoff = 1.0
        while True:
            try:
                await device.driver.run()
                device.finished = True
                log.info("device %s: driver finished", device.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # one device's failure must never stop the others
                device.restarts += 1
                device.last_error = f"{type(err).__name__}: {err}"
                device.ctx.set_connected(False)
                log.exception("device %s: driver %s failed; restarting in ~%.0f s",
                              device.name, device.driver_name, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 60.0)

    def health_report(self) -> dict[str, object]:
        """Return the /health document: broker connection and every device's state."""
        devices = {
            d.name: {"driver": d.driver_name, "restarts": d.restarts, "finished": d.finished,
                     # drivers that retry on their own keep their latest device error
                     "last_error": d.last_error or getattr(d.driver, "last_error", None)}
            for d in self.devices
        }
        broker_ok = self.publisher.connected.is_set()
        return {
            "status": "ok" if broker_ok else "degraded",
            "site": self.config.site,
            "gateway": self.config.gateway,
            "broker_connected": broker_ok,
            "broker_error": self.publisher.last_error,
            "inflight": self.publisher.inflight(),
            "devices": devices,
        }


class GatewayThread:
    """Runs a Gateway's asyncio loop in a thread so the caller can watch and stop it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.all_acked: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="medgw-gateway", daemon=True)

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            self.all_acked = await self.gateway.run(self._stop)

        asyncio.run(body())

    def start(self) -> None:
        """Start the gateway thread and wait until its loop runs."""
        self._thread.start()
        self._started.wait(10)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the drivers, drain the publisher; True if every sample was acknowledged."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        return bool(self.all_acked)
