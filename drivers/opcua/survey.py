"""One look at a server for ``medgw discover opcua``: endpoints, certificate, tree, device block.

The browse session is opened by the driver's own session code (session.py), so what
discover can browse, a run can read. The device block is the ``options`` of a config
device, with the security settings taken from what the server offers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.opcua.browse import (
    BrowseSummary,
    EndpointInfo,
    best_endpoint,
    get_endpoints,
    require_endpoints,
    summarize,
    validated,
)
from drivers.opcua.certs import CertificateInfo, describe
from drivers.opcua.options import BrowseSpec, OpcUaOptions
from drivers.opcua.session import close_client, open_client
from gateway.config import SecretRef
from gateway.errors import DeviceError
from gateway.files import atomic_write

PASSWORD_ENV = "MEDGW_OPCUA_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """What the gateway would present: its certificate and key, and a user."""

    certificate: Path | None = None
    private_key: Path | None = None
    username: str | None = None
    password: SecretRef | None = None


@dataclass(frozen=True)
class Survey:
    """Everything ``discover opcua`` prints."""

    endpoint: str
    endpoints: tuple[EndpointInfo, ...]
    chosen: EndpointInfo | None
    server_certificate: CertificateInfo | None
    saved_certificate: Path | None
    summary: BrowseSummary | None
    browsed_with: str | None  # "Basic256Sha256 SignAndEncrypt as gateway", "None anonymous"
    note: str | None  # why the tree was not browsed


async def survey_server(endpoint: str, credentials: Credentials, save_cert: Path | None = None,
                 timeout: float = 5.0, browse: bool = True) -> Survey:
    """Look at one server: endpoints, its certificate (saved as DER), and its tree."""
    endpoints = await get_endpoints(endpoint, timeout)
    require_endpoints(endpoints, endpoint)
    chosen = best_endpoint(endpoints)
    cert_der = next((e.certificate for e in endpoints if e.certificate), b"")
    if chosen is not None and chosen.certificate:
        cert_der = chosen.certificate
    info = describe(cert_der) if cert_der else None
    if save_cert is not None and cert_der:
        try:
            atomic_write(save_cert, cert_der)
        except OSError as err:
            raise DeviceError(f"cannot write --save-cert {save_cert}: {err}") from err
    summary = browsed_with = note = None
    if browse:
        with tempfile.TemporaryDirectory(prefix="medgw-discover-") as tmp:
            pinned = save_cert if save_cert is not None and cert_der else Path(tmp) / "server.der"
            if cert_der and pinned != save_cert:
                pinned.write_bytes(cert_der)
            plan = _browse_options(endpoint, endpoints, credentials, pinned, timeout)
            if isinstance(plan, str):
                note = plan
            else:
                summary = await _browse(plan)
                browsed_with = _describe_session(plan)
    return Survey(endpoint, tuple(endpoints), chosen, info,
                  save_cert if cert_der else None, summary, browsed_with, note)


def _browse_options(endpoint: str, endpoints: list[EndpointInfo], cred: Credentials,
                    pinned: Path, timeout: float) -> OpcUaOptions | str:
    """The options of the browse session, or the reason there can be none."""
    user = {"username": cred.username, "password": cred.password} if cred.username else {}
    base: dict[str, Any] = {"endpoint": endpoint, "browse": (BrowseSpec(pattern="*"),),
                            "request_timeout_s": timeout, **user}
    token = "UserName" if cred.username else "Anonymous"
    secure = [e for e in endpoints if e.supported and e.policy != "None" and token in e.tokens]
    if cred.certificate is not None and cred.private_key is not None and secure:
        best = best_endpoint(secure)
        assert best is not None
        return validated({
            **base, "security_policy": best.policy, "security_mode": best.mode,
            "certificate": cred.certificate, "private_key": cred.private_key,
            "server_certificate": pinned})
    if any(e.policy == "None" and token in e.tokens for e in endpoints):
        return validated({**base, "security_policy": "None"})
    needs = []
    if not any(e.policy == "None" for e in endpoints) and cred.certificate is None:
        needs.append("a client certificate (make one with `medgw opcua cert`, have the"
                     " server trust it, then pass --certificate and --private-key)")
    if not any("Anonymous" in e.tokens for e in endpoints) and not cred.username:
        needs.append(f"a user (--username NAME, the password in ${PASSWORD_ENV} or"
                     " --password-env VAR)")
    if not secure and cred.certificate is not None:
        needs.append("a secure endpoint the driver supports (Basic256Sha256)")
    return "the tree was not browsed: the server needs " + "; and ".join(needs or [
        f"a {token} user token on an endpoint the driver supports"])


async def _browse(options: OpcUaOptions) -> BrowseSummary:
    client = await open_client(options)
    try:
        return await summarize(client, options.endpoint)
    finally:
        await close_client(client)


def _describe_session(options: OpcUaOptions) -> str:
    how = (f"{options.security_policy} {options.security_mode}" if options.secure
           else "security None")
    return f"{how}, {'user ' + options.username if options.username else 'anonymous'}"


def device_options(found: Survey, credentials: Credentials, server_cert: Path | None,
                   explicit_nodes: bool = False) -> dict[str, Any]:
    """The ``options`` of a config device for this server (security from what it offers)."""
    options: dict[str, Any] = {"endpoint": found.endpoint}
    chosen = found.chosen
    if chosen is None or chosen.policy == "None":
        options["security_policy"] = "None"
    else:
        options.update({
            "security_policy": chosen.policy, "security_mode": chosen.mode,
            "certificate": str(credentials.certificate or "pki/medgw-client.der"),
            "private_key": str(credentials.private_key or "pki/medgw-client.key"),
            "server_certificate": str(server_cert or "pki/server.der")})
    tokens = chosen.tokens if chosen is not None else ()
    if credentials.username or (tokens and "Anonymous" not in tokens and "UserName" in tokens):
        options["username"] = credentials.username or "CHANGE-ME"
        env = credentials.password.env if credentials.password is not None else None
        if credentials.password is not None and credentials.password.file is not None:
            options["password"] = {"file": str(credentials.password.file)}
        else:
            options["password"] = {"env": env or PASSWORD_ENV}
    summary = found.summary
    if explicit_nodes and summary is not None and summary.streams:
        options["nodes"] = [{"node_id": v.node_id, "stream": v.stream, "field": v.field}
                            for group in summary.streams.values() for v in group]
    else:
        patterns = summary.patterns if summary is not None and summary.patterns else ("*/*",)
        options["browse"] = [{"pattern": p} for p in patterns]
    return options
