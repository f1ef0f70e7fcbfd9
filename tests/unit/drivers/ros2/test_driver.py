"""Ros2Driver.run over a fake transport: a failed session is recorded and retried after the
shared backoff, run() waits on the session's end (no polling), cancel stops the thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from drivers.ros2 import Ros2Driver, Ros2Options
from drivers.ros2.transport import Publication, ReaderSpec, ReaderStatus, TransportSink
from gateway.driver import DriverContext
from gateway.errors import DeviceError


class FlakyTransport:
    """Fails the first session, then ticks the sink until stopped."""

    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0
        self.second = threading.Event()

    def run(self, sink: TransportSink, stop: threading.Event) -> None:
        """Fail once, then tick until ``stop``."""
        self.runs += 1
        if self.runs == 1:
            raise DeviceError("the middleware fell over")
        self.second.set()
        while not stop.wait(0.01):
            sink.tick(0)

    def open_reader(self, spec: ReaderSpec) -> None:
        """Accept."""

    def reader_status(self, topic: str) -> ReaderStatus | None:
        """None."""
        return None

    def publications(self) -> list[Publication]:
        """None."""
        return []


def test_failed_session_is_recorded_and_retried(ctx: DriverContext) -> None:
    transport = FlakyTransport()
    options = Ros2Options(patterns=["/x/*"], reconnect_min_s=0.01, reconnect_max_s=0.02)
    driver = Ros2Driver(ctx, options, transport=transport)
    errors: list[str | None] = []

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await asyncio.to_thread(transport.second.wait, 10)
        errors.append(ctx.state.last_error)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert transport.runs == 2 and driver.sessions == 2
    assert driver.backoff.attempt == 1
    assert errors == ["DeviceError: the middleware fell over"]
    assert driver._thread is not None and not driver._thread.is_alive()


def test_explicit_rclpy_without_rclpy_fails_run_with_the_install_hint(
        ctx: DriverContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.ros2 import transport as transport_mod

    monkeypatch.setattr(transport_mod, "rclpy_available", lambda: False)
    driver = Ros2Driver(ctx, Ros2Options(patterns=["/x/*"], transport="rclpy"))
    with pytest.raises(DeviceError, match="medgw\\[ros\\]"):
        asyncio.run(driver.run())
    assert "medgw[ros]" in (ctx.state.last_error or "")
