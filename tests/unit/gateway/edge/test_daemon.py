"""The edge daemon with fake drivers and a fake publisher: /health tells the truth.

Device state comes from DriverContext.state; a crashed driver restarts after the shared
backoff and is counted; a dead task, a dead publisher thread or a corrupt seq.json are
visible; every start has its own epoch, handed to the publisher.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import orjson
import pytest
import requests
from pydantic import BaseModel

from gateway import plugins
from gateway.backoff import Backoff
from gateway.config import LoadedConfig, parse_config
from gateway.driver import DriverContext, DriverInfo
from gateway.edge import daemon
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer, stream_lag_s
from gateway.edge.publisher import PublisherHealth
from gateway.errors import ConfigError, DeviceError
from gateway.metrics import GatewayMetrics
from gateway.model import Quality, StreamSpec
from gateway.ring import RingStore
from tests.helpers import wait_until

Behaviour = Literal["good", "unreachable", "crash", "degraded", "finish", "fatal", "unbuildable"]
UNREACHABLE = "cannot reach opc.tcp://127.0.0.1:1: [Errno 111] Connection refused"


class FakeOptions(BaseModel):
    behaviour: Behaviour = "good"


class Fatal(BaseException):
    """Not an Exception: the supervisor does not catch it, so the task dies."""


class FakeDriver:
    """Behaves like a driver whose device is fine, unreachable, crashing ..."""

    def __init__(self, ctx: DriverContext, options: FakeOptions) -> None:
        self.ctx = ctx
        self.behaviour = options.behaviour
        self.runs = 0
        if self.behaviour == "unbuildable":
            raise ValueError("stream name refused")
        self.ring = ctx.add_stream(ctx.stream_spec("v", ("x",), ("",), rate_hz=100))

    async def run(self) -> None:
        self.runs += 1
        if self.behaviour == "crash":
            raise RuntimeError(f"boom {self.runs}")
        if self.behaviour == "fatal":
            raise Fatal("the task itself dies")
        if self.behaviour == "finish":
            self.ctx.set_connected(True)
            return
        if self.behaviour == "unreachable":
            while True:  # an OPC UA-like driver retrying an endpoint that never answers
                self.ctx.set_connected(False)
                self.ctx.set_error(DeviceError(UNREACHABLE))
                await asyncio.sleep(0.02)
        self.ctx.set_connected(True)
        if self.behaviour == "degraded":
            self.ctx.set_error("topic rt/x/m,e=a quarantined: name refused")
        ts = 1_000_000_000 + np.arange(10, dtype=np.int64) * 10_000_000
        self.ctx.append(self.ring, ts, np.ones((10, 1)), np.full(10, Quality.GOOD, np.uint8))
        await asyncio.Event().wait()


class FakePublisher:
    """Stands in for MqttPublisher (no broker): records its epoch, reports its health."""

    instances: ClassVar[list[FakePublisher]] = []

    def __init__(self, loaded: LoadedConfig, store: RingStore, metrics: GatewayMetrics,
                 spool_dir: Path | None = None, temporary_spool: bool = False, *,
                 epoch: int = 0) -> None:
        self.epoch = epoch
        self.reader = store.reader("publisher")
        self.state: dict[str, Any] = {}  # fields of its health() to change
        self.connected = threading.Event()
        self.started = threading.Event()
        FakePublisher.instances.append(self)

    def start(self) -> None:
        self.started.set()

    def stop(self, drain_timeout: float = 10.0) -> bool:
        return True

    def health(self) -> PublisherHealth:
        fields: dict[str, Any] = {
            "thread_alive": self.started.is_set(), "broker_connected": True,
            "last_error": None, "spool_degraded": None, "inflight": 0, "loop_errors": 0,
            "callback_errors": 0, "spool_records": 0, "spool_unconfirmed_samples": 0,
            "samples_dropped": 0, "epoch": self.epoch}
        return PublisherHealth(**{**fields, **self.state})


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = plugins.load_driver
    info = DriverInfo("fake", FakeOptions, FakeDriver)
    monkeypatch.setattr(plugins, "load_driver",
                        lambda name: info if name == "fake" else real(name))
    monkeypatch.setattr(daemon, "MqttPublisher", FakePublisher)
    FakePublisher.instances.clear()


def make_gateway(tmp_path: Path, *behaviours: Behaviour) -> Gateway:
    data = {"site": "site-a", "gateway": "gw-1", "spool": {"dir": str(tmp_path / "spool")},
            "devices": [{"name": f"dev-{i}", "driver": "fake", "options": {"behaviour": b}}
                        for i, b in enumerate(behaviours)]}
    return Gateway(parse_config(data), restart_initial_s=0.01, restart_max_s=0.04)


class Running:
    """A gateway in its thread plus its HealthServer on a free loopback port."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.runner = GatewayThread(gateway)
        self.server = HealthServer("127.0.0.1", 0, gateway.metrics.registry,
                                   gateway.health_report, store=gateway.store)
        self.server.start()
        self.runner.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def health(self) -> tuple[int, dict[str, Any]]:
        resp = requests.get(f"{self.url}/health", timeout=10)
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status_code, orjson.loads(resp.content)  # always valid JSON

    def device(self, name: str = "dev-0") -> dict[str, Any]:
        return self.health()[1]["devices"][name]

    def stop(self) -> None:
        try:
            assert self.runner.stop(10)
        finally:
            self.server.stop()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(*behaviours: Behaviour) -> Running:
        running = Running(make_gateway(tmp_path, *behaviours))
        started.append(running)
        return running
    yield start
    for running in started:
        running.stop()


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    value = gateway.metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def fake(gateway: Gateway, index: int = 0) -> FakeDriver:
    driver = gateway.devices[index].driver
    assert isinstance(driver, FakeDriver)
    return driver


def test_all_well_is_ok_and_200(run: Any) -> None:
    gw = run("good", "good")
    wait_until(lambda: gw.health()[0] == 200, message="ok")
    _, doc = gw.health()
    assert doc["status"] == "ok" and doc["problems"] == [] and doc["warnings"] == []
    assert {d["state"] for d in doc["devices"].values()} == {"connected"}
    assert doc["devices"]["dev-0"] == {"driver": "fake", "state": "connected",
                                       "connected": True, "task": "running",
                                       "last_error": None, "last_crash": None, "restarts": 0}
    assert doc["epoch"] == gw.gateway.epoch > 0 and doc["gateway"] == "gw-1"
    assert metric(gw.gateway, "medgw_driver_running", device="dev-0") == 1


def test_unreachable_device_is_down_with_its_error_text_and_503(run: Any) -> None:
    gw = run("unreachable", "good")
    wait_until(lambda: gw.device()["last_error"], message="the device error")
    code, doc = gw.health()
    assert code == 503 and doc["status"] == "degraded"
    dev = doc["devices"]["dev-0"]
    assert dev["state"] == "down" and dev["connected"] is False
    assert dev["last_error"] == f"DeviceError: {UNREACHABLE}" and dev["task"] == "running"
    assert doc["devices"]["dev-1"]["state"] == "connected"  # the other device is fine
    assert doc["problems"] == [f"device dev-0 is down: DeviceError: {UNREACHABLE}"]
    streams = requests.get(f"{gw.url}/api/streams", timeout=10).json()
    page_state = {d["name"]: (d["state"], d["last_error"]) for d in streams["devices"]}
    assert page_state == {"dev-0": ("down", f"DeviceError: {UNREACHABLE}"),
                          "dev-1": ("connected", None)}
    assert streams["status"] == "degraded" and streams["problems"] == doc["problems"]


def test_device_with_an_error_but_connected_is_degraded(run: Any) -> None:
    gw = run("degraded")
    wait_until(lambda: gw.device()["connected"], message="connected")
    code, doc = gw.health()
    assert code == 503 and doc["devices"]["dev-0"]["state"] == "degraded"
    assert "quarantined" in doc["devices"]["dev-0"]["last_error"]


def test_crashing_driver_restarts_with_backoff_and_is_counted(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    gw = run("crash", "good")
    driver = fake(gw.gateway)
    wait_until(lambda: driver.runs >= 4, message="three restarts")
    dev = gw.device()
    assert dev["state"] == "down" and dev["connected"] is False
    assert dev["last_crash"].startswith("RuntimeError: boom ") and dev["restarts"] >= 3
    assert dev["task"] in ("running", "restarting")
    assert metric(gw.gateway, "medgw_driver_restarts_total", device="dev-0") >= 3
    assert gw.health()[0] == 503
    failures = [r for r in caplog.records if "driver fake failed" in r.getMessage()]
    assert len(failures) >= 3 and all(r.exc_info for r in failures)  # with traceback
    assert gw.device("dev-1")["state"] == "connected"  # one crash loop stops nothing else


def test_restart_clears_the_crash_from_the_device_error(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, "good")
    device = gateway.devices[0]
    device.set_task(daemon.TaskState.RESTARTING, RuntimeError("boom"))
    assert device.snapshot().last_error == "RuntimeError: boom"
    device.set_task(daemon.TaskState.RUNNING)
    snap = device.snapshot()
    assert snap.last_error is None and snap.last_crash == "RuntimeError: boom"
    assert snap.restarts == 1


def test_dead_task_is_loud(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    gw = run("fatal")
    wait_until(lambda: gw.device()["task"] == "dead", message="the task to die")
    dev = gw.device()
    assert dev["state"] == "down" and dev["last_crash"] == "Fatal: the task itself dies"
    assert gw.health()[0] == 503
    assert metric(gw.gateway, "medgw_driver_running", device="dev-0") == 0
    assert any("driver task died" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


def test_finished_driver_is_down(run: Any) -> None:
    gw = run("finish")
    wait_until(lambda: gw.device()["task"] == "finished", message="the driver to finish")
    assert gw.device()["state"] == "down" and gw.health()[0] == 503
    assert gw.gateway.devices[0].finished


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("thread_alive", False, "the publisher thread is not running or its loop fails: stopped"),
    ("epoch", 3, "the publisher carries epoch 3, not"),
    ("broker_connected", False, "broker not connected: connecting"),
    ("spool_degraded", "disk full: [Errno 28] No space left on device",
     "spool degraded: disk full: [Errno 28] No space left on device"),
])
def test_publisher_problems_degrade(run: Any, field: str, value: object, problem: str) -> None:
    gw = run("good")
    wait_until(lambda: gw.health()[0] == 200, message="ok first")
    FakePublisher.instances[-1].state[field] = value
    code, doc = gw.health()
    assert code == 503 and len(doc["problems"]) == 1
    assert doc["problems"][0].startswith(problem)
    assert doc["publisher"][field] == value


def test_epoch_is_new_at_every_start_and_given_to_the_publisher(tmp_path: Path) -> None:
    first = make_gateway(tmp_path, "good")
    second = make_gateway(tmp_path, "good")
    assert first.epoch != second.epoch and first.epoch > 0 and second.epoch > 0
    assert [p.epoch for p in FakePublisher.instances] == [first.epoch, second.epoch]
    # intact state: the second start resumes past the first one's reservation
    key = fake(first).ring.stream.key
    assert second.store.ring(key).start_seq == first.seq_state.reserved[key]


def test_corrupt_seq_json_is_a_warning_metric_and_health_field(
        run: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "seq.json").write_bytes(b'{"site-a/dev-0/v": -7}')
    gw = run("good")
    wait_until(lambda: gw.health()[0] == 200, message="ok: a reset is a warning, not a fault")
    doc = gw.health()[1]
    assert "key 'site-a/dev-0/v': -7 is out of range" in doc["seq_state"]["reset"]
    assert doc["seq_state"]["epoch"] == doc["epoch"]
    (warning,) = doc["warnings"]
    assert f"epoch {doc['epoch']}" in warning and "seq.json" in warning
    assert metric(gw.gateway, "medgw_seq_state_resets_total", reason="corrupt") == 1
    assert gw.gateway.store.ring("site-a/dev-0/v").start_seq == 0
    assert any("sequence numbers restart at 0" in r.getMessage() for r in caplog.records)


def test_stream_lag_is_set_from_the_publisher_cursor(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, "good")
    ring = fake(gateway).ring
    key = ring.stream.key
    reader = FakePublisher.instances[-1].reader
    assert metric(gateway, "medgw_stream_lag_seconds", stream=key) == 0.0  # empty ring
    ts = 5_000_000_000 + np.arange(100, dtype=np.int64) * 10_000_000  # 100 Hz
    ring.append(ts, np.zeros((100, 1)), np.zeros(100, np.uint8))
    # nothing taken yet: the oldest pending sample is 99 periods older than the newest
    assert metric(gateway, "medgw_stream_lag_seconds", stream=key) == pytest.approx(0.99)
    reader.read(ring, 40)
    assert metric(gateway, "medgw_stream_lag_seconds", stream=key) == pytest.approx(0.59)
    reader.read(ring)
    assert metric(gateway, "medgw_stream_lag_seconds", stream=key) == 0.0
    assert stream_lag_s(ring, reader) == 0.0


def test_lag_of_a_lapped_reader_counts_from_the_oldest_held_sample() -> None:
    store = RingStore(10)
    ring = store.add_stream(StreamSpec("s", "d", "x", ("v",), ("",)))
    reader = store.reader("publisher")
    ts = np.arange(25, dtype=np.int64) * 1_000_000_000
    ring.append(ts, np.zeros((25, 1)), np.zeros(25, np.uint8))
    assert stream_lag_s(ring, reader) == 9.0  # held: 15..24


def test_unknown_driver_is_a_config_error(tmp_path: Path) -> None:
    data = {"site": "s", "gateway": "g", "devices": [{"name": "d", "driver": "nope"}]}
    with pytest.raises(ConfigError, match="unknown driver 'nope'"):
        parse_config(data)


def test_restarts_wait_the_shared_backoff(monkeypatch: pytest.MonkeyPatch, run: Any) -> None:
    delays: list[float] = []

    class Recording(Backoff):
        def next(self, retry_after: float | None = None) -> float:
            delay = super().next(retry_after)
            delays.append(delay)
            return delay

    monkeypatch.setattr(daemon, "Backoff", Recording)
    gw = run("crash")
    wait_until(lambda: len(delays) >= 5, message="five restarts")
    # initial 0.01 s doubling to the 0.04 s cap, each drawn from [d/2, d] (jitter)
    for delay, ceiling in zip(delays, (0.01, 0.02, 0.04, 0.04, 0.04), strict=False):
        assert ceiling / 2 <= delay <= ceiling
    assert gw.device()["restarts"] >= 5


def test_a_driver_that_cannot_be_built_is_a_config_error_naming_the_device(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"devices\[dev-1\]: driver fake cannot be set up: "
                       r"ValueError: stream name refused"):
        make_gateway(tmp_path, "good", "unbuildable")
