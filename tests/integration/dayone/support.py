"""Day-one test helpers: the carrier simulator in a thread, a node-opcua server, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner, Result

from gateway.ops.cli import app
from simulators.transport_carrier import CarrierSim, SimConfig

T = TypeVar("T")
NODEOPCUA_DIR = Path(__file__).resolve().parent / "nodeopcua"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def medgw(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """Run ``medgw ARGS`` in-process (the real typer app); never raises for a non-zero exit."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


class SimThread:
    """The asyncua carrier simulator on its own loop in a thread (the CLI runs its own)."""

    def __init__(self, config: SimConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="carrier-sim",
                                       daemon=True)
        self.sim = CarrierSim(config)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the simulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def endpoint(self) -> str:
        """The simulator's endpoint URL."""
        return self.sim.endpoint


@contextlib.contextmanager
def carrier_sim(**config: Any) -> Iterator[SimThread]:
    """Run the carrier simulator (free loopback port, real clock by default) around a block."""
    config.setdefault("port", free_port())
    config.setdefault("carriers", 2)
    config.setdefault("rate_hz", 20.0)
    sim = SimThread(SimConfig(**config))
    sim.thread.start()
    try:
        sim.call(sim.sim.start())
        yield sim
    finally:
        with contextlib.suppress(Exception):
            sim.call(sim.sim.stop())
        sim.loop.call_soon_threadsafe(sim.loop.stop)
        sim.thread.join(10)
        sim.loop.close()


def install_nodeopcua() -> Path:
    """``npm install`` the node-opcua server of package.json once; return node's path.

    CI runs on a clean checkout: the project's own files install what the test needs.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise AssertionError("node and npm are needed for the node-opcua tests: install the"
                             " Debian packages nodejs and npm")
    if not (NODEOPCUA_DIR / "node_modules" / "node-opcua-server").is_dir():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-package-lock",
             "--loglevel=error"], cwd=NODEOPCUA_DIR, capture_output=True, text=True,
            timeout=600, check=False)
        if done.returncode != 0:
            raise AssertionError(f"npm install in {NODEOPCUA_DIR} failed:\n{done.stderr[-3000:]}")
    return Path(node)


@dataclass
class NodeOpcUa:
    """A running node-opcua server: its endpoint and its PKI folder."""

    endpoint: str
    pki: Path
    process: subprocess.Popen[str]
    log: Path

    @property
    def trusted(self) -> Path:
        """Where node-opcua keeps the client certificates it trusts."""
        return self.pki / "trusted" / "certs"

    @property
    def rejected(self) -> Path:
        """Where node-opcua puts client certificates it refused."""
        return self.pki / "rejected"


@contextlib.contextmanager
def nodeopcua_server(node: Path, workdir: Path, secure: bool,
                     user: str = "gateway:change-me") -> Iterator[NodeOpcUa]:
    """Start server.js on a free loopback port; wait for READY; always stop it."""
    port = free_port()
    pki = workdir / "server-pki"
    log = workdir / f"nodeopcua-{port}.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [str(node), "server.js", str(port), str(pki), "secure" if secure else "none", user],
        cwd=NODEOPCUA_DIR, stdout=handle, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NODE_NO_WARNINGS": "1"})
    try:
        endpoint = _wait_ready(proc, log)
        yield NodeOpcUa(endpoint, pki, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        handle.close()


def _wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split()[1]
        time.sleep(0.1)
    raise AssertionError(f"node-opcua server did not start:\n{log.read_text()[-3000:]}")
