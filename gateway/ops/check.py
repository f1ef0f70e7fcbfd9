"""Preflight check (``medgw check``): can this config reach its broker, database and devices?

Nothing here writes data: the broker gets one CONNECT/DISCONNECT, InfluxDB gets a ping,
``SHOW DATABASES`` and an *empty* write body (authorization is checked, no point is
stored), and a device is only asked through its driver's optional ``check()`` method.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import requests

from gateway import plugins
from gateway.config import LoadedConfig
from gateway.errors import MedgwError, StoreError
from gateway.server.influxql import InfluxQL

OK, FAIL, SKIP = "ok", "FAIL", "skip"


@dataclass(frozen=True)
class CheckResult:
    """One line of the preflight report."""

    component: str
    target: str
    status: str  # ok | FAIL | skip
    detail: str

    @property
    def failed(self) -> bool:
        """Return True when this check failed."""
        return self.status == FAIL


def check_broker(loaded: LoadedConfig, timeout_s: float = 5.0) -> CheckResult:
    """CONNECT to the broker with the configured auth/TLS and report the CONNACK reason."""
    from gateway.mqtt import describe_reason, make_mqtt_client

    cfg = loaded.config.mqtt
    target = f"mqtt://{cfg.host}:{cfg.port}" + (f" as {cfg.username}" if cfg.username else "")
    try:
        password = loaded.secret(cfg.password, "mqtt.password")
        client = make_mqtt_client(cfg, f"medgw-check-{loaded.config.gateway}-{os.getpid()}",
                                  password)
    except (MedgwError, OSError, ValueError) as err:
        return CheckResult("broker", target, FAIL, str(err))
    answered = threading.Event()
    outcome: list[Any] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: Any,
                   props: object = None) -> None:
        outcome.append(reason)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
    except (OSError, ValueError) as err:
        return CheckResult("broker", target, FAIL, f"cannot connect: {_os_reason(err)}")
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            return CheckResult("broker", target, FAIL, f"no CONNACK within {timeout_s:g} s")
        reason = outcome[0]
        if getattr(reason, "is_failure", False):
            return CheckResult("broker", target, FAIL, f"refused: {describe_reason(reason)}")
        return CheckResult("broker", target, OK, f"CONNACK {reason}")
    finally:
        client.disconnect()
        client.loop_stop()


def _os_reason(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(err, socket.gaierror):
        return f"host name not resolved ({err.strerror})"
    return str(err)


def _requests_reason(err: requests.RequestException) -> str:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return _os_reason(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, requests.Timeout):
        return "timed out"
    return f"{type(err).__name__}: {err}"


def check_influx(loaded: LoadedConfig, timeout_s: float = 5.0) -> list[CheckResult]:
    """Ping InfluxDB, then (v1) check the database exists and writes are authorized."""
    cfg = loaded.config.influxdb
    session = requests.Session()
    try:
        if cfg.backend == "v1" and cfg.username:
            session.auth = (cfg.username, loaded.secret(cfg.password, "influxdb.password") or "")
        elif cfg.token is not None:
            token = loaded.secret(cfg.token, "influxdb.token")
            session.headers["Authorization"] = f"Token {token}"
    except MedgwError as err:
        return [CheckResult("influxdb", cfg.url, FAIL, str(err))]
    influxql = InfluxQL(cfg.url, cfg.database, session=session, timeout_s=timeout_s,
                        connect_timeout_s=timeout_s)
    try:
        version = influxql.ping()
    except StoreError as err:
        return [CheckResult("influxdb", cfg.url, FAIL, _store_reason(err))]
    results = [CheckResult("influxdb", cfg.url, OK, f"ping ok, version {version}")]
    if cfg.backend == "v1":
        results.append(_influx_v1_database(session, influxql, loaded, timeout_s))
    return results


def _store_reason(err: StoreError) -> str:
    """The part of a StoreError after the target (which the report's column shows)."""
    return str(err).split(": ", 1)[-1] if ": " in str(err) else str(err)


def _influx_v1_database(session: requests.Session, influxql: InfluxQL, loaded: LoadedConfig,
                        timeout_s: float) -> CheckResult:
    cfg = loaded.config.influxdb
    base = cfg.url.rstrip("/")
    target = f"database {cfg.database}"
    try:
        names = influxql.databases()
    except StoreError as err:
        if err.status in (401, 403):
            return CheckResult("influxdb", target, FAIL, f"SHOW DATABASES: {_store_reason(err)}")
        if err.retryable:
            return CheckResult("influxdb", target, FAIL, _store_reason(err))
        names = set()  # a non-admin may not list databases: the write check decides
    try:
        # An empty body: InfluxDB authorizes the write and stores nothing.
        write = session.post(f"{base}/write", params=_write_params(loaded), data=b"",
                             timeout=timeout_s)
    except requests.RequestException as err:
        return CheckResult("influxdb", target, FAIL, _requests_reason(err))
    if write.status_code == 204:
        listed = "exists" if cfg.database in names else "not listed (no admin right)"
        return CheckResult("influxdb", target, OK, f"{listed}, write authorized")
    reason = _error(_json(write))
    if write.status_code == 404 and cfg.create_database:
        return CheckResult("influxdb", target, OK,
                           f"missing; the ingest creates it at start ({reason})")
    return CheckResult("influxdb", target, FAIL, f"write check: HTTP {write.status_code}: "
                       f"{reason}")


def _write_params(loaded: LoadedConfig) -> dict[str, str]:
    cfg = loaded.config.influxdb
    params = {"db": cfg.database}
    if cfg.retention_policy:
        params["rp"] = cfg.retention_policy
    return params


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {"error": resp.text.strip()[:200]}
    return doc if isinstance(doc, dict) else {}


def _error(body: dict[str, Any]) -> str:
    if "error" in body:
        return str(body["error"])
    for res in body.get("results", []):
        if "error" in res:
            return str(res["error"])
    return "no detail"


def check_devices(loaded: LoadedConfig, timeout_s: float = 10.0) -> list[CheckResult]:
    """Ask every enabled device's driver for its optional ``async check() -> str``."""
    from gateway.driver import CheckableDriver, DriverContext
    from gateway.metrics import GatewayMetrics
    from gateway.ring import RingStore

    results = []
    for device in loaded.config.devices:
        target = f"{device.name} ({device.driver})"
        if not device.enabled:
            results.append(CheckResult("device", target, SKIP, "disabled in the config"))
            continue
        info = plugins.load_driver(device.driver)
        ctx = DriverContext(loaded.config.site, device.name, RingStore(16), GatewayMetrics(),
                            logging.getLogger(f"medgw.check.{device.name}"), 16)
        try:
            driver = info.create(ctx, loaded.driver_options[device.name])
            if not isinstance(driver, CheckableDriver):
                results.append(CheckResult("device", target, SKIP, "no check available"))
                continue
            detail = asyncio.run(asyncio.wait_for(driver.check(), timeout_s))
            results.append(CheckResult("device", target, OK, str(detail)))
        except TimeoutError:
            results.append(CheckResult("device", target, FAIL,
                                       f"no answer within {timeout_s:g} s"))
        except Exception as err:  # one device's failure must not stop the others' checks
            results.append(CheckResult("device", target, FAIL, f"{type(err).__name__}: {err}"))
    return results


def run_checks(loaded: LoadedConfig, timeout_s: float = 5.0) -> list[CheckResult]:
    """Run every preflight check of a config, in order: broker, InfluxDB, devices."""
    return [check_broker(loaded, timeout_s), *check_influx(loaded, timeout_s),
            *check_devices(loaded, 2 * timeout_s)]
