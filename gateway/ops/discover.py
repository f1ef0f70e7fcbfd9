"""``medgw discover opcua`` and ``medgw opcua cert``: what to print, and the device block."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from drivers.opcua import (
    PASSWORD_ENV,
    TRUST_LOCATIONS,
    CertificateFiles,
    CertificateInfo,
    Credentials,
    Survey,
    device_options,
    survey_server,
)
from gateway.config import SecretRef
from gateway.files import atomic_write


def certificate_lines(info: CertificateInfo, indent: str = "  ") -> list[str]:
    """Subject, validity, thumbprint, URI and key of a certificate, one per line."""
    return [f"{indent}subject:     {info.subject}",
            f"{indent}valid:       {info.not_before:%Y-%m-%d %H:%M} to"
            f" {info.not_after:%Y-%m-%d %H:%M} UTC",
            f"{indent}thumbprint:  {info.thumbprint} (SHA-1, as UaExpert shows it)",
            f"{indent}app URI:     {info.application_uri or '(none in the SAN)'}",
            f"{indent}key:         RSA {info.key_bits}, {info.signature_hash}"
            f"{', self-signed' if info.self_signed else ''}"]


def cert_report(files: CertificateFiles) -> str:
    """What ``medgw opcua cert`` prints: the files, the certificate, where servers trust it."""
    lines = ["wrote the gateway's OPC UA application certificate:",
             f"  certificate: {files.certificate} (DER; PEM copy {files.certificate_pem})",
             f"  private key: {files.private_key} (PEM, mode 0600: keep it on this box)",
             *certificate_lines(files.info),
             "", "Have the server trust it (copy the .der, or the .pem, there):"]
    lines += [f"  {server:<26} {where}" for server, where in TRUST_LOCATIONS]
    lines += ["", "Many servers reject an unknown certificate on the first connect and keep it"
              " in a 'rejected' folder: move it to 'trusted', or trust it in the server's UI.",
              "", "In the device's options:",
              f"  certificate: {files.certificate}",
              f"  private_key: {files.private_key}",
              f"  application_uri: {files.info.application_uri}"]
    return "\n".join(lines)


def run_survey(endpoint: str, credentials: Credentials, save_cert: Path | None,
               timeout: float, browse: bool = True) -> Survey:
    """Run the OPC UA survey on its own event loop."""
    return asyncio.run(survey_server(endpoint, credentials, save_cert, timeout, browse))


def credentials(certificate: Path | None, private_key: Path | None, username: str | None,
                password_env: str | None, password_file: Path | None) -> Credentials:
    """The credentials from the command line (a password only by reference, never typed)."""
    password = None
    if password_file is not None:
        password = SecretRef(file=password_file)
    elif username is not None:
        password = SecretRef(env=password_env or PASSWORD_ENV)
    return Credentials(certificate, private_key, username, password)


def survey_report(found: Survey) -> str:
    """Endpoints, server certificate and browse summary, as text."""
    lines = [f"OPC UA server {found.endpoint}", "", "endpoints:"]
    for e in found.endpoints:
        mark = "*" if e == found.chosen else " "
        note = "" if e.supported else "  (not supported by the driver)"
        lines.append(f" {mark} {e.policy:<22} {e.mode:<15} users: {', '.join(e.tokens) or '-'}"
                     f"  level {e.security_level}{note}")
    lines.append("   (* = the one the device block uses)")
    if found.server_certificate is not None:
        lines += ["", "server certificate:", *certificate_lines(found.server_certificate)]
        if found.saved_certificate is not None:
            lines.append(f"  saved to:    {found.saved_certificate} (DER, the form"
                         " server_certificate pins)")
    lines += ["", *summary_lines(found)]
    return "\n".join(lines)


def summary_lines(found: Survey) -> list[str]:
    """The browse summary: streams as the driver would make them, with types and units."""
    summary = found.summary
    if summary is None:
        return [f"browse: {found.note}"]
    lines = [f"browse (session {found.browsed_with}): {len(summary.streams)} stream(s) from"
             f" pattern(s) {', '.join(summary.patterns) or '-'}"]
    for stream, variables in summary.streams.items():
        lines.append(f"  stream {stream} ({len(variables)} fields)")
        lines += [f"    {v.field:<28} {v.data_type:<10} {v.unit or '-':<10} {v.path}"
                  for v in variables]
    if summary.skipped:
        shown = ", ".join(f"{p} ({t})" for p, t in summary.skipped[:8])
        more = f" and {len(summary.skipped) - 8} more" if len(summary.skipped) > 8 else ""
        lines.append(f"  not numeric, not monitored: {shown}{more}")
    lines += [f"  renamed: {r}" for r in summary.renamed]
    if summary.truncated:
        lines.append("  (the walk stopped early: the tree is larger than it reads)")
    return lines


def device_block(found: Survey, name: str, credentials: Credentials,
                 server_cert: Path | None, explicit_nodes: bool) -> dict[str, Any]:
    """A config device entry (name, driver, options) for this server."""
    return {"name": name, "driver": "opcua",
            "options": device_options(found, credentials, server_cert, explicit_nodes)}


def device_yaml(device: dict[str, Any], found: Survey | None = None) -> str:
    """The device entry as YAML, with comments saying what to check."""
    head = ["# medgw device block (under devices: in the gateway config)"]
    options = device["options"]
    if options.get("security_policy") != "None":
        head.append("# certificate/private_key: `medgw opcua cert`; the server must trust it")
    if "password" in options:
        head.append(f"# the password is read from ${options['password'].get('env', '')}"
                    " (or the file) at each connect, never written here")
    if found is not None and found.summary is None:
        head.append("# the tree was not browsed (see above): the browse pattern is a guess")
    body = yaml.safe_dump([device], sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(head) + "\n" + body


def write_device_yaml(path: Path, text: str) -> None:
    """Write the device block file that ``medgw config init --device`` reads."""
    atomic_write(path, text.encode("utf-8"))
