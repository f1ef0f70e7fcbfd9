"""Opening an OPC UA session with the configured security; asyncua errors become DeviceError."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.opcua.options import DEFAULT_CLIENT_URI, OpcUaOptions
from gateway.errors import DeviceError

_AUTH_CODES = frozenset({
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadUserSignatureInvalid,
})
_POLICY_CODES = frozenset({
    ua.StatusCodes.BadSecurityPolicyRejected,
    ua.StatusCodes.BadSecurityModeRejected,
})


def load_der(path: Path) -> bytes:
    """Return a certificate file (DER or PEM) as DER bytes; DeviceError if unreadable."""
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except (OSError, ValueError) as err:
        raise DeviceError(f"cannot load certificate {path}: {err}") from err


def fingerprint(der: bytes) -> str:
    """Return the SHA-256 fingerprint of a DER certificate, abbreviated for messages."""
    return hashlib.sha256(der).hexdigest()[:16]


def application_uri(options: OpcUaOptions) -> str:
    """Return the client application URI: configured, else the certificate's SAN URI."""
    if options.application_uri:
        return options.application_uri
    if options.secure and options.certificate is not None:
        cert = x509.load_der_x509_certificate(load_der(options.certificate))
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:
                return str(uris[0])
    return DEFAULT_CLIENT_URI


def translate_error(err: BaseException, options: OpcUaOptions) -> DeviceError:
    """Turn an asyncua/socket error from connecting into a DeviceError that says what to fix."""
    where = f"OPC UA server {options.endpoint}"
    if isinstance(err, DeviceError):
        return err
    if isinstance(err, ua.UaStatusCodeError):
        name = ua.StatusCode(err.code).name
        if err.code in _AUTH_CODES:
            who = f"user {options.username!r}" if options.username else "anonymous access"
            hint = ("wrong username or password" if options.username
                    else "set username and password")
            return DeviceError(f"{where} refused {who} ({name}): {hint}")
        if name.startswith("BadCertificate") or err.code == ua.StatusCodes.BadSecurityChecksFailed:
            return DeviceError(
                f"{where} rejected the client certificate {options.certificate} ({name}):"
                " add it to the server's trusted certificates")
        if err.code in _POLICY_CODES:
            return DeviceError(f"{where} does not accept security_policy"
                               f" {options.security_policy} {options.security_mode} ({name})")
        return DeviceError(f"{where}: {name} ({ua.StatusCode(err.code).doc})")
    if isinstance(err, AssertionError) and options.secure:  # asyncua on an unreadable refusal
        return DeviceError(
            f"{where} refused the secure channel with an answer asyncua cannot read; servers"
            f" such as node-opcua answer so when they do not trust the client certificate"
            f" {options.certificate}: add it to the server's trusted certificates"
            " (`medgw opcua cert` lists where servers keep them)")
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        hint = (f"; if the server is up, check that server_certificate {options.server_certificate}"
                " is this server's certificate" if options.secure else "")
        return DeviceError(f"{where}: no answer within {options.request_timeout_s:g} s{hint}")
    if isinstance(err, OSError):
        return DeviceError(f"cannot reach {where}: {err.strerror or err}")
    if isinstance(err, ua.UaError) and str(err).startswith("No matching endpoints"):
        mode = f" {options.security_mode}" if options.secure else ""
        return DeviceError(f"{where} offers no endpoint with security_policy"
                           f" {options.security_policy}{mode}")
    if isinstance(err, ua.UaError):
        return DeviceError(f"{where}: {err}")
    return DeviceError(f"{where}: {type(err).__name__}: {err}")


async def check_server_certificate(options: OpcUaOptions) -> str | None:
    """Compare the pinned server_certificate with what the server's endpoints present.

    Raises DeviceError on a mismatch. Returns None when checked, else what could not be
    checked and why (e.g. a server that refuses unsecured GetEndpoints): the secure
    handshake still fails against another certificate, only with a less clear error.
    """
    assert options.server_certificate is not None
    pinned = load_der(options.server_certificate)
    probe = Client(options.endpoint, timeout=options.request_timeout_s)
    try:
        endpoints = await asyncio.wait_for(probe.connect_and_get_server_endpoints(),
                                           options.request_timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # any failure of the probe only means: not checked here
        return (f"server_certificate {options.server_certificate} not compared before the"
                f" handshake: GetEndpoints failed ({translate_error(err, options)})")
    offered = {bytes(e.ServerCertificate) for e in endpoints if e.ServerCertificate}
    if not offered:
        return (f"server_certificate {options.server_certificate} not compared before the"
                " handshake: the server's endpoints present no certificate")
    if pinned not in offered:
        seen = ", ".join(sorted(fingerprint(d) for d in offered))
        raise DeviceError(
            f"OPC UA server {options.endpoint} presents certificate {seen}, not the trusted"
            f" server_certificate {options.server_certificate} ({fingerprint(pinned)})")
    return None


async def open_client(options: OpcUaOptions, notes: list[str] | None = None) -> Client:
    """Connect and activate a session; raise DeviceError with a clear message on failure.

    What could not be checked on the way (the certificate pre-check) is appended to
    ``notes`` for the caller to report, and added to the DeviceError if the session fails.
    """
    notes = [] if notes is None else notes
    client = Client(options.endpoint, timeout=options.request_timeout_s,
                    watchdog_intervall=options.request_timeout_s)
    client.name = client.description = "medgw gateway"
    client.session_timeout = 60_000
    try:
        password = options.resolve_password()
        client.application_uri = application_uri(options)
        if options.secure:
            note = await _set_security(client, options)
            if note is not None:
                notes.append(note)
        if options.username is not None:
            client.set_user(options.username)
            client.set_password(password or "")
        await asyncio.wait_for(client.connect(), options.request_timeout_s * 2)
    except BaseException as err:
        client.disconnect_socket()
        await _cancel_client_tasks(client)
        if isinstance(err, asyncio.CancelledError):
            raise
        error = translate_error(err, options)
        unreachable = isinstance(err, OSError) and not isinstance(err, TimeoutError)
        if notes and not unreachable:  # "cannot reach" says it all
            error = DeviceError(f"{error} ({'; '.join(notes)})")
        raise error from err
    return client


async def _set_security(client: Client, options: OpcUaOptions) -> str | None:
    assert options.certificate and options.private_key and options.server_certificate
    note = await check_server_certificate(options)
    key_password = options.resolve_key_password()
    try:
        key = options.private_key.read_bytes()
    except OSError as err:
        raise DeviceError(f"cannot read private_key {options.private_key}: {err.strerror}") from err
    key_format = "pem" if key.lstrip().startswith(b"-----BEGIN") else "der"
    mode = getattr(ua.MessageSecurityMode, options.security_mode)
    try:
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            uacrypto.CertProperties(load_der(options.certificate), "der"),
            uacrypto.CertProperties(key, key_format, key_password),
            server_certificate=uacrypto.CertProperties(load_der(options.server_certificate),
                                                       "der"),
            mode=mode)
    except (ValueError, TypeError) as err:
        raise DeviceError(f"cannot use private_key {options.private_key} with certificate"
                          f" {options.certificate}: {err}") from err
    return note


async def _cancel_client_tasks(client: Client) -> None:
    """Stop the background tasks asyncua started for a client that did not connect."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 1.0)


async def close_client(client: Client, timeout: float = 2.0) -> None:
    """Close the session politely if possible, then drop the socket; never raises."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout)
    with contextlib.suppress(Exception):
        client.disconnect_socket()
