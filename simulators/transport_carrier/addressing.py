"""The carrier simulator's address space: node ids, values with timestamps, units.

Node ids are strings, ``ns=<idx>;s=carrier-01.Battery``, so explicit node ids survive a
restart; units are OPC UA EUInformation with UNECE codes (Part 8, 5.6.3).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from asyncua import Node, ua

from simulators.transport_carrier.fleet import VariableDef

NAMESPACE_URI = "urn:medgw:sim:transport-carrier"
EU_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
VARIANT_TYPES = {
    "double": ua.VariantType.Double,
    "bool": ua.VariantType.Boolean,
    "int32": ua.VariantType.Int32,
    "string": ua.VariantType.String,
}
"""VariableDef.kind -> OPC UA variant type."""


def sid(identifier: str, ns: int) -> ua.NodeId:
    """Return the string node id ``ns=<ns>;s=<identifier>``."""
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def data_value(variant: ua.Variant, status: int, source: datetime,
               server_time: datetime) -> ua.DataValue:
    """Return a DataValue with a status and both timestamps."""
    stamps: Any = (source, server_time)  # asyncua types these as its DateTime subclass
    return ua.DataValue(variant, ua.StatusCode(ua.UInt32(status)), SourceTimestamp=stamps[0],
                        ServerTimestamp=stamps[1])


def ns_to_datetime(ns: int) -> datetime:
    """Convert integer ns since the Unix epoch to an aware UTC datetime (µs resolution)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def unece_unit_id(code: str) -> int:
    """Return the OPC UA UnitId of a UNECE common code (Part 8, 5.6.3)."""
    unit_id = 0
    for char in code:
        unit_id = (unit_id << 8) | ord(char)
    return unit_id


async def add_variable(obj: Node, ns: int, carrier: str, var: VariableDef, value: Any) -> Node:
    """Add one carrier variable (description, units) under ``obj``; return its node."""
    node = await obj.add_variable(sid(f"{carrier}.{var.name}", ns),
                                  ua.QualifiedName(var.name, ns),
                                  ua.Variant(value, VARIANT_TYPES[var.kind]))
    description = var.description + (f" [{var.unit}]" if var.unit else "")
    await node.write_attribute(ua.AttributeIds.Description,
                               ua.DataValue(ua.Variant(ua.LocalizedText(description))))
    if var.unece is not None:
        eu = ua.EUInformation(NamespaceUri=EU_NAMESPACE, UnitId=unece_unit_id(var.unece),
                              DisplayName=ua.LocalizedText(var.unit),
                              Description=ua.LocalizedText(var.description))
        await node.add_property(sid(f"{carrier}.{var.name}.EngineeringUnits", ns),
                                ua.QualifiedName("EngineeringUnits", 0), eu,
                                datatype=ua.NodeId(ua.Int32(ua.ObjectIds.EUInformation)))
    return node
