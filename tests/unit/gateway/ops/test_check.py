"""Device checks of ``medgw check`` use a driver's optional ``async check()`` (fake drivers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from gateway import plugins
from gateway.config import parse_config
from gateway.driver import DriverInfo
from gateway.ops.check import FAIL, OK, SKIP, check_devices


class _Options(BaseModel):
    mode: str = "ok"


class _CheckedDriver:
    def __init__(self, ctx: Any, options: _Options) -> None:
        self.options = options

    async def run(self) -> None:
        await asyncio.sleep(3600)

    async def check(self) -> str:
        if self.options.mode == "slow":
            await asyncio.sleep(30)
        if self.options.mode == "broken":
            raise ConnectionRefusedError("port closed")
        return f"answered in mode {self.options.mode}"


class _PlainDriver:
    """A driver without the optional CheckableDriver capability."""

    def __init__(self, ctx: Any, options: _Options) -> None:
        self.options = options

    async def run(self) -> None:
        await asyncio.sleep(3600)


def test_device_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    infos = {"checked": DriverInfo("checked", _Options, _CheckedDriver),
             "plain": DriverInfo("plain", _Options, _PlainDriver)}
    monkeypatch.setattr(plugins, "load_driver", infos.__getitem__)
    monkeypatch.setattr(plugins, "driver_names", lambda: sorted(infos))
    devices = [{"name": "a", "driver": "checked"},
               {"name": "b", "driver": "checked", "options": {"mode": "broken"}},
               {"name": "c", "driver": "checked", "options": {"mode": "slow"}},
               {"name": "d", "driver": "plain"},
               {"name": "e", "driver": "checked", "enabled": False}]
    loaded = parse_config({"site": "s", "gateway": "g", "devices": devices})
    results = check_devices(loaded, timeout_s=0.2)
    assert [r.status for r in results] == [OK, FAIL, FAIL, SKIP, SKIP]
    assert results[0].detail == "answered in mode ok"
    assert "port closed" in results[1].detail
    assert "no answer within 0.2 s" in results[2].detail
    assert results[3].detail == "no check available"
