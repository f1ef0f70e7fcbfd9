"""VDA 5050 driver benchmark against a raw paho subscriber parsing the same JSON, same run.

Run from the repository root::

    .venv/bin/python bench/bench_vda5050.py            # about 2 minutes
    .venv/bin/python bench/bench_vda5050.py --quick    # about 40 s

1. Throughput: a publisher process (its own CPU) sends the same pre-encoded state messages
   (2.0 and 3.0 vehicles mixed, QoS 0, as the spec says) through one mosquitto twice:
   first to a raw paho subscriber that only parses the JSON (orjson), then to the medgw
   driver (parse, strict pydantic validation, headerId tracking, events, ring appends).
   Reported per subscriber: messages/s from first to last message and CPU time per message
   of this process (the subscriber side only); the ratio is driver / raw.
2. Capacity: one whole gateway (driver, rings, publisher with its disk spool, medgw's own
   mosquitto) and fleets of growing size at 10 Hz per vehicle for a bounded time each; a
   size is lossless when every state sent reached the rings, the driver saw no headerId
   hole, the broker acknowledged every sample and the gateway kept up (the last state was in
   the rings within 1 s of the last one sent). Reported: the largest such size and
   the gateway process's CPU share (the publisher process is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from drivers.vda5050 import Vda5050Driver, Vda5050Options  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.driver import DriverContext  # noqa: E402
from gateway.edge.daemon import Gateway, GatewayThread  # noqa: E402
from gateway.metrics import GatewayMetrics  # noqa: E402
from gateway.ops.services import MosquittoService  # noqa: E402
from gateway.ring import RingStore  # noqa: E402
from simulators.agv.vehicle import AgvVehicle  # noqa: E402

VERSIONS = ("2.0.0", "3.0.0")


def fleet(size: int) -> list[AgvVehicle]:
    """``size`` simulated vehicles, 2.0 and 3.0 alternating."""
    return [AgvVehicle(f"agv-{i:04d}", VERSIONS[i % 2], start_leg=i) for i in range(size)]


def client(name: str) -> mqtt.Client:
    """A plain paho 3.1.1 client."""
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)


# ------------------------------------------------------------------ publisher process
def burst(port: int, vehicles: int, per_vehicle: int, go: MpEvent, done: MpEvent) -> None:
    """Publisher process: pre-encode the states, wait for ``go``, send them all (QoS 0)."""
    cars = fleet(vehicles)
    messages = [(car.topic("state"), orjson.dumps(car.state()))
                for _ in range(per_vehicle) for car in cars]
    pub = client(f"bench-burst-{time.monotonic_ns()}")
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    go.wait()
    info = None
    for topic, payload in messages:
        info = pub.publish(topic, payload, 0)
    if info is not None:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    done.set()


def steady(port: int, vehicles: int, seconds: float, rate_hz: float, go: MpEvent,
           sent: Any) -> None:
    """Publisher process: ``vehicles`` at ``rate_hz`` for ``seconds``; ``sent`` = total."""
    cars = fleet(vehicles)
    pub = client(f"bench-steady-{time.monotonic_ns()}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    go.wait()
    period = 1.0 / rate_hz
    start = time.monotonic()
    ticks = int(seconds * rate_hz)
    count = 0
    late = 0
    for tick in range(ticks):
        for car in cars:
            car.advance(period)
            pub.publish(car.topic("state"), orjson.dumps(car.state()), 0)
            count += 1
        delay = start + (tick + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
    time.sleep(0.1)  # QoS 0: let the last ones leave before DISCONNECT
    pub.disconnect()
    pub.loop_stop()
    sent.value = count if late <= ticks // 10 else -count  # negative: could not hold the rate


# ------------------------------------------------------------------ subscribers
@dataclass
class Result:
    """What one subscriber saw."""

    label: str
    messages: int
    seconds: float  # first to last message
    cpu_s: float  # this process, while receiving

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per message."""
        return self.cpu_s / self.messages * 1e6 if self.messages else 0.0


def raw_subscriber(port: int, expected: int, run: Any) -> Result:
    """A raw paho subscriber that parses every message's JSON and counts it."""
    got = 0
    first = last = 0.0
    all_in = threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        doc = orjson.loads(msg.payload)
        if doc["headerId"] >= 0:
            got += 1
        last = time.perf_counter()
        if got == 1:
            first = last
        if got == expected:
            all_in.set()

    sub = client("bench-raw")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("uagv/+/+/+/state", 1)
    sub.loop_start()
    time.sleep(0.5)
    cpu = time.process_time()
    run()
    all_in.wait(120)
    cpu = time.process_time() - cpu
    sub.disconnect()
    sub.loop_stop()
    return Result("raw paho + orjson", got, last - first, cpu)


async def cancel_all() -> None:
    """Cancel every other task of the running loop and wait until they finished."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class DriverRun:
    """The medgw driver on its own loop thread, with rings and metrics."""

    def __init__(self, port: int, rate_hz: float = 10.0) -> None:
        self.store = RingStore()
        self.ctx = DriverContext("bench", "fleet", self.store, GatewayMetrics(),
                                 logging.getLogger("bench.vda5050"), ring_seconds=60.0)
        options = Vda5050Options.model_validate({"broker": {"port": port},
                                                 "rate_hz": rate_hz, "max_vehicles": 100_000})
        self.driver = Vda5050Driver(self.ctx, options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self.driver.run(), self.loop)
        deadline = time.monotonic() + 10
        while self.driver.sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def states(self) -> int:
        """States appended so far."""
        return sum(v.stats.states for v in list(self.driver.fleet.vehicles.values()))

    def holes(self) -> int:
        """headerIds missing at the source, as the driver counted them."""
        return sum(v.stats.missing for v in list(self.driver.fleet.vehicles.values()))

    def stop(self) -> None:
        """Cancel the driver and stop its loop."""
        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def driver_subscriber(port: int, expected: int, run: Any) -> Result:
    """The medgw driver receiving the same messages; first to last state appended."""
    drv = DriverRun(port)
    got = 0
    first = last = 0.0
    all_in = threading.Event()

    def on_append(stream: Any) -> None:  # a ring listener: runs inline after each append
        nonlocal got, first, last
        if stream.is_event:
            return
        got += 1
        last = time.perf_counter()
        if got == 1:
            first = last
        if got == expected:
            all_in.set()

    drv.store.add_listener(on_append)
    cpu = time.process_time()
    run()
    all_in.wait(120)
    cpu = time.process_time() - cpu
    drv.stop()
    return Result("medgw vda5050 driver", got, last - first, cpu)


def throughput(port: int, vehicles: int, per_vehicle: int) -> tuple[Result, Result]:
    """Phase 1: the same burst to the raw subscriber, then to the driver."""
    results = []
    for subscriber in (raw_subscriber, driver_subscriber):
        go, done = mp.Event(), mp.Event()
        proc = mp.Process(target=burst, args=(port, vehicles, per_vehicle, go, done))
        proc.start()
        time.sleep(1.5 + vehicles * per_vehicle / 40_000)  # let it pre-encode

        def run(go: MpEvent = go) -> None:
            go.set()

        results.append(subscriber(port, vehicles * per_vehicle, run))
        proc.join(120)
    return results[0], results[1]


class GatewayRun:
    """One whole gateway (vda5050 driver -> rings -> publisher + spool -> medgw's broker)."""

    def __init__(self, fleet_port: int, medgw_port: int, spool_dir: Path) -> None:
        loaded = parse_config({
            "site": "bench", "gateway": "gw-bench",
            "mqtt": {"host": "127.0.0.1", "port": medgw_port},
            "spool": {"dir": str(spool_dir), "confirm": False},
            "health": {"enabled": False},
            "devices": [{"name": "fleet", "driver": "vda5050", "options": {
                "broker": {"port": fleet_port}, "rate_hz": 10, "max_vehicles": 100_000}}],
        }, "<bench config>")
        self.gateway = Gateway(loaded)
        self.runner = GatewayThread(self.gateway)
        self.runner.start()
        self.gateway.publisher.wait_connected(15)
        driver = self.gateway.devices[0].driver
        assert isinstance(driver, Vda5050Driver)
        self.driver = driver
        deadline = time.monotonic() + 10
        while driver.sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def states(self) -> int:
        """States appended so far."""
        return sum(v.stats.states for v in list(self.driver.fleet.vehicles.values()))

    def holes(self) -> int:
        """headerIds missing at the source, as the driver counted them."""
        return sum(v.stats.missing for v in list(self.driver.fleet.vehicles.values()))

    def stop(self) -> tuple[bool, int, int]:
        """Stop and drain; return (all acknowledged, samples appended, samples acked)."""
        all_acked = self.runner.stop(120)
        produced = sum(r.write_seq - r.start_seq for r in self.gateway.store.rings())
        acked = sum(c.acked for c in self.gateway.publisher.counters.values())
        return all_acked, produced, acked


def capacity(fleet_port: int, medgw_port: int, sizes: list[int], seconds: float,
             tmp: Path) -> list[tuple[int, float, bool]]:
    """Phase 2: (size, CPU share, lossless) per fleet size at 10 Hz, through one gateway."""
    rows = []
    for size in sizes:
        gw = GatewayRun(fleet_port, medgw_port, tmp / f"spool-{size}")
        go = mp.Event()
        sent = mp.Value("q", 0)
        proc = mp.Process(target=steady, args=(fleet_port, size, seconds, 10.0, go, sent))
        proc.start()
        time.sleep(1.0)
        cpu, wall = time.process_time(), time.monotonic()
        go.set()
        proc.join(seconds + 60)
        ended = time.monotonic()
        behind, last = ended, -1  # drain: wait while the driver still makes progress
        while gw.states() < abs(sent.value) and time.monotonic() - behind < 3:
            if gw.states() != last:
                last, behind = gw.states(), time.monotonic()
            time.sleep(0.01)
        drain_s = time.monotonic() - ended  # how far behind the gateway was at the end
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
        got, holes = gw.states(), gw.holes()
        all_acked, produced, acked = gw.stop()
        held = sent.value > 0
        # lossless and keeping up: the last states in the rings within 1 s of the last sent
        complete = held and got == sent.value and holes == 0 and all_acked and \
            acked == produced
        lossless = complete and drain_s <= 1.0
        verdict = ("lossless" if lossless else "complete but fell behind" if complete
                   else "LOSS" if held else "not measured")
        rows.append((size, share, lossless))
        print(f"  {size:5d} vehicles: sent {abs(sent.value):7d}, in the rings {got:7d} "
              f"({drain_s:.2f} s after the last sent), holes {holes}, published "
              f"{acked}/{produced} samples, gateway process CPU {share * 100:5.1f} %, peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
              f"{'' if held else ' (the publisher could not hold 10 Hz)'}"
              f" -> {verdict}", flush=True)
        if not lossless:  # a loss, or the one publisher process is the limit
            break
    return rows


def main() -> None:
    """Run both phases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    vehicles, per_vehicle = (20, 500) if args.quick else (20, 1500)
    sizes = [50, 100, 200] if args.quick else [100, 200, 400, 600, 800]
    seconds = 8.0 if args.quick else 12.0
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoService(Path(tmp) / "mosquitto")
        broker.start()
        try:
            raw, drv = throughput(broker.port, vehicles, per_vehicle)
            print(f"throughput, {vehicles * per_vehicle} state messages ({vehicles} vehicles, "
                  "2.0 and 3.0 mixed, QoS 0):")
            for r in (raw, drv):
                print(f"  {r.label:22s} {r.messages:6d} msgs  {r.rate:9.0f} msg/s  "
                      f"{r.cpu_us:7.1f} us CPU/msg")
            print(f"  ratio driver/raw: {drv.rate / raw.rate:.2f} in msg/s delivered (bounded "
                  "by the one publisher), "
                  f"{raw.cpu_us / drv.cpu_us:.2f} in msg/s per CPU second "
                  f"({1e6 / drv.cpu_us:.0f} vs {1e6 / raw.cpu_us:.0f})")
            print(f"capacity of one gateway at 10 Hz per vehicle, {seconds:g} s per size:")
            medgw = MosquittoService(Path(tmp) / "medgw-mosquitto")
            medgw.start()
            try:
                rows = capacity(broker.port, medgw.port, sizes, seconds, Path(tmp))
            finally:
                medgw.stop()
                medgw.kill()
            good = [r for r in rows if r[2]]
            if good:
                size, share, _ = good[-1]
                print(f"  largest lossless fleet: {size} vehicles ({size * 10} states/s) at "
                      f"{share * 100:.0f} % of one core")
            else:
                print("  no size was lossless")
        finally:
            broker.stop()
            broker.kill()


if __name__ == "__main__":
    main()
