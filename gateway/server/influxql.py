"""The one InfluxQL client (InfluxDB 1.x ``/query`` over requests).

Used by the ingest (which sequence numbers of a hole does InfluxDB hold), the InfluxDB
writer (``CREATE DATABASE``), ``medgw check`` (ping, ``SHOW DATABASES``) and the test and
demo services (``count``, ``query``). Every failure is a StoreError: retryable for
connection errors, timeouts, 5xx and 429 (with ``Retry-After``), not retryable for a
refused statement (the server's error text included). Credentials go as HTTP basic auth
(v1) or a token header, never in the URL or a message.
"""

from __future__ import annotations

from typing import Any

import requests

from gateway.errors import StoreError
from gateway.server.influxhttp import classify_http, redact_url, request_reason

Row = dict[str, Any]


def quote_ident(name: str) -> str:
    """Return an InfluxQL identifier in double quotes (``"`` and ``\\`` escaped)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """Return an InfluxQL string literal in single quotes (``'`` and ``\\`` escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQL:
    """InfluxQL over HTTP against one server; ``database`` is the default for statements."""

    def __init__(self, url: str, database: str | None = None, *, username: str | None = None,
                 password: str | None = None, token: str | None = None,
                 timeout_s: float = 10.0, connect_timeout_s: float = 3.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._where = redact_url(self.url)
        self._timeout = (connect_timeout_s, timeout_s)
        self._own_session = session is None
        self._session = session or requests.Session()
        if username is not None:
            self._session.auth = (username, password or "")
        elif token is not None:
            self._session.headers["Authorization"] = f"Token {token}"

    def raw(self, influxql: str, db: str | None = None, *, epoch: str | None = "ns",
            auth: tuple[str, str] | None = None) -> dict[str, Any]:
        """POST a statement and return InfluxDB's JSON answer; StoreError on any failure."""
        params = {"q": influxql}
        if epoch:
            params["epoch"] = epoch
        database = db if db is not None else self.database
        if database:
            params["db"] = database
        what = f"InfluxQL {influxql[:120]!r} on"
        try:
            resp = self._session.post(f"{self.url}/query", data=params, auth=auth,
                                      timeout=self._timeout)
        except requests.RequestException as err:
            raise StoreError(f"{what} {self._where}: {request_reason(err)}",
                             retryable=True) from err
        if resp.status_code != 200:
            raise classify_http(resp.status_code, resp.content, resp.headers.get("Retry-After"),
                                self._where, 0, action=what)
        try:
            body = resp.json()
        except ValueError as err:
            raise StoreError(f"{what} {self._where}: answer is not JSON", retryable=True) from err
        if not isinstance(body, dict):
            raise StoreError(f"{what} {self._where}: unexpected answer", retryable=False)
        for result in body.get("results", []):
            if isinstance(result, dict) and "error" in result:
                raise StoreError(f"{what} {self._where}: {result['error']}", status=400,
                                 retryable=False)
        return body

    def rows(self, influxql: str, db: str | None = None, *,
             auth: tuple[str, str] | None = None) -> list[Row]:
        """Run a statement and return rows as dicts (columns, group-by tags, ``_measurement``).

        Times are integer nanoseconds; the rows of every series of every statement are
        concatenated.
        """
        rows: list[Row] = []
        for result in self.raw(influxql, db, auth=auth).get("results", []):
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                columns = series["columns"]
                for values in series.get("values", []):
                    row = dict(zip(columns, values, strict=True))
                    row.update(tags)
                    row["_measurement"] = series.get("name")
                    rows.append(row)
        return rows

    def count(self, measurement: str, db: str | None = None, field: str = "seq",
              where: str = "") -> int:
        """Return the number of points of ``measurement`` having ``field`` (0 when none)."""
        clause = f" WHERE {where}" if where else ""
        rows = self.rows(f"SELECT count({quote_ident(field)}) FROM {quote_ident(measurement)}"
                         f"{clause}", db)
        return int(sum(int(row.get("count") or 0) for row in rows))

    def create_database(self, name: str, *, auth: tuple[str, str] | None = None) -> None:
        """``CREATE DATABASE`` (idempotent)."""
        self.raw(f"CREATE DATABASE {quote_ident(name)}", db="", epoch=None, auth=auth)

    def databases(self) -> set[str]:
        """Return the database names this user may see (``SHOW DATABASES``)."""
        return {str(row["name"]) for row in self.rows("SHOW DATABASES", db="")}

    def ping(self, timeout_s: float | None = None) -> str:
        """Ping the server; return its version (StoreError when unreachable or not 204)."""
        timeout = self._timeout if timeout_s is None else (timeout_s, timeout_s)
        try:
            resp = self._session.get(f"{self.url}/ping", timeout=timeout)
        except requests.RequestException as err:
            raise StoreError(f"ping {self._where}: {request_reason(err)}",
                             retryable=True) from err
        if resp.status_code != 204:
            raise StoreError(f"ping {self._where}: HTTP {resp.status_code}",
                             status=resp.status_code, retryable=resp.status_code >= 500)
        return resp.headers.get("X-Influxdb-Version", "?")

    def close(self) -> None:
        """Close the HTTP session (unless it was lent by a writer)."""
        if self._own_session:
            self._session.close()
