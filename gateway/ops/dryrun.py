"""``medgw run --test``: the drivers alone for a few seconds; no broker, no spool, no seq.json.

Like Telegraf's ``--test``: every enabled device's driver runs against its real device
into private rings, then the streams are listed with what they received and the last
samples are printed as the JSON payload the publisher would send. Nothing is published
and nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from gateway import plugins
from gateway.config import LoadedConfig
from gateway.driver import Driver, DriverContext
from gateway.errors import ConfigError
from gateway.metrics import GatewayMetrics
from gateway.model import Quality, SampleBatch
from gateway.ring import RingStore
from gateway.wire.payload import encode
from gateway.wire.topics import data_topic

log = logging.getLogger("medgw.dryrun")


@dataclass
class Device:
    """One device under test: its context (state, rings) and driver."""

    name: str
    driver_name: str
    ctx: DriverContext
    driver: Driver
    crash: BaseException | None = None
    connected: bool = False  # at the end of the run, before the drivers were stopped
    last_error: str | None = None


def build(loaded: LoadedConfig, store: RingStore, metrics: GatewayMetrics) -> list[Device]:
    """Build every enabled device's driver on private rings (as the daemon would)."""
    publisher = loaded.config.publisher
    out = []
    for d in loaded.config.devices:
        if not d.enabled:
            continue
        ctx = DriverContext(site=loaded.config.site, device=d.name, store=store,
                            metrics=metrics, log=logging.getLogger(f"medgw.device.{d.name}"),
                            ring_capacity=publisher.ring_capacity,
                            ring_seconds=publisher.ring_seconds,
                            min_ring_capacity=max(1024, 2 * publisher.max_batch_samples))
        try:
            driver = plugins.load_driver(d.driver).create(ctx, loaded.driver_options[d.name])
        except Exception as err:
            raise ConfigError(f"driver {d.driver} cannot be set up: {type(err).__name__}: "
                              f"{err}", str(loaded.path), f"devices[{d.name}]") from err
        out.append(Device(d.name, d.driver, ctx, driver))
    return out


async def _connected(devices: list[Device], timeout: float) -> float:
    """Wait until every device is connected (or crashed), at most ``timeout``; return the wait."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout and not all(
            d.ctx.state.connected or d.crash is not None for d in devices):
        await asyncio.sleep(0.05)
    return loop.time() - start


async def _run(devices: list[Device], seconds: float, connect_timeout: float) -> float:
    """Run the drivers: wait for them to connect, then ``seconds``; return the connect wait."""
    async def one(device: Device) -> None:
        try:
            await device.driver.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # reported in the table, as the daemon would log it
            device.crash = err
            log.exception("device %s: driver %s failed", device.name, device.driver_name)

    tasks = [asyncio.create_task(one(d), name=f"test:{d.name}") for d in devices]
    waited = await _connected(devices, connect_timeout)
    await asyncio.sleep(seconds)
    for device in devices:
        device.connected = device.ctx.state.connected
        device.last_error = device.ctx.state.last_error
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    return waited


def dry_run(loaded: LoadedConfig, seconds: float, samples: int = 3,
            connect_timeout: float = 20.0) -> bool:
    """Run the drivers for ``seconds`` once connected, print what would be published.

    The window starts when every device is connected (at most ``connect_timeout`` later),
    so a slow handshake does not eat it. True if every device connected and data came.
    """
    store = RingStore(loaded.config.publisher.ring_capacity)
    devices = build(loaded, store, GatewayMetrics())
    cfg = loaded.config
    print(f"medgw run --test: {len(devices)} device(s) for {seconds:g} s once connected"
          f" (waiting at most {connect_timeout:g} s for that), no broker")
    waited = asyncio.run(_run(devices, seconds, connect_timeout))
    print(f"connecting took {waited:.1f} s")
    total = 0
    for device in devices:
        status = ("crashed: " + str(device.crash) if device.crash is not None
                  else "connected" if device.connected else "NOT connected")
        print(f"\ndevice {device.name} ({device.driver_name}): {status}"
              + (f"; last error: {device.last_error}" if device.last_error else ""))
        rings = [r for r in store.rings() if r.stream.device == device.name]
        if not rings:
            print("  no streams")
        for ring in rings:
            n = ring.write_seq - ring.start_seq
            total += n
            print(stream_line(ring.stream.stream, ring.stream.fields, ring.stream.units, n,
                              seconds, ring.stream.measurement))
            held = ring.snapshot()
            if held is not None and len(held) and samples > 0:
                tail = held.slice(max(0, len(held) - samples), len(held))
                payload = encode(tail, cfg.gateway)
                print(f"    would publish to {data_topic(cfg.mqtt.topic_prefix, ring.stream)}"
                      f" (the last {len(tail)}: {len(payload)} bytes of JSON):")
                print("\n".join(sample_lines(tail)))
    print(f"\n{total} samples in {len(store.rings())} stream(s); nothing was published")
    return total > 0 and all(d.crash is None and d.connected for d in devices)


def sample_lines(batch: SampleBatch) -> list[str]:
    """One line per sample: seq, UTC time, quality, field=value (and text, for events)."""
    out = []
    for i in range(len(batch)):
        when = dt.datetime.fromtimestamp(int(batch.timestamps_ns[i]) / 1e9, dt.timezone.utc)
        values = " ".join(f"{f}={v:g}" for f, v in zip(batch.stream.fields,
                                                       batch.values[i].tolist(), strict=True))
        text = f" {batch.text[i]!r}" if batch.text else ""
        out.append(f"      #{batch.first_seq + i} {when:%H:%M:%S.%f} "
                   f"{quality_name(int(batch.quality[i]))} {values}{text}")
    return out


def quality_name(code: int) -> str:
    """A quality code as its name (GOOD, BAD, STALE, ...)."""
    try:
        return Quality(code).name
    except ValueError:
        return str(code)


def stream_line(stream: str, fields: tuple[str, ...], units: tuple[str, ...], n: int,
                seconds: float, measurement: str) -> str:
    """One line per stream: name, samples and rate, measurement, fields with units."""
    cols = ", ".join(f"{f} [{u}]" if u else f for f, u in zip(fields, units, strict=True))
    return (f"  stream {stream}: {n} samples ({n / seconds:.1f}/s), measurement"
            f" {measurement}, fields {cols}")
