"""Write line protocol to InfluxDB 1.x (/write) or a v2-compatible store (influxdb-client).

Every failure becomes a StoreError(message, status, retryable, retry_after_s):

- connection refused/reset, timeout, HTTP 5xx, 408, 429: ``retryable=True``; a
  ``Retry-After`` header (seconds or HTTP date) is returned as ``retry_after_s``;
- HTTP 413 (body too large): ``retryable=False, status=413``: the caller splits the body
  (see gateway.lineproto.split_body) and writes the halves;
- HTTP 400 (bad line / partial write / field type conflict), 401/403 (auth), 404
  (unknown database or bucket) and other 4xx: ``retryable=False`` with the server's
  error text, which names the offending line.

Credentials never appear in messages or logs: v1 sends them as HTTP basic auth (not in
the query string) and URLs are shown without their user-info part.
"""

from __future__ import annotations

import gzip
from typing import Any, Protocol

import requests

from gateway.errors import StoreError
from gateway.server.influxhttp import classify_http, parse_retry_after, redact_url
from gateway.server.influxql import InfluxQL

__all__ = ["InfluxWriter", "V1Writer", "V2Writer", "classify_http", "create_writer",
           "parse_retry_after", "redact_url"]


class InfluxWriter(Protocol):
    """Something that stores a body of line protocol or raises StoreError."""

    def write(self, lines: bytes, n_lines: int) -> None:
        """Store ``lines`` (``n_lines`` points, used in messages) or raise StoreError."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class V1Writer:
    """InfluxDB 1.x HTTP API: ``POST {url}/write?db=..&precision=ns[&rp=..]``."""

    def __init__(self, url: str, database: str, *, retention_policy: str | None = None,
                 username: str | None = None, password: str | None = None,
                 gzip_body: bool = False, gzip_level: int = 1, timeout_s: float = 10.0,
                 connect_timeout_s: float = 3.0, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.gzip_body = gzip_body
        self.gzip_level = gzip_level
        self._where = f"{redact_url(self.url)} db={database}"
        self._endpoint = f"{self.url}/write"
        self._params = {"db": database, "precision": "ns"}
        if retention_policy:
            self._params["rp"] = retention_policy
        self._timeout = (connect_timeout_s, timeout_s)
        self._session = requests.Session()
        self._session.verify = verify
        if username is not None:
            self._session.auth = (username, password or "")
        self._influxql: InfluxQL | None = None
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip_body:
            self._headers["Content-Encoding"] = "gzip"
        # The write is prepared once (URL, headers, auth) and the environment's proxy and CA
        # settings read once, at start: Session.post would redo both for every write,
        # about half of its CPU (~250 us of ~500 per write, bench/bench_ingest.py)
        self._prepared = self._session.prepare_request(requests.Request(
            "POST", self._endpoint, params=self._params, headers=self._headers))
        self._send_settings = self._session.merge_environment_settings(
            self._prepared.url, {}, None, verify, None)

    def write(self, lines: bytes, n_lines: int) -> None:
        """POST the body; return on 204, raise a classified StoreError otherwise."""
        data = gzip.compress(lines, self.gzip_level) if self.gzip_body else lines
        request = self._prepared.copy()
        request.prepare_body(data, None)
        try:
            resp = self._session.send(request, timeout=self._timeout, **self._send_settings)
        except requests.Timeout as err:
            raise StoreError(f"write of {n_lines} lines to {self._where}: timeout "
                             f"({type(err).__name__})", retryable=True) from err
        except requests.RequestException as err:
            raise StoreError(f"write of {n_lines} lines to {self._where}: connection failed "
                             f"({type(err).__name__})", retryable=True) from err
        if resp.status_code in (200, 204):
            return
        raise classify_http(resp.status_code, resp.content, resp.headers.get("Retry-After"),
                            self._where, n_lines)

    def create_database(self) -> None:
        """``CREATE DATABASE`` (idempotent); StoreError if InfluxDB refuses or is unreachable."""
        self.influxql().create_database(self.database)

    def influxql(self) -> InfluxQL:
        """Return the InfluxQL client of this server, sharing the writer's session."""
        if self._influxql is None:
            self._influxql = InfluxQL(self.url, self.database, session=self._session,
                                      timeout_s=self._timeout[1],
                                      connect_timeout_s=self._timeout[0])
        return self._influxql

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


class V2Writer:
    """InfluxDB v2/v3 write API (or any compatible store) through influxdb-client, synchronous."""

    def __init__(self, url: str, bucket: str, org: str, token: str, *,
                 gzip_body: bool = False, timeout_s: float = 10.0, verify_ssl: bool = True,
                 ssl_ca_cert: str | None = None) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.bucket = bucket
        self.org = org
        self._where = f"{redact_url(self.url)} bucket={bucket}"
        self._precision: Any = WritePrecision.NS
        self._client = InfluxDBClient(url=self.url, token=token, org=org,
                                      timeout=int(timeout_s * 1000), enable_gzip=gzip_body,
                                      verify_ssl=verify_ssl, ssl_ca_cert=ssl_ca_cert,
                                      retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: bytes, n_lines: int) -> None:
        """Write the body synchronously; raise a classified StoreError on failure."""
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._api.write(bucket=self.bucket, org=self.org, record=lines,
                            write_precision=self._precision)
        except ApiException as err:
            status = int(err.status or 0)
            headers: Any = err.headers or {}
            raise classify_http(status, err.body, headers.get("Retry-After"),
                                self._where, n_lines) from err
        except (Urllib3Error, OSError) as err:
            raise StoreError(f"write of {n_lines} lines to {self._where}: connection failed "
                             f"({type(err).__name__})", retryable=True) from err

    def close(self) -> None:
        """Close the write API and the client."""
        self._api.close()
        self._client.close()


def create_writer(backend: str, url: str, *, database: str | None = None,
                  retention_policy: str | None = None, username: str | None = None,
                  password: str | None = None, bucket: str | None = None,
                  org: str | None = None, token: str | None = None, gzip_body: bool = False,
                  timeout_s: float = 10.0) -> InfluxWriter:
    """Build a V1Writer (``backend="v1"``) or a V2Writer (``backend="v2"``)."""
    if backend == "v1":
        if not database:
            raise StoreError("influxdb backend v1 needs a database", retryable=False)
        return V1Writer(url, database, retention_policy=retention_policy, username=username,
                        password=password, gzip_body=gzip_body, timeout_s=timeout_s)
    if backend == "v2":
        if not bucket:
            raise StoreError("influxdb backend v2 needs a bucket", retryable=False)
        return V2Writer(url, bucket, org or "", token or "", gzip_body=gzip_body,
                        timeout_s=timeout_s)
    raise StoreError(f"unknown influxdb backend {backend!r} (v1 or v2)", retryable=False)
