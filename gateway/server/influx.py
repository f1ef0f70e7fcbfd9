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

import email.utils
import gzip
import time
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from gateway.errors import StoreError

_RETRYABLE_4XX = frozenset({408, 429})
_MAX_ERROR_TEXT = 1000


class InfluxWriter(Protocol):
    """Something that stores a body of line protocol or raises StoreError."""

    def write(self, lines: bytes, n_lines: int) -> None:
        """Store ``lines`` (``n_lines`` points, used in messages) or raise StoreError."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def redact_url(url: str) -> str:
    """Return ``url`` without user-info (``user:password@``) and without query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta seconds or HTTP date) into seconds (>= 0)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _error_text(body: bytes | str | None) -> str:
    """Return a short, readable server error text (InfluxDB's JSON ``error``/``message``)."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        import orjson

        decoded = orjson.loads(text)
        if isinstance(decoded, dict):
            text = str(decoded.get("error") or decoded.get("message") or text)
    except ValueError:
        pass
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def classify_http(status: int, body: bytes | str | None, retry_after: str | None,
                  where: str, n_lines: int) -> StoreError:
    """Turn a failed HTTP write (status >= 300) into a StoreError."""
    text = _error_text(body)
    retryable = status >= 500 or status in _RETRYABLE_4XX
    if status == 413:
        hint = "body too large, split it"
    elif status == 400:
        hint = "bad line protocol or partial write"
    elif status in (401, 403):
        hint = "authentication/authorization refused"
    elif status == 404:
        hint = "database/bucket or endpoint not found"
    elif retryable:
        hint = "server busy or failing, retry later"
    else:
        hint = "write refused"
    message = f"write of {n_lines} lines to {where}: HTTP {status} ({hint})"
    if text:
        message += f": {text}"
    delay = parse_retry_after(retry_after) if retryable else None
    return StoreError(message, status=status, retryable=retryable, retry_after_s=delay)


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
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip_body:
            self._headers["Content-Encoding"] = "gzip"

    def write(self, lines: bytes, n_lines: int) -> None:
        """POST the body; return on 204, raise a classified StoreError otherwise."""
        data = gzip.compress(lines, self.gzip_level) if self.gzip_body else lines
        try:
            resp = self._session.post(self._endpoint, params=self._params, data=data,
                                      headers=self._headers, timeout=self._timeout)
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
        try:
            resp = self._session.post(f"{self.url}/query",
                                      data={"q": f'CREATE DATABASE "{self.database}"'},
                                      timeout=self._timeout)
        except requests.RequestException as err:
            raise StoreError(f"create database on {self._where}: connection failed "
                             f"({type(err).__name__})", retryable=True) from err
        if resp.status_code != 200 or b'"error"' in resp.content:
            raise classify_http(resp.status_code if resp.status_code != 200 else 400,
                                resp.content, None, self._where, 0)

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
