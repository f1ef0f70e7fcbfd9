"""HTTP details shared by the InfluxDB writers and the InfluxQL client: error classes,
Retry-After, URLs without credentials."""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests

from gateway.errors import StoreError

_RETRYABLE_4XX = frozenset({408, 429})
_MAX_ERROR_TEXT = 1000


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
        decoded = orjson.loads(text)
        if isinstance(decoded, dict):
            text = str(decoded.get("error") or decoded.get("message") or text)
    except ValueError:
        pass
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def classify_http(status: int, body: bytes | str | None, retry_after: str | None,
                  where: str, n_lines: int, action: str | None = None) -> StoreError:
    """Turn a failed HTTP write (or ``action``, e.g. a query) into a StoreError."""
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
    message = f"{action or f'write of {n_lines} lines to'} {where}: HTTP {status} ({hint})"
    if text:
        message += f": {text}"
    delay = parse_retry_after(retry_after) if retryable else None
    return StoreError(message, status=status, retryable=retryable, retry_after_s=delay)




def request_reason(err: requests.RequestException) -> str:
    """Say in words why a request failed (connection refused, timed out ...)."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens on that port)"
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, requests.Timeout):
        return "timed out"
    return f"connection failed ({type(err).__name__})"
