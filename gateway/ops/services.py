"""Start real helper servers (mosquitto, influxd, victoria-metrics) as child processes.

Each service binds 127.0.0.1 on a free port, writes its generated config, data and log
files into a work directory, and is a context manager. Used by the test fixtures and by
``medgw demo``. Services can be stopped, killed (SIGKILL, for fault tests) and started
again on the same port.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from gateway.errors import ServiceError, StoreError
from gateway.ops.process import (
    LOOPBACK,
    ManagedProcess,
    find_binary,
    free_port,
    port_open,
    run_as_user,
)
from gateway.server.influxql import InfluxQL, quote_ident

__all__ = ["LOOPBACK", "InfluxdService", "ManagedProcess", "MosquittoService",
           "VictoriaMetricsService", "find_binary", "free_port", "port_open"]


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
        user = run_as_user()
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
