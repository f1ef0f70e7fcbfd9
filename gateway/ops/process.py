"""A server binary run as a child process: start on a loopback port, wait ready, stop, kill.

The base of the helper servers in :mod:`gateway.ops.services` (mosquitto, influxd,
victoria-metrics). A child dies with its parent, runs as an unprivileged user when medgw
runs as root, and keeps its log in its work directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.errors import ServiceError

LOOPBACK = "127.0.0.1"
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, package: str) -> str:
    """Locate ``name`` on PATH or in sbin/bin dirs; ServiceError naming the package if absent."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServiceError(
        f"{name} not found on PATH or in /usr/sbin: install the Debian package {package}"
    )


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Return True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL us when the parent thread dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_as_user() -> str | None:
    """Return the current user name when running as root (daemons would drop to another user)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(os.geteuid()).pw_name


class ManagedProcess:
    """Base: one child process with a log file, readiness probe, stop/kill/restart."""

    name = "service"

    def __init__(self, workdir: str | Path, port: int | None = None,
                 startup_timeout_s: float = 30.0) -> None:
        self.die_with_parent = True  # child gets SIGKILL if the starting thread dies
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    # -- subclass hooks ---------------------------------------------------------------
    def _prepare(self) -> None:
        """Write config files and create directories (called before every start)."""

    def _command(self) -> list[str]:
        """Return the argv that starts the service."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Return True once the service answers."""
        return port_open(self.host, self.port)

    # -- lifecycle --------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Return the child's pid while it runs, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Return True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the service log."""
        return _tail(self.log_path, lines)

    def start(self) -> ManagedProcess:
        """Start the process (again, on the same port) and wait until it is ready."""
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise ServiceError(f"{self.name}: port {self.host}:{self.port} is already in use")
        self._prepare()
        argv = self._command()
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.workdir, start_new_session=True,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                )
            except OSError as err:
                raise ServiceError(f"{self.name}: cannot start {argv[0]}: {err}") from err
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Poll the readiness probe, bounded by startup_timeout_s."""
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.01
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._proc = None
                raise ServiceError(
                    f"{self.name} exited with code {code} during startup on "
                    f"{self.host}:{self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} not ready on {self.host}:{self.port} after "
                    f"{self.startup_timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully: SIGTERM, then SIGKILL after ``timeout_s``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._proc = None

    def kill(self) -> None:
        """Kill at once with SIGKILL (simulates a crash) and reap the process."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10.0)
        self._proc = None

    def restart(self) -> None:
        """Stop gracefully and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} {self.workdir}>"
