"""MQTT topic names of the wire contract (DESIGN.md "Wire contract")."""

from __future__ import annotations

from gateway.model import StreamSpec


def data_topic(prefix: str, stream: StreamSpec) -> str:
    """Return the MQTT topic of a stream's data."""
    return f"{prefix}/{stream.site}/{stream.device}/{stream.stream}"


def bundle_topic(prefix: str, site: str, device: str) -> str:
    """Return the MQTT topic of a device's bundles (several streams in one message).

    One level above the streams' topics, so it never equals a data or a status topic.
    """
    return f"{prefix}/{site}/{device}"


def status_topic(prefix: str, site: str, gateway: str) -> str:
    """Return the retained birth/death topic of a gateway."""
    return f"{prefix}/{site}/{gateway}/status"


def ingest_status_topic(prefix: str, worker: str) -> str:
    """Return the retained topic on which an ingest worker announces itself.

    Control topics live beside the data prefix (``medgw/v1_ctl/...``), never under it, so
    data subscribers (``medgw/v1/#``) see only data and gateway status messages.
    """
    return f"{prefix}_ctl/ingest/{worker}/status"


def commit_topic(prefix: str, site: str, gateway: str) -> str:
    """Return the topic on which ingest workers confirm a gateway's records."""
    return f"{prefix}_ctl/commit/{site}/{gateway}"
