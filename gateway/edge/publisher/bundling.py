"""Bundling: a device's pending batches become one spool record and one MQTT message.

At every scan the publisher reads every ring of a device that has pending samples,
encodes each batch as an ordinary v1 payload (a part) and joins the parts into one bundle
(gateway/wire/bundle.py), so a device costs one spool write, one publish, one PUBACK and
one ingest write per scan however many streams it has. The record's key names every part
and its size (``bundle_key``): acknowledgements, drops and confirmations are counted per
stream from it, also after a restart. A device with a single part sends the plain payload
on the stream's own topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.model import StreamSpec
from gateway.ring import StreamRing
from gateway.wire.bundle import bundle_key, encode_bundle
from gateway.wire.topics import bundle_topic, data_topic


@dataclass(slots=True)
class Part:
    """One encoded batch of one stream, waiting in a bundle."""

    ring: StreamRing
    first_seq: int
    n: int
    payload: bytes


@dataclass(slots=True)
class Record:
    """What the spool stores for one message: key, topic, payload, first seq, samples."""

    key: str
    topic: str
    payload: bytes
    first_seq: int
    n: int


@dataclass
class Bundle:
    """The parts of one device collected in one scan, closed at ``max_bytes``."""

    max_bytes: int
    parts: list[Part] = field(default_factory=list)
    size: int = 0

    def add(self, part: Part) -> bool:
        """Add a part; True when the bundle is full and should be spooled now."""
        self.parts.append(part)
        self.size += len(part.payload)
        return self.size >= self.max_bytes

    def record(self, prefix: str) -> Record:
        """Return the spool record of the parts (the plain payload for a single part)."""
        first = self.parts[0]
        spec = first.ring.stream
        if len(self.parts) == 1:
            return Record(spec.key, data_topic(prefix, spec), first.payload, first.first_seq,
                          first.n)
        return Record(bundle_key((p.ring.stream.key, p.n) for p in self.parts),
                      bundle_topic(prefix, spec.site, spec.device),
                      encode_bundle([p.payload for p in self.parts]), first.first_seq,
                      sum(p.n for p in self.parts))


def by_device(rings: Iterable[StreamRing]) -> list[list[StreamRing]]:
    """Group rings by (site, device), in the order the devices first appear."""
    groups: dict[tuple[str, str], list[StreamRing]] = {}
    for ring in rings:
        spec: StreamSpec = ring.stream
        groups.setdefault((spec.site, spec.device), []).append(ring)
    return list(groups.values())

