"""The fast PublishResponse decode agrees with asyncua's, and leaves to it what it does not know.

Responses are encoded with asyncua's own encoder (what an asyncua server sends) and
decoded both ways; every field the driver reads must be equal.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from drivers.opcua.fastpublish import FastDataChange, decode
from drivers.opcua.handler import stamp_ns

NOW = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)


def dv(value: Any, vtype: ua.VariantType, status: int = 0, source: datetime | None = NOW,
       server: datetime | None = NOW) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status),
                        SourceTimestamp=source, ServerTimestamp=server)


def response(*notifications: Any, acks: list[int] | None = None) -> bytes:
    msg = ua.NotificationMessage(SequenceNumber=7, PublishTime=NOW,
                                 NotificationData=list(notifications))
    resp = ua.PublishResponse()
    resp.ResponseHeader.RequestHandle = 42
    resp.Parameters = ua.PublishResult(SubscriptionId=3,
                                       AvailableSequenceNumbers=acks or [5, 6, 7],
                                       MoreNotifications=False, NotificationMessage=msg,
                                       Results=[ua.StatusCode(0)])
    return bytes(struct_to_binary(resp))


def changes(*values: ua.DataValue) -> ua.DataChangeNotification:
    return ua.DataChangeNotification(MonitoredItems=[
        ua.MonitoredItemNotification(ClientHandle=i + 1, Value=v) for i, v in enumerate(values)])


def reference(raw: bytes) -> ua.PublishResponse:
    return struct_from_binary(ua.PublishResponse, Buffer(raw))


def test_scalar_numbers_decode_as_asyncua_decodes_them() -> None:
    values = [dv(1.5, ua.VariantType.Double), dv(2.25, ua.VariantType.Float),
              dv(True, ua.VariantType.Boolean), dv(-7, ua.VariantType.Int32),
              dv(2**40, ua.VariantType.Int64), dv(65535, ua.VariantType.UInt16),
              dv(-3, ua.VariantType.SByte), dv(200, ua.VariantType.Byte),
              dv(-300, ua.VariantType.Int16), dv(2**32 - 1, ua.VariantType.UInt32),
              dv(2**64 - 1, ua.VariantType.UInt64),
              dv(None, ua.VariantType.Null, status=ua.StatusCodes.BadSensorFailure),
              dv(4.0, ua.VariantType.Double, status=0x40000000, source=None),
              dv(5.0, ua.VariantType.Double, source=datetime(1601, 1, 1, tzinfo=timezone.utc),
                 server=NOW + timedelta(seconds=1))]
    raw = response(changes(*values), changes(values[0]))
    fast, ref = decode(raw), reference(raw)
    assert fast is not None
    assert fast.Parameters.SubscriptionId == ref.Parameters.SubscriptionId == 3
    assert fast.Parameters.AvailableSequenceNumbers == [5, 6, 7]
    assert fast.Parameters.MoreNotifications is False
    fm, rm = fast.Parameters.NotificationMessage, ref.Parameters.NotificationMessage
    assert fm.SequenceNumber == rm.SequenceNumber == 7
    assert fm.PublishTime == rm.PublishTime
    assert [c.value for c in fast.Parameters.Results] == [0]
    assert len(fm.NotificationData) == len(rm.NotificationData) == 2
    for got, want in zip(fm.NotificationData, rm.NotificationData, strict=True):
        assert isinstance(got, FastDataChange)
        items = want.MonitoredItems
        assert got.handles == [i.ClientHandle for i in items]
        assert got.statuses == [i.Value.StatusCode.value for i in items]
        assert got.values == [i.Value.Value.Value for i in items]
        assert [type(v) for v in got.values] == [type(i.Value.Value.Value) for i in items]
        assert got.source_ns == [stamp_ns(i.Value.SourceTimestamp) for i in items]
        assert got.server_ns == [stamp_ns(i.Value.ServerTimestamp) for i in items]
    assert fm.NotificationData[0].source_ns[-1] is None  # 1601: not a real clock


def test_a_keepalive_has_no_notification_data() -> None:
    fast = decode(response())
    assert fast is not None
    assert fast.Parameters.NotificationMessage.NotificationData == []
    assert fast.Parameters.SubscriptionId == 3


@pytest.mark.parametrize("notification", [
    changes(dv("text", ua.VariantType.String)),
    changes(dv([1.0, 2.0], ua.VariantType.Double)),
    ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout)),
    changes(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=NOW,
                         SourcePicoseconds=5)),
], ids=["string", "array", "status change", "picoseconds"])
def test_what_it_does_not_know_is_left_to_asyncua(notification: Any) -> None:
    raw = response(changes(dv(1.0, ua.VariantType.Double)), notification)
    assert decode(raw) is None
    assert len(reference(raw).Parameters.NotificationMessage.NotificationData) == 2


def test_a_truncated_or_foreign_message_is_left_to_asyncua() -> None:
    raw = response(changes(dv(1.0, ua.VariantType.Double)))
    assert decode(raw[:-3]) is None
    assert decode(raw + b"\x00") is None
    assert decode(b"\x01\x00\x00\x00" + raw[4:]) is None
