"""``medgw config init``: a complete, commented gateway config that passes ``config check``.

The devices come from the blocks ``medgw discover ... --out`` wrote; the rest from
answers (prompts or flags). The text is validated by the same loader as ``config check``
before it is written, so a file that is written always loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.files import atomic_write


@dataclass(frozen=True)
class Answers:
    """What the integrator told ``config init`` (or its defaults)."""

    site: str
    gateway: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    influx_url: str = "http://127.0.0.1:8086"
    database: str = "medgw"
    spool_dir: Path | None = Path("/var/lib/medgw/spool")
    health_port: int = 9108


_TEMPLATE = """\
# medgw gateway config, written by `medgw config init`. Check it with
#   medgw config check {out}
# then try the devices without a broker: medgw run --test -c {out}
# Secrets are never written here: {{env: VARIABLE}} or {{file: /path}}.

site: {site}            # [A-Za-z0-9_-]: a topic level and an InfluxDB tag
gateway: {gateway}          # this edge box

# The broker the gateway publishes to (QoS 1). For TLS and a user add tls: and
# username: / password: {{env: MEDGW_MQTT_PASSWORD}}.
mqtt:
  host: {mqtt_host}
  port: {mqtt_port}

# Where the ingest (medgw ingest -c this file) writes. backend: v2 for InfluxDB 2.x/3.x.
influxdb:
  backend: v1
  url: "{influx_url}"
  database: {database}

# The disk spool: every batch is written here before it is published and kept until an
# ingest worker confirms InfluxDB holds it. Put it on persistent storage.
{spool}
# /health, /metrics and the status page, on loopback only.
health:
  port: {health_port}

# Batching: a message per stream every max_latency_ms or max_batch_samples.
publisher:
  max_batch_samples: 1000
  max_latency_ms: 250

# The devices. Each block came from `medgw discover`; options are the driver's
# (drivers/<driver>/README.md).
devices:
{devices}"""


def read_device_blocks(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Load the device entries of block files (a YAML list of devices, or one device)."""
    devices: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read device block: {err}", str(path)) from err
        entries = data if isinstance(data, list) else [data]
        for entry in entries:
            if not isinstance(entry, dict) or "driver" not in entry:
                raise ConfigError("a device block is a mapping with name, driver, options",
                                  str(path))
            devices.append(entry)
    names = [d.get("name") for d in devices]
    dupes = sorted({str(n) for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"two devices are called {', '.join(dupes)}: rename one (name:)")
    return devices


def render(answers: Answers, devices: list[dict[str, Any]], out: Path) -> str:
    """The config text (devices as YAML, the rest from the template)."""
    if not devices:
        devices = [{"name": "synthetic-test", "driver": "synthetic",
                    "options": {"streams": [{"name": "sine", "fields": 1, "rate_hz": 10}]}}]
    body = yaml.safe_dump(devices, sort_keys=False, default_flow_style=False, width=100)
    spool = (f"spool:\n  dir: {answers.spool_dir}\n" if answers.spool_dir is not None
             else "# spool:\n#   dir: /var/lib/medgw/spool   (unset: a temporary directory)\n")
    return _TEMPLATE.format(
        out=out, site=answers.site, gateway=answers.gateway, mqtt_host=answers.mqtt_host,
        mqtt_port=answers.mqtt_port, influx_url=answers.influx_url, database=answers.database,
        spool=spool, health_port=answers.health_port,
        devices="".join(f"  {line}\n" if line else "\n" for line in body.splitlines()))


def write_config(out: Path, answers: Answers, blocks: tuple[Path, ...],
                 force: bool = False) -> str:
    """Render, validate as ``config check`` would, write atomically; return a summary."""
    if out.exists() and not force:
        raise ConfigError("already exists: use --force to replace it", str(out))
    text = render(answers, read_device_blocks(blocks), out)
    loaded = parse_config(yaml.safe_load(text), str(out))  # the loader of `config check`
    try:
        atomic_write(out, text.encode("utf-8"), mode=0o640)
    except OSError as err:
        raise ConfigError(f"cannot write: {err}", str(out)) from err
    devices = ", ".join(f"{d.name} ({d.driver})" for d in loaded.config.devices)
    return (f"wrote {out}: site {answers.site}, gateway {answers.gateway}, devices {devices}\n"
            f"next: medgw config check {out} && medgw run --test -c {out}")
