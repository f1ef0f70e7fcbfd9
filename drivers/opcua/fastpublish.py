"""A fast decode of PublishResponse for data changes of scalar numbers (an asyncua override).

asyncua decodes every publish response field by field into dataclasses: per monitored
item a MonitoredItemNotification, a DataValue, a Variant (with type inference), a
StatusCode and two datetimes. At the floor's 4,500 changes/s that decode was the largest
share of the gateway's CPU. This module parses the common case, a response whose
notifications are all DataChangeNotifications of scalar Boolean/integer/float values
without picoseconds and without diagnostics, with ``struct`` straight into flat lists
(``FastDataChange``): no object per item. Anything else (events, status changes,
strings, arrays, diagnostics, an unknown encoding) is left to asyncua's own decoder,
unchanged, for the whole response.

It is installed per client by replacing ``UaSession.publish`` on the client's session
instance (``install``), the one method whose return value asyncua's publish loop reads
(``Parameters.SubscriptionId``, ``NotificationMessage.SequenceNumber`` and whether
``NotificationData`` is empty). Tested against asyncua's encoder/decoder in
tests/unit/drivers/opcua/test_fastpublish.py. asyncua 2.1 (``pyproject.toml``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

_PUBLISH_RESPONSE = bytes((0x01, 0x00)) + struct.pack(
    "<H", ua.ObjectIds.PublishResponse_Encoding_DefaultBinary)
_DATA_CHANGE = bytes((0x01, 0x00)) + struct.pack(
    "<H", ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
_UNIX_EPOCH_US = 11_644_473_600_000_000  # µs from 1601-01-01 to 1970-01-01
_MIN_NS = 946_684_800 * 1_000_000_000  # the same plausibility window as handler.stamp_ns
_MAX_NS = 2**63 - 2**40
# Variant type id -> (struct format, size) of the scalars decoded here
_SCALARS: dict[int, tuple[struct.Struct, int]] = {
    type_id: (struct.Struct("<" + fmt), struct.calcsize("<" + fmt))
    for type_id, fmt in {1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q",
                         9: "Q", 10: "f", 11: "d"}.items()}
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_HEADER = struct.Struct("<qII")  # Timestamp, RequestHandle, ServiceResult


class _Unsupported(Exception):
    """The response has something this decoder leaves to asyncua."""


@dataclass(slots=True)
class FastDataChange:
    """One DataChangeNotification as parallel lists (one entry per monitored item)."""

    handles: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # StatusCode value, 0 when absent
    values: list[Any] = field(default_factory=list)  # bool/int/float; None: no value
    source_ns: list[int | None] = field(default_factory=list)  # None: absent/implausible
    server_ns: list[int | None] = field(default_factory=list)


def filetime_ns(ticks: int) -> int | None:
    """OPC UA DateTime (100 ns ticks since 1601) -> ns since 1970 at µs resolution, as
    asyncua's datetime would give; None outside the plausible window."""
    ns = (ticks // 10 - _UNIX_EPOCH_US) * 1000
    return ns if _MIN_NS < ns < _MAX_NS else None


def _skip_node_id(raw: bytes, pos: int) -> int:
    kind = raw[pos]
    if kind == 0x00:
        return pos + 2
    if kind == 0x01:
        return pos + 4
    if kind == 0x02:
        return pos + 7
    raise _Unsupported(f"node id encoding {kind:#x}")


def _no_diagnostics(raw: bytes, pos: int) -> int:
    """Skip an array of DiagnosticInfo that must all be empty."""
    (count,) = _I32.unpack_from(raw, pos)
    pos += 4
    for _ in range(max(0, count)):
        if raw[pos] != 0:
            raise _Unsupported("diagnostics")
        pos += 1
    return pos


def _data_change(raw: bytes, pos: int, end: int) -> FastDataChange:
    """Decode the body of a DataChangeNotification (raw[pos:end])."""
    note = FastDataChange()
    handles, statuses, values = note.handles, note.statuses, note.values
    sources, servers = note.source_ns, note.server_ns
    (count,) = _I32.unpack_from(raw, pos)
    pos += 4
    u32, i64 = _U32.unpack_from, _I64.unpack_from
    for _ in range(max(0, count)):
        handles.append(u32(raw, pos)[0])
        mask = raw[pos + 4]
        pos += 5
        if mask & 0x30:  # picoseconds: asyncua's field order differs from the spec's
            raise _Unsupported("picoseconds")
        value = None
        if mask & 0x01:
            vtype = raw[pos]
            pos += 1
            if vtype & 0xC0:
                raise _Unsupported("array variant")
            if vtype:
                scalar = _SCALARS.get(vtype)
                if scalar is None:
                    raise _Unsupported(f"variant type {vtype}")
                value = scalar[0].unpack_from(raw, pos)[0]
                pos += scalar[1]
        values.append(value)
        if mask & 0x02:
            statuses.append(u32(raw, pos)[0])
            pos += 4
        else:
            statuses.append(0)
        if mask & 0x04:
            sources.append(filetime_ns(i64(raw, pos)[0]))
            pos += 8
        else:
            sources.append(None)
        if mask & 0x08:
            servers.append(filetime_ns(i64(raw, pos)[0]))
            pos += 8
        else:
            servers.append(None)
    pos = _no_diagnostics(raw, pos)
    if pos != end:
        raise _Unsupported("body length")
    return note


def _notifications(raw: bytes, pos: int) -> tuple[list[Any], int]:
    (count,) = _I32.unpack_from(raw, pos)
    pos += 4
    out: list[Any] = []
    for _ in range(max(0, count)):
        if raw[pos:pos + 4] != _DATA_CHANGE or raw[pos + 4] != 0x01:
            raise _Unsupported("not a data change")
        (length,) = _I32.unpack_from(raw, pos + 5)
        start = pos + 9
        out.append(_data_change(raw, start, start + length))
        pos = start + length
    return out, pos


def decode(raw: bytes) -> ua.PublishResponse | None:
    """Decode a PublishResponse of scalar data changes; None when asyncua must do it."""
    try:
        return _decode(raw)
    except (_Unsupported, struct.error, IndexError):
        return None


def _decode(raw: bytes) -> ua.PublishResponse:
    if raw[:4] != _PUBLISH_RESPONSE:
        raise _Unsupported("type id")
    _, handle, service_result = _HEADER.unpack_from(raw, 4)
    pos = 20
    if service_result != 0 or raw[pos] != 0:
        raise _Unsupported("service result or diagnostics")
    (strings,) = _I32.unpack_from(raw, pos + 1)
    if strings > 0:
        raise _Unsupported("string table")
    pos = _skip_node_id(raw, pos + 5)
    if raw[pos] != 0:
        raise _Unsupported("additional header")
    (subscription_id,) = _U32.unpack_from(raw, pos + 1)
    (available,) = _I32.unpack_from(raw, pos + 5)
    pos += 9
    sequence_numbers = list(struct.unpack_from(f"<{max(0, available)}I", raw, pos))
    pos += 4 * max(0, available)
    more = bool(raw[pos])
    sequence = _U32.unpack_from(raw, pos + 1)[0]
    publish_time = _I64.unpack_from(raw, pos + 5)[0]
    data, pos = _notifications(raw, pos + 13)
    (results,) = _I32.unpack_from(raw, pos)
    pos += 4
    codes = [ua.StatusCode(v) for v in struct.unpack_from(f"<{max(0, results)}I", raw, pos)]
    pos = _no_diagnostics(raw, pos + 4 * max(0, results))
    if pos != len(raw):
        raise _Unsupported("trailing bytes")
    message = ua.NotificationMessage(SequenceNumber=sequence,
                                     PublishTime=ua.win_epoch_to_datetime(publish_time),
                                     NotificationData=data)
    response = ua.PublishResponse()
    response.ResponseHeader.RequestHandle = handle
    response.Parameters = ua.PublishResult(
        SubscriptionId=subscription_id, AvailableSequenceNumbers=sequence_numbers,
        MoreNotifications=more, NotificationMessage=message, Results=codes)
    return response


def install(client: Client) -> None:
    """Make this client's session decode publish responses with ``decode`` first."""
    session = client.uaclient.session

    async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        """UaSession.publish, with the fast decode (asyncua's decoder as the fallback)."""
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        raw = bytes(data)
        fast = decode(raw)
        if fast is not None:
            return fast
        try:
            return struct_from_binary(ua.PublishResponse, Buffer(raw))
        except Exception as ex:  # as UaSession.publish: the loop skips it and goes on
            session.logger.exception("Error parsing notification from server")
            raise UaStructParsingError from ex

    session.publish = publish  # type: ignore[method-assign]
