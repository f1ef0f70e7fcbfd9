"""The edge daemon: drivers append to the rings, the publisher drains them to MQTT.

Each start draws a new gateway *epoch* (gateway.edge.seqstate.new_epoch), logged here,
carried in every payload and shown in /health: the ingest tracks duplicates per
(gateway, epoch, stream), so sequence numbers restarted after a lost ``seq.json`` can never
be taken for duplicates. Every device's driver runs in its own task, supervised: a crash
is a log line with traceback, ``medgw_driver_restarts_total``, a "down" device in /health,
and a restart after the shared jittered backoff (gateway.backoff.Backoff).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from enum import Enum
from typing import Any

from gateway import plugins
from gateway.backoff import Backoff
from gateway.config import LoadedConfig
from gateway.driver import Driver, DriverContext
from gateway.edge import health
from gateway.edge.publisher import MqttPublisher, resolve_spool_dir
from gateway.edge.seqstate import SeqRingStore, SeqState, new_epoch
from gateway.errors import ConfigError
from gateway.metrics import GatewayMetrics
from gateway.ring import StreamRing

log = logging.getLogger("medgw.daemon")

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 60.0


class TaskState(str, Enum):
    """Where a device's driver task is."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # crashed, waiting for its backoff before the next run
    FINISHED = "finished"  # run() returned (a bounded replay or sample count reached)
    DEAD = "dead"  # the supervising task itself ended with an exception


class DeviceRuntime:
    """A configured device, its driver, its context and its task's state (thread-safe)."""

    def __init__(self, name: str, driver_name: str, driver: Driver, ctx: DriverContext,
                 metrics: GatewayMetrics) -> None:
        self.name = name
        self.driver_name = driver_name
        self.driver = driver
        self.ctx = ctx
        self._metrics = metrics
        self._lock = threading.Lock()
        self._task = TaskState.STARTING
        self._restarts = 0
        self._crash: str | None = None

    @property
    def restarts(self) -> int:
        """Return how often the driver was restarted after a crash."""
        with self._lock:
            return self._restarts

    @property
    def finished(self) -> bool:
        """True once the driver's run() returned on its own."""
        with self._lock:
            return self._task is TaskState.FINISHED

    @property
    def last_error(self) -> str | None:
        """Return the driver's latest device error, else the latest crash (text)."""
        with self._lock:
            return self.ctx.state.last_error or self._crash

    def set_task(self, task: TaskState, crash: BaseException | None = None) -> None:
        """Record the task's state (and a crash: counted, kept as text, device down)."""
        with self._lock:
            restarted = task is TaskState.RUNNING and self._task is TaskState.RESTARTING
            self._task = task
            if crash is not None:
                self._crash = f"{type(crash).__name__}: {crash}"
                if task is TaskState.RESTARTING:
                    self._restarts += 1
        self._metrics.driver_running.labels(self.name).set(1 if task is TaskState.RUNNING else 0)
        if restarted and self.ctx.state.last_error == self._crash:
            self.ctx.set_error(None)  # a fresh run: the driver reports its device anew
        if crash is not None:
            if task is TaskState.RESTARTING:
                self._metrics.driver_restarts.labels(self.name).inc()
            self.ctx.set_error(crash)
            self.ctx.set_connected(False)

    def snapshot(self) -> health.DeviceSnapshot:
        """Return a consistent copy of what /health shows about this device."""
        state = self.ctx.state
        with self._lock:
            return health.DeviceSnapshot(self.name, self.driver_name, self._task.value,
                                         state.connected, state.last_error, self._crash,
                                         self._restarts)


class Gateway:
    """Builds every enabled device's driver and the publisher from one config."""

    def __init__(self, loaded: LoadedConfig, metrics: GatewayMetrics | None = None, *,
                 restart_initial_s: float = RESTART_INITIAL_S,
                 restart_max_s: float = RESTART_MAX_S) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.metrics = metrics or GatewayMetrics()
        self.epoch = new_epoch()
        self.started_ns = time.time_ns()
        self._restart = (restart_initial_s, restart_max_s)
        log.info("gateway %s/%s starting, epoch %d", self.config.site, self.config.gateway,
                 self.epoch)
        # sequence numbers resume after a restart from the reservations in the spool dir
        spool_dir, temporary = resolve_spool_dir(loaded)
        self.seq_state = SeqState(spool_dir / "seq.json",
                                  2 * self.config.publisher.max_batch_samples,
                                  epoch=self.epoch, metrics=self.metrics)
        self.store = SeqRingStore(self.config.publisher.ring_capacity, self.seq_state,
                                  on_add=self._stream_added)
        self.publisher = MqttPublisher(loaded, self.store, self.metrics, spool_dir, temporary,
                                       epoch=self.epoch)
        self.devices = [self._device(d.name, d.driver) for d in self.config.devices
                        if d.enabled]

    def _device(self, name: str, driver_name: str) -> DeviceRuntime:
        """Build one device's context and driver."""
        publisher = self.config.publisher
        ctx = DriverContext(
            site=self.config.site, device=name, store=self.store, metrics=self.metrics,
            log=logging.getLogger(f"medgw.device.{name}"),
            ring_capacity=publisher.ring_capacity, ring_seconds=publisher.ring_seconds,
            min_ring_capacity=max(1024, 2 * publisher.max_batch_samples),
        )
        info = plugins.load_driver(driver_name)
        try:
            driver = info.create(ctx, self.loaded.driver_options[name])
        except Exception as err:  # a driver that cannot even be built: say which, at start
            path = str(self.loaded.path) if self.loaded.path else None
            raise ConfigError(f"driver {driver_name} cannot be set up: {type(err).__name__}: "
                              f"{err}", path, f"devices[{name}]") from err
        return DeviceRuntime(name, driver_name, driver, ctx, self.metrics)

    def _stream_added(self, ring: StreamRing) -> None:
        """Export the new stream's lag, computed whenever the metrics are read."""
        reader = self.publisher.reader
        self.metrics.lag.labels(ring.stream.key).set_function(
            lambda: health.stream_lag_s(ring, reader))

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until ``stop`` is set; then drain the publisher. True if everything was acked."""
        self.publisher.start()
        tasks = [asyncio.create_task(self._supervise(device), name=f"driver:{device.name}")
                 for device in self.devices]
        for device, task in zip(self.devices, tasks, strict=True):
            task.add_done_callback(functools.partial(_task_ended, device))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return await asyncio.to_thread(self.publisher.stop)

    async def _supervise(self, device: DeviceRuntime) -> None:
        """Run one driver; if it crashes, log it and restart it after the shared backoff."""
        backoff = Backoff(*self._restart)
        while True:
            device.set_task(TaskState.RUNNING)
            started = time.monotonic()
            try:
                await device.driver.run()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # one device's failure must never stop the others
                if time.monotonic() - started >= backoff.maximum:
                    backoff.reset()  # it ran well for a while: not a crash loop
                delay = backoff.next()
                device.set_task(TaskState.RESTARTING, err)
                log.exception("device %s: driver %s failed (restart %d); restarting in %.1f s",
                              device.name, device.driver_name, device.restarts, delay)
                await asyncio.sleep(delay)
                continue
            device.set_task(TaskState.FINISHED)
            log.info("device %s: driver finished", device.name)
            return

    def health_report(self) -> dict[str, Any]:
        """Return the /health document (see gateway.edge.health.gateway_report)."""
        return health.gateway_report(
            site=self.config.site, gateway=self.config.gateway, epoch=self.epoch,
            started_ns=self.started_ns, publisher=self.publisher.health(),
            seq_state=self.seq_state.health(),
            devices=[device.snapshot() for device in self.devices])


def _task_ended(device: DeviceRuntime, task: asyncio.Task[None]) -> None:
    """A supervising task that ended with an exception is a dead device: say so loudly."""
    if task.cancelled():
        return
    err = task.exception()
    if err is not None:
        device.set_task(TaskState.DEAD, err)
        log.error("device %s: driver task died (%s: %s); the device stays down until the "
                  "gateway restarts", device.name, type(err).__name__, err, exc_info=err)


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

        try:
            asyncio.run(body())
        finally:
            self._started.set()  # never leave start() waiting on a loop that failed

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
