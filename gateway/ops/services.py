"""Start real helper servers (mosquitto, influxd, victoria-metrics) as child processes.

Each service binds 127.0.0.1 on a free port, writes its generated config, data and log
files into a work directory, and is a context manager. Used by the test fixtures and by
``medgw demo``. Services can be stopped, killed (SIGKILL, for fault tests) and started
again on the same port.
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
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from gateway.errors import ServiceError, StoreError
from gateway.server.influxql import InfluxQL, quote_ident

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


def _run_as_user() -> str | None:
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


class MosquittoService(ManagedProcess):
    """A mosquitto broker on 127.0.0.1 with a generated config (``extra_config`` for TLS/auth)."""

    name = "mosquitto"

    def __init__(self, workdir: str | Path, port: int | None = None, *,
                 allow_anonymous: bool = True, persistence: bool = False,
                 autosave_interval_s: int = 1800, max_inflight_messages: int = 1000,
                 max_queued_messages: int = 1_000_000, extra_config: Sequence[str] = (),
                 listener_config: Sequence[str] = (), startup_timeout_s: float = 15.0) -> None:
        super().__init__(workdir, port, startup_timeout_s)
        self.binary = find_binary("mosquitto", "mosquitto")
        self.config_path = self.workdir / "mosquitto.conf"
        self.persistence_dir = self.workdir / "mosquitto-data"
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.autosave_interval_s = autosave_interval_s
        self.max_inflight_messages = max_inflight_messages
        self.max_queued_messages = max_queued_messages
        self.extra_config = list(extra_config)
        self.listener_config = list(listener_config)

    def config_text(self) -> str:
        """Return the generated mosquitto.conf text."""
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.persistence_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            "connection_messages true",
        ]
        user = _run_as_user()
        if user:
            lines.append(f"user {user}")
        lines += self.extra_config
        lines.append(f"listener {self.port} {self.host}")
        lines += self.listener_config
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def __enter__(self) -> MosquittoService:
        self.start()
        return self


class InfluxdService(ManagedProcess):
    """InfluxDB 1.x (influxd) on 127.0.0.1 with all data under the work dir."""

    name = "influxd"

    def __init__(self, workdir: str | Path, port: int | None = None, *,
                 rpc_port: int | None = None, max_body_size: int = 256 * 1024 * 1024,
                 auth_enabled: bool = False, extra_http_config: Sequence[str] = (),
                 log_level: str = "warn", startup_timeout_s: float = 60.0) -> None:
        super().__init__(workdir, port, startup_timeout_s)
        self.binary = find_binary("influxd", "influxdb")
        self.rpc_port = rpc_port if rpc_port is not None else free_port()
        self.config_path = self.workdir / "influxd.conf"
        self.max_body_size = max_body_size
        self.auth_enabled = auth_enabled
        self.extra_http_config = list(extra_http_config)
        self.log_level = log_level
        self._session = requests.Session()
        self._influxql = InfluxQL(self.url, session=self._session, timeout_s=30)

    @property
    def url(self) -> str:
        """Return the HTTP base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def config_text(self) -> str:
        """Return the generated influxd.conf text."""
        root = self.workdir
        http = [
            "[http]",
            "  enabled = true",
            f'  bind-address = "{self.host}:{self.port}"',
            f"  auth-enabled = {'true' if self.auth_enabled else 'false'}",
            "  log-enabled = false",
            "  suppress-write-log = true",
            "  pprof-enabled = false",
            f"  max-body-size = {self.max_body_size}",
            "  unix-socket-enabled = false",
            *(f"  {line}" for line in self.extra_http_config),
        ]
        return "\n".join([
            "reporting-disabled = true",
            f'bind-address = "{self.host}:{self.rpc_port}"',
            "[meta]",
            f'  dir = "{root}/meta"',
            "  logging-enabled = false",
            "[data]",
            f'  dir = "{root}/data"',
            f'  wal-dir = "{root}/wal"',
            '  index-version = "inmem"',
            "  query-log-enabled = false",
            "[monitor]",
            "  store-enabled = false",
            "[subscriber]",
            "  enabled = false",
            "[continuous_queries]",
            "  enabled = false",
            "  log-enabled = false",
            "[retention]",
            "  enabled = false",
            "[shard-precreation]",
            "  enabled = false",
            *http,
            "[logging]",
            f'  level = "{self.log_level}"',
            "  suppress-logo = true",
            "",
        ])

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text(), encoding="utf-8")

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            return self._session.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except requests.RequestException:
            return False

    def query_raw(self, influxql: str, db: str | None = None, *, epoch: str = "ns",
                  auth: tuple[str, str] | None = None) -> dict[str, Any]:
        """POST an InfluxQL query to /query and return the decoded JSON (ServiceError on error)."""
        try:
            return self._influxql.raw(influxql, db or "", epoch=epoch, auth=auth)
        except StoreError as err:
            raise ServiceError(f"influxd query failed: {err}") from err

    def query(self, influxql: str, db: str | None = None, *,
              auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL and return rows as dicts (columns + the series' group-by tags).

        Times are integer nanoseconds. Rows of every series of every statement are
        concatenated; each row also carries ``"_measurement"``.
        """
        try:
            return self._influxql.rows(influxql, db or "", auth=auth)
        except StoreError as err:
            raise ServiceError(f"influxd query failed: {err}") from err

    def create_database(self, name: str, *, auth: tuple[str, str] | None = None) -> None:
        """CREATE DATABASE ``name`` (idempotent)."""
        self.query_raw(f"CREATE DATABASE {quote_ident(name)}", auth=auth)

    def drop_database(self, name: str, *, auth: tuple[str, str] | None = None) -> None:
        """DROP DATABASE ``name`` (idempotent)."""
        self.query_raw(f"DROP DATABASE {quote_ident(name)}", auth=auth)

    def count(self, measurement: str, db: str, field: str = "seq",
              where: str = "") -> int:
        """Return the number of points of ``measurement`` having ``field`` (0 when none)."""
        try:
            return self._influxql.count(measurement, db, field, where)
        except StoreError as err:
            raise ServiceError(f"influxd query failed: {err}") from err

    def __enter__(self) -> InfluxdService:
        self.start()
        return self


class VictoriaMetricsService(ManagedProcess):
    """VictoriaMetrics single-node on 127.0.0.1: accepts InfluxDB v1 and v2 line protocol writes.

    Naming: a line ``m,tag=v f=1`` becomes the series ``m_f{tag="v"}`` (measurement,
    ``_``, field; see ``-influxMeasurementFieldSeparator``); the InfluxDB ``db`` query
    parameter becomes the label ``db`` when given. Integer fields (``3i``) are stored as
    floats; string fields are dropped. Data is only searchable after a flush: the query
    helpers call ``/internal/force_flush`` first. With ``dedup_interval`` set (default
    ``1ms``) a rewrite of the same series+timestamp keeps one sample, like InfluxDB.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: str | Path, port: int | None = None, *,
                 retention: str = "100y", dedup_interval: str | None = "1ms",
                 extra_args: Sequence[str] = (), startup_timeout_s: float = 30.0) -> None:
        super().__init__(workdir, port, startup_timeout_s)
        self.binary = find_binary("victoria-metrics", "victoria-metrics")
        self.data_dir = self.workdir / "vm-data"
        self.retention = retention
        self.dedup_interval = dedup_interval
        self.extra_args = list(extra_args)
        self._session = requests.Session()

    @property
    def url(self) -> str:
        """Return the HTTP base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        argv = [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            f"-retentionPeriod={self.retention}",
            "-loggerLevel=WARN",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-memory.allowedPercent=20",
        ]
        if self.dedup_interval:
            argv.append(f"-dedup.minScrapeInterval={self.dedup_interval}")
        return argv + self.extra_args

    def _ready(self) -> bool:
        try:
            return self._session.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except requests.RequestException:
            return False

    def flush(self) -> None:
        """Make everything ingested so far searchable (/internal/force_flush)."""
        try:
            resp = self._session.get(f"{self.url}/internal/force_flush", timeout=30)
        except requests.RequestException as err:
            raise ServiceError(f"victoria-metrics flush failed: {err}") from err
        if resp.status_code != 200:
            raise ServiceError(f"victoria-metrics flush: HTTP {resp.status_code} {resp.text}")

    def export(self, match: str = '{__name__!=""}', start: str = "0") -> list[dict[str, Any]]:
        """Flush, then return every series matching ``match`` from /api/v1/export.

        Each item is ``{"metric": {"__name__": ..., labels...}, "values": [...],
        "timestamps": [ms ...]}``. Timestamps are milliseconds (VM's resolution).
        """
        import orjson

        self.flush()
        try:
            resp = self._session.post(f"{self.url}/api/v1/export",
                                      data={"match[]": match, "start": start}, timeout=60)
        except requests.RequestException as err:
            raise ServiceError(f"victoria-metrics export failed: {err}") from err
        if resp.status_code != 200:
            raise ServiceError(f"victoria-metrics export: HTTP {resp.status_code} {resp.text}")
        return [orjson.loads(line) for line in resp.content.splitlines() if line.strip()]

    def count_samples(self, match: str = '{__name__!=""}', start: str = "0") -> int:
        """Flush, then return the total number of samples of all series matching ``match``."""
        return sum(len(series["values"]) for series in self.export(match, start))

    def __enter__(self) -> VictoriaMetricsService:
        self.start()
        return self
