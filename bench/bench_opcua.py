"""OPC UA driver benchmark against a raw asyncua subscription, on one carrier simulator.

Run from the repository root::

    /tmp/venv/bin/python bench/bench_opcua.py            # full run, about 2-3 minutes
    /tmp/venv/bin/python bench/bench_opcua.py --quick    # smaller, about 1 minute

1. Throughput: the simulator (a subprocess, so it does not share the client's CPU) runs at
   100 Hz; first a raw asyncua client counts ``datachange_notification`` calls, then the
   medgw driver appends the same changes to its rings. Both phases use the same simulator
   process and the same monitored items. Reported: changes/s delivered and client CPU
   time per change; the ratio compares the driver with the raw handler.
2. Capacity: fleets of growing size at 10 Hz; the largest monitored-item count for which
   every change the simulator wrote reached the ring (no loss) while the simulator held
   10 Hz. Each size runs a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import Client, Node, ua  # noqa: E402

from drivers.opcua import OpcUaDriver, OpcUaOptions  # noqa: E402
from gateway.driver import DriverContext  # noqa: E402
from gateway.metrics import GatewayMetrics  # noqa: E402
from gateway.ring import RingStore  # noqa: E402
from simulators.transport_carrier import NAMESPACE_URI, VARIABLES  # noqa: E402

NUMERIC = {v.name for v in VARIABLES if v.kind != "string"}
QUEUE_SIZE = 100
PUBLISH_MS = 100.0


@dataclass
class Phase:
    """What one measurement saw."""

    label: str
    items: int
    expected: int  # numeric values the simulator wrote while running
    received: int  # data changes the client processed
    seconds: float  # simulator run time
    ticks: int
    cpu_s: float  # client process CPU time spent

    @property
    def rate(self) -> float:
        """Return changes per second delivered."""
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_change(self) -> float:
        """Return client CPU microseconds per change."""
        return 1e6 * self.cpu_s / self.received if self.received else float("nan")

    @property
    def lost(self) -> int:
        """Return changes written but not received."""
        return self.expected - self.received


class Sim:
    """The simulator subprocess, driven through its stdin control protocol."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoint: str) -> None:
        self.proc = proc
        self.endpoint = endpoint

    async def command(self, text: str) -> dict[str, Any] | None:
        """Send 'start' or 'stop'; 'stop' returns the simulator's counters."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{text}\n".encode())
        await self.proc.stdin.drain()
        if text != "stop":
            return None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError("simulator exited")
            if line.startswith("STATS "):
                return dict(json.loads(line[6:]))


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def simulator(carriers: int, rate_hz: float) -> AsyncIterator[Sim]:
    """Start the simulator subprocess (paused) and kill it at the end."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.transport_carrier", "--port", str(port),
        "--carriers", str(carriers), "--rate", str(rate_hz), "--control-stdin",
        cwd=str(ROOT), env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError("simulator did not start")
            if line.startswith("READY "):
                yield Sim(proc, line.split()[1])
                return
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def settle(count: Callable[[], int], quiet_s: float = 0.6, limit_s: float = 30.0) -> int:
    """Wait until ``count()`` stops growing for ``quiet_s`` (bounded); return it."""
    deadline = time.monotonic() + limit_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


async def measure(sim: Sim, label: str, items: int, count: Callable[[], int],
                  run_s: float) -> Phase:
    """Run the simulator for ``run_s`` and count what the client processed meanwhile."""
    base = await settle(count)  # initial values of the new monitored items
    cpu0 = time.process_time()
    await sim.command("start")
    await asyncio.sleep(run_s)
    stats = await sim.command("stop")
    assert stats is not None
    received = await settle(count) - base
    return Phase(label, items, int(stats["numeric_writes"]), received, float(stats["seconds"]),
                 int(stats["ticks"]), time.process_time() - cpu0)


class RawCounter:
    """The baseline: asyncua's subscription handler, counting datachange_notification calls."""

    def __init__(self) -> None:
        self.calls = 0

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        """Count one data change."""
        self.calls += 1


async def raw_phase(sim: Sim, run_s: float) -> Phase:
    """Subscribe every numeric variable with plain asyncua and count the callbacks."""
    client = Client(sim.endpoint, timeout=30)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        fleet = await client.nodes.objects.get_child([f"{ns}:Fleet"])
        nodes = []
        for carrier in await fleet.get_children():
            for var in await carrier.get_children():
                if (await var.read_browse_name()).Name in NUMERIC:
                    nodes.append(var)
        handler = RawCounter()
        sub = await client.create_subscription(PUBLISH_MS, handler)
        await sub.subscribe_data_change(nodes, queuesize=QUEUE_SIZE,
                                        sampling_interval=ua.Double(0.0))
        return await measure(sim, "raw asyncua handler", len(nodes), lambda: handler.calls,
                             run_s)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def driver_phase(sim: Sim, run_s: float, label: str = "medgw driver -> ring",
                       fast_decode: bool = True) -> Phase:
    """Run the OPC UA driver on the same simulator and count changes it processed."""
    log = logging.getLogger("bench.opcua")
    ctx = DriverContext("bench", "fleet", RingStore(), GatewayMetrics(), log,
                        ring_capacity=1 << 20)
    options = OpcUaOptions(endpoint=sim.endpoint, security_policy="None",
                           browse=({"pattern": "Fleet/*/*"},),  # type: ignore[arg-type]
                           publishing_interval_ms=PUBLISH_MS, sampling_interval_ms=0,
                           queue_size=QUEUE_SIZE, rediscover_interval_s=0,
                           request_timeout_s=30, fast_decode=fast_decode)
    driver = OpcUaDriver(ctx, options)
    task = asyncio.create_task(driver.run())
    try:
        await asyncio.wait_for(driver.ready.wait(), 120)
        return await measure(sim, label, len(driver.bindings), lambda: driver.stats.changes,
                             run_s)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def table(rows: list[list[str]]) -> str:
    """Format rows as a fixed-width text table (first row = header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def throughput(carriers: int, rate_hz: float, run_s: float) -> None:
    """Phase 1: raw asyncua handler versus the driver, same simulator process."""
    async with simulator(carriers, rate_hz) as sim:
        raw = await raw_phase(sim, run_s)
        drv = await driver_phase(sim, run_s)
        slow = await driver_phase(sim, run_s, "medgw driver, asyncua decode", False)
    rows = [["client", "items", "sim ticks/s", "written", "received", "lost", "changes/s",
             "CPU us/change"]]
    for p in (raw, drv, slow):
        rows.append([p.label, str(p.items), f"{p.ticks / p.seconds:.1f}", str(p.expected),
                     str(p.received), str(p.lost), f"{p.rate:,.0f}",
                     f"{p.cpu_us_per_change:.1f}"])
    print(f"\nThroughput: {carriers} carriers at {rate_hz:g} Hz for {run_s:g} s each,"
          f" publishing {PUBLISH_MS:g} ms, queue {QUEUE_SIZE}")
    print(table(rows))
    print(f"driver/raw: changes/s ratio {drv.rate / raw.rate:.2f},"
          f" CPU per change ratio {drv.cpu_us_per_change / raw.cpu_us_per_change:.2f}"
          " (< 1 means the driver is cheaper than the raw handler)")
    print(f"fast decode (fast_decode: true, the default) / asyncua decode: CPU per change"
          f" {drv.cpu_us_per_change / slow.cpu_us_per_change:.2f}")


async def capacity(sizes: list[int], run_s: float, budget_s: float) -> None:
    """Phase 2: the largest fleet at 10 Hz with no lost change."""
    rows = [["carriers", "items", "sim ticks/s", "written", "received", "lost",
             "client CPU %", "verdict"]]
    best = 0
    started = time.monotonic()
    for carriers in sizes:
        if time.monotonic() - started > budget_s:
            rows.append([str(carriers), "-", "-", "-", "-", "-", "-", "skipped (time)"])
            continue
        async with simulator(carriers, 10.0) as sim:
            p = await driver_phase(sim, run_s, "capacity")
        held = p.ticks >= 0.95 * 10.0 * p.seconds
        ok = p.lost == 0 and held
        verdict = "ok" if ok else ("LOSS" if p.lost else "simulator < 10 Hz")
        rows.append([str(carriers), str(p.items), f"{p.ticks / p.seconds:.1f}", str(p.expected),
                     str(p.received), str(p.lost), f"{100 * p.cpu_s / p.seconds:.0f}",
                     verdict])
        if ok:
            best = max(best, p.items)
        else:
            break
    print(f"\nCapacity at 10 Hz ({run_s:g} s per size, publishing {PUBLISH_MS:g} ms)")
    print(table(rows))
    print(f"largest monitored-item count sustained at 10 Hz without loss: {best}")


def decode_cost(items: int = 250, repeat: int = 200) -> None:
    """Phase 0: CPU per item of decoding one PublishResponse, asyncua vs fastpublish."""
    from datetime import datetime, timezone

    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

    from drivers.opcua.fastpublish import decode

    now = datetime.now(timezone.utc)
    changes = [ua.MonitoredItemNotification(ClientHandle=i, Value=ua.DataValue(
        ua.Variant(i * 0.5, ua.VariantType.Double), SourceTimestamp=now,
        ServerTimestamp=now)) for i in range(items)]
    resp = ua.PublishResponse()
    resp.Parameters = ua.PublishResult(SubscriptionId=1, NotificationMessage=ua.NotificationMessage(
        SequenceNumber=1, PublishTime=now,
        NotificationData=[ua.DataChangeNotification(MonitoredItems=changes)]))
    raw = bytes(struct_to_binary(resp))
    cost = {}
    for name, fn in (("asyncua", lambda: struct_from_binary(ua.PublishResponse, Buffer(raw))),
                     ("fastpublish", lambda: decode(raw))):
        fn()
        t0 = time.process_time()
        for _ in range(repeat):
            fn()
        cost[name] = 1e6 * (time.process_time() - t0) / repeat / items
    print(f"\nDecode of one PublishResponse ({items} Double changes, {len(raw):,} bytes):"
          f" asyncua {cost['asyncua']:.2f} us/item, fastpublish {cost['fastpublish']:.2f}"
          f" us/item, ratio {cost['fastpublish'] / cost['asyncua']:.2f}")


def main() -> None:
    """Parse arguments and run both phases."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    t0 = time.monotonic()
    decode_cost()
    if args.quick:
        asyncio.run(throughput(carriers=10, rate_hz=50.0, run_s=4.0))
        asyncio.run(capacity([20, 60, 120], run_s=5.0, budget_s=40.0))
    else:
        asyncio.run(throughput(carriers=20, rate_hz=100.0, run_s=10.0))
        asyncio.run(capacity([25, 50, 100, 150, 200, 300], run_s=8.0, budget_s=110.0))
    print(f"\n(total {time.monotonic() - t0:.0f} s; python {sys.version.split()[0]},"
          f" {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
