"""Headless Chromium renders the live status page of a running gateway (real broker)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.config import parse_config
from gateway.edge.daemon import Gateway, GatewayThread
from gateway.edge.health import HealthServer
from gateway.ops.services import MosquittoService
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STREAMS = [
    {"name": "joints", "fields": 3, "rate_hz": 200, "waveform": "sine", "period_s": 4,
     "measurement": "joint_state"},
    {"name": "temperature", "fields": 1, "rate_hz": 20, "waveform": "ramp", "period_s": 3,
     "measurement": "carrier"},
    {"name": "state", "fields": 1, "rate_hz": 2, "waveform": "square", "kind": "event",
     "measurement": "robot_event"},
]


@pytest.fixture
def status_url(mosquitto: MosquittoService) -> Iterator[str]:
    devices = [{"name": name, "driver": "synthetic",
                "options": {"streams": STREAMS, "tick_ms": 20}} for name in ("robot-1", "cart-7")]
    loaded = parse_config({"site": "test-site", "gateway": "gw-shot",
                           "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                           "health": {"enabled": False}, "devices": devices})
    gateway = Gateway(loaded)
    runner = GatewayThread(gateway)
    server = HealthServer("127.0.0.1", 0, gateway.metrics.registry, gateway.health_report,
                          store=gateway.store)
    runner.start()
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/"

        def page_has_sparklines() -> bool:
            doc = requests.get(url + "api/streams", timeout=5).json()
            return len(doc["streams"]) == 6 and all(
                len(s["spark"]["mean"]) >= 3 for s in doc["streams"] if s["kind"] == "sampled")

        wait_until(page_has_sparklines, 20, 0.2, message="three seconds of data per stream")
        yield url
    finally:
        server.stop()
        runner.stop(15)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH: apt-get install chromium")
def test_status_page_screenshot(status_url: str, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "status.png"
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=3000", f"--screenshot={shot}", "--window-size=1200,800",
            status_url]
    proc = subprocess.run(argv, capture_output=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert shot.is_file()
    with Image.open(shot) as image:
        assert image.size == (1200, 800)
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20) or []
        # the header bar's dark blue: the page rendered, not a blank or error page
        header = rgb.getpixel((600, 5))
    assert len(colors) > 50, f"only {len(colors)} colors: blank page?"
    assert header == (0x1D, 0x35, 0x57)
    target = Path("/tmp/medgw-statuspage.png")
    shutil.copy(shot, target)  # kept for a human look at the last run
