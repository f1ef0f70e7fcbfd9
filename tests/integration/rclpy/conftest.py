"""Fixtures for tests with real rclpy nodes (the PyPI ROS 2 wheels, Fast DDS by default).

Every test gets its own ROS domain id, and every rclpy participant (this process and the
publisher subprocesses) discovers on localhost only (ROS_AUTOMATIC_DISCOVERY_RANGE), so
no discovery traffic leaves the machine and parallel runs stay apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unique_domain_id

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def ros_env(domain_id: int) -> dict[str, str]:
    """Return this process's environment for an rclpy child on ``domain_id``, loopback only."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


@pytest.fixture
def domain_id(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pick a domain for this test; rclpy in this process discovers on localhost only."""
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    return domain


class PublisherProcess:
    """tests/integration/rclpy/rclpy_publisher.py in a subprocess; its result line."""

    def __init__(self, domain: int, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "rclpy_publisher.py"), "--domain", str(domain), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ros_env(domain), cwd=ROOT)
        self._result: dict[str, Any] | None = None
        self._done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self._result = json.loads(line) if line.strip() else None
        self._done.set()

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the publisher's JSON line (fails the test with its stderr if none)."""
        if not self._done.wait(timeout_s) or self._result is None or "error" in self._result:
            self.stop()
            assert self.proc.stderr is not None
            pytest.fail(f"rclpy publisher gave {self._result!r}: {self.proc.stderr.read()[-2000:]}")
        return self._result

    def stop(self) -> None:
        """Close its stdin (it then exits) and wait; kill it if it does not."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def start_publisher(domain_id: int) -> Iterator[Callable[..., PublisherProcess]]:
    """Start rclpy publisher subprocesses on the test's domain; stopped at teardown."""
    procs: list[PublisherProcess] = []

    def start(*args: str) -> PublisherProcess:
        proc = PublisherProcess(domain_id, list(args))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def colcon_build(base: Path, src: Path = ROOT / "ros_ws" / "src") -> Path:
    """colcon build ``src`` (ros_ws) with the PyPI build wheels into ``base``; return install.

    The wheels' CMake packages live in this venv's prefix (sys.prefix/share), so that is
    the ament and CMake prefix; ros_ws/cmake/pypi_wheels.cmake repairs the include
    directories the wheels' exported targets name (see that file).
    """
    prefix = sys.prefix
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    fix = ROOT / "ros_ws" / "cmake" / "pypi_wheels.cmake"
    cmd = [str(Path(sys.executable).parent / "colcon"), "--log-base", str(base / "log"), "build",
           "--base-paths", str(src), "--build-base", str(base / "build"),
           "--install-base", str(base / "install"), "--event-handlers", "console_direct+",
           "--cmake-args", f"-DCMAKE_PROJECT_INCLUDE={fix}"]
    done = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"colcon build of ros_ws failed ({done.returncode}):\n"
                    f"{(done.stdout + done.stderr)[-4000:]}")
    return base / "install"


def sourced_env(install: Path, base: dict[str, str]) -> dict[str, str]:
    """Return ``base`` after ``. install/setup.sh`` (what a user's shell would have)."""
    out = subprocess.run(["sh", "-c", f'. "{install}/setup.sh" && env -0'], env=base,
                         capture_output=True, check=True, timeout=60)
    pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


@pytest.fixture(scope="session")
def ros_ws_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ros_ws built once per session with colcon and the PyPI ROS 2 build wheels."""
    return colcon_build(tmp_path_factory.mktemp("ros_ws"))
