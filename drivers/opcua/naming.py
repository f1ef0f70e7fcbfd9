"""Stream and field names from OPC UA browse names, deterministic and collision-free.

A browse name is free text (``carrier 1``, ``carrier,1``, emoji, ``Quality``); a stream
name is an MQTT topic level and a field name an InfluxDB field key. The rules:

* A name that survives unchanged is used as is: a stream ``carrier-07``; a field in
  snake case (``PayloadTemperature``, ``Payload Temperature`` -> ``payload_temperature``).
* A name that had to be changed (characters dropped or replaced, nothing left, a name the
  ingest reserves) gets a suffix: the first 6 hex digits of the SHA-256 of the original
  browse name. ``carrier 1`` -> ``carrier_1-8a1f3c``, an emoji -> ``unnamed-4be0a2``,
  field ``Quality`` -> ``quality_`` (gateway.model.map_field_name, as in every driver).
  The suffix depends on that name only, so it is the same on every run, after every
  server restart and whatever else the server holds.
* Names that still collide (the same browse name in two folders, ``PayloadTemperature``
  and ``payload_temperature`` in one carrier) are ordered by their browse path; the first
  keeps the name, every other gets the hash of its whole browse path as suffix.

Every changed name is returned as a :class:`Renamed` note, which the driver logs once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from drivers.opcua.mapping import snake_case, topic_safe
from gateway.model import (  # the one rule (validate_stream)
    RESERVED_FIELDS,
    RESERVED_STREAMS,
    map_field_name,
)

__all__ = ["RESERVED_FIELDS", "RESERVED_STREAMS", "Renamed", "disambiguate", "field_name",
           "field_suffix", "short_hash", "stream_name", "stream_suffix"]
_EXACT_FIELD = re.compile(r"[A-Za-z0-9_ -]+")  # spaces and hyphens separate words
_EXACT_STREAM = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_NAME = 120  # long browse names are cut (with a suffix): topic levels, field keys stay short

T = TypeVar("T")


@dataclass(frozen=True)
class Renamed:
    """One browse name that was changed to become a stream or field name, and why."""

    path: str
    name: str
    reason: str


def short_hash(text: str) -> str:
    """Return 6 hex digits of the SHA-256 of ``text`` (stable across runs and machines)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]


def stream_name(browse_name: str) -> tuple[str, str | None]:
    """Map an object's browse name to a stream name; the reason when it had to change."""
    if browse_name in RESERVED_STREAMS or browse_name.lower() in RESERVED_STREAMS:
        return f"{browse_name.lower()}-{short_hash(browse_name)}", "reserved stream name"
    if browse_name.endswith(".events"):
        base = browse_name[:-len(".events")] or "unnamed"
        return f"{topic_safe(base)}_events-{short_hash(browse_name)}", "ends in .events"
    if _EXACT_STREAM.fullmatch(browse_name) and len(browse_name) <= _MAX_NAME:
        return browse_name, None
    base = topic_safe(browse_name)[:_MAX_NAME]
    reason = "no usable character" if base == "unnamed" else "characters replaced"
    return f"{base}-{short_hash(browse_name)}", reason


def field_name(browse_name: str) -> tuple[str, str | None]:
    """Map a variable's browse name to a field name; the reason when it had to change."""
    base = snake_case(browse_name)
    if base in RESERVED_FIELDS:
        return map_field_name(base), "reserved field name"
    emptied = base == "value" and browse_name.strip("_").lower() != "value"
    if _EXACT_FIELD.fullmatch(browse_name) and not emptied and len(base) <= _MAX_NAME:
        return base, None
    reason = "no usable character" if emptied else "characters replaced"
    return f"{base[:_MAX_NAME]}_{short_hash(browse_name)}", reason


def disambiguate(items: Sequence[T], name_of: Callable[[T], str], path_of: Callable[[T], str],
                 suffix: Callable[[str, str], str]) -> tuple[list[str], list[Renamed]]:
    """Give items sharing a name distinct names: the first by path keeps it.

    ``suffix(name, path)`` makes the new name of every other. Items with the same path
    are one thing (the same node seen twice) and share the name. Returns the names in the
    order of ``items`` and a note per renamed path.
    """
    names = [name_of(item) for item in items]
    groups: dict[str, set[str]] = {}
    for item, name in zip(items, names, strict=True):
        groups.setdefault(name, set()).add(path_of(item))
    taken = set(groups)
    moved: dict[tuple[str, str], str] = {}
    notes: list[Renamed] = []
    for name, paths in groups.items():
        first, *others = sorted(paths)
        for path in others:
            new = suffix(name, path)
            while new in taken:  # a hash collision with another name: extend the hash
                new = suffix(new, path)
            taken.add(new)
            moved[(name, path)] = new
            notes.append(Renamed(path, new, f"{name!r} is also the name of {first}"))
    out = [moved.get((name, path_of(item)), name)
           for item, name in zip(items, names, strict=True)]
    return out, notes


def stream_suffix(name: str, path: str) -> str:
    """Suffix a colliding stream name with the hash of the object's browse path."""
    return f"{name}-{short_hash(path)}"


def field_suffix(name: str, path: str) -> str:
    """Suffix a colliding field name with the hash of the variable's browse path."""
    return f"{name}_{short_hash(path)}"
