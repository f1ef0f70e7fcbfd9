"""The ingest's receive side: one MQTT message (a stream's payload or a device bundle) ->
line protocol, the batches to track and the record key to confirm.

Runs in the transport's thread (WriteLoop.receive). A bundle is decoded part by part: a bad
part is noted alone (quarantined by the writer, the others written); a foreign or misrouted
part refuses the whole message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.errors import PayloadError
from gateway.model import SampleBatch
from gateway.server.lineproto import encode_batch
from gateway.wire.bundle import bundle_key, decode_bundle, is_bundle
from gateway.wire.payload import Decoded, decode
from gateway.wire.topics import bundle_topic, data_topic

log = logging.getLogger("medgw.ingest")


@dataclass(slots=True)
class Pending:
    """One received message (a single stream's payload or a bundle) on its way through."""

    mid: int
    qos: int
    topic: str
    payload: bytes  # its head only (what a dead letter keeps) once decoded
    generation: int = 0  # the connection it arrived on
    payload_bytes: int = 0  # the size as received
    lines: bytes = b""  # every good part's lines, in part order
    n_lines: int = 0
    batches: tuple[SampleBatch, ...] = ()  # the good parts, until prepared
    written: tuple[tuple[str, int], ...] = ()  # once prepared: (stream key, new samples)
    key: str = ""  # the record key to confirm (stream or bundle key); "" = nothing to confirm
    first_seq: int = 0  # of the first part: the record's other half of its identity
    gateway: str = ""
    epoch: int = 0
    site: str = ""
    size: int = 0  # bytes counted against the inbox budget
    error: str | None = None  # the whole message cannot be stored
    part_errors: tuple[str, ...] = ()  # bad parts of a bundle, quarantined (the rest written)


def decode_message(item: Pending, prefix: str) -> None:
    """Decode a data message into ``item`` (batches, lines, record key) or set its error."""
    try:
        if is_bundle(item.payload):
            _decode_bundle(item, prefix)
        else:
            _decode_single(item, prefix)
    except PayloadError as err:
        item.error = str(err)
    except Exception as err:  # a bug, not the sender's fault: quarantine, keep going
        log.exception("unexpected error decoding a message on %s", item.topic[:200])
        item.error = f"internal error: {type(err).__name__}: {err}"


def _decode_single(item: Pending, prefix: str) -> None:
    gateway, epoch, batch = decode(item.payload)
    expected = data_topic(prefix, batch.stream)
    if item.topic != expected:
        raise PayloadError(f"topic {item.topic[:200]} does not match payload stream "
                           f"{expected}")
    lines, n_lines = encode_batch(batch)
    _accept(item, gateway, epoch, (batch,), lines, n_lines, batch.stream.key)


def _decode_bundle(item: Pending, prefix: str) -> None:
    """Decode a bundle; a bad part is noted alone, a foreign or misrouted one refuses all."""
    parts = decode_bundle(item.payload)
    good: list[tuple[int, Decoded]] = []
    errors: list[str] = []
    for index, part in enumerate(parts):
        if isinstance(part, PayloadError):
            errors.append(f"bundle part {index} of {len(parts)}: {part}")
        else:
            good.append((index, part))
    if not good:
        raise PayloadError(f"bundle: none of its {len(parts)} parts decoded: "
                           + "; ".join(errors)[:1500])
    gateway, epoch, first = good[0][1]
    site, device = first.stream.site, first.stream.device
    for index, part in good[1:]:
        stream = part.batch.stream
        if (part.gateway, part.epoch, stream.site, stream.device) != \
                (gateway, epoch, site, device):
            raise PayloadError(
                f"bundle: part {index} is {part.gateway[:200]}/{part.epoch} "
                f"{stream.key[:300]}, part {good[0][0]} {gateway[:200]}/{epoch} "
                f"{first.stream.key[:300]}: every part must share site, device, gateway "
                "and epoch")
    expected = bundle_topic(prefix, site, device)
    if item.topic != expected:
        raise PayloadError(f"topic {item.topic[:200]} does not match the bundle's device "
                           f"{expected}")
    batches: list[SampleBatch] = []
    chunks: list[bytes] = []
    n_lines = 0
    for index, part in good:
        try:
            lines, n = encode_batch(part.batch)
        except PayloadError as err:
            errors.append(f"bundle part {index} of {len(parts)}: {err}")
            continue
        batches.append(part.batch)
        chunks.append(lines)
        n_lines += n
    if not batches:
        raise PayloadError("bundle: no part can be stored: " + "; ".join(errors)[:1500])
    # The record key is rebuilt from the parts stored, in order: the publisher's own key
    # whenever every part decoded. With a broken part it cannot be (that part's stream
    # and count are unknown here), so the confirmation matches no record and the
    # publisher sends the record again later: its good parts are duplicates here, the
    # broken part is quarantined again. The publisher cannot do better with a record
    # whose part is broken; the dead letters say which part and why.
    key = bundle_key((batch.stream.key, len(batch)) for batch in batches)
    _accept(item, gateway, epoch, tuple(batches), b"".join(chunks), n_lines, key)
    item.part_errors = tuple(errors)


def _accept(item: Pending, gateway: str, epoch: int, batches: tuple[SampleBatch, ...],
            lines: bytes, n_lines: int, key: str) -> None:
    item.gateway, item.epoch, item.batches = gateway, epoch, batches
    item.lines, item.n_lines, item.key = lines, n_lines, key
    item.site, item.first_seq = batches[0].stream.site, batches[0].first_seq
