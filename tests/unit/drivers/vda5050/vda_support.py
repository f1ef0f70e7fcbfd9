"""Hand-written VDA 5050 messages for the driver's unit tests (from the specification)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from drivers.vda5050.fleet import Fleet
from drivers.vda5050.options import Vda5050Options
from gateway.driver import DriverContext
from gateway.metrics import GatewayMetrics
from gateway.ring import RingStore

STAMP = "2026-12-01T10:00:00.000Z"
STAMP_NS = 1_796_119_200 * 1_000_000_000


def state_v2(header_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """A complete 2.0 state (every required field)."""
    doc: dict[str, Any] = {
        "headerId": header_id, "timestamp": STAMP, "version": "2.0.0",
        "manufacturer": "acme", "serialNumber": "agv-1", "orderId": "", "orderUpdateId": 0,
        "lastNodeId": "", "lastNodeSequenceId": 0, "nodeStates": [], "edgeStates": [],
        "driving": True, "paused": False, "operatingMode": "AUTOMATIC",
        "agvPosition": {"x": 1.5, "y": -2.0, "theta": 0.5, "mapId": "L1",
                        "positionInitialized": True},
        "velocity": {"vx": 1.0, "vy": 0.0, "omega": 0.1},
        "actionStates": [], "batteryState": {"batteryCharge": 80.0, "charging": False,
                                             "batteryVoltage": 25.5},
        "errors": [], "safetyState": {"eStop": "NONE", "fieldViolation": False},
        "loads": [{"loadId": "rack-1"}], "distanceSinceLastNode": 0.25,
    }
    doc.update(overrides)
    return doc


def state_v3(header_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """A complete 3.0 state (mobileRobotPosition, powerSupply, instantActionStates)."""
    doc = state_v2(header_id, version="3.0.0", serialNumber="amr-3")
    for key in ("agvPosition", "batteryState"):
        del doc[key]
    doc.update({
        "mobileRobotPosition": {"x": 3.0, "y": 4.0, "theta": -1.0, "mapId": "L2",
                                "localized": True},
        "powerSupply": {"stateOfCharge": 55.5, "charging": True, "batteryVoltage": 48.0},
        "safetyState": {"activeEmergencyStop": "NONE", "fieldViolation": False},
        "instantActionStates": [], "operatingMode": "STARTUP",
    })
    doc.update(overrides)
    return doc


def connection(state: str, header_id: int = 1, version: str = "2.0.0",
               serial: str = "agv-1") -> dict[str, Any]:
    """A connection message."""
    return {"headerId": header_id, "timestamp": STAMP, "version": version,
            "manufacturer": "acme", "serialNumber": serial, "connectionState": state}


def encode(doc: dict[str, Any]) -> bytes:
    """JSON bytes of a message."""
    return orjson.dumps(doc)


def topic(doc: dict[str, Any], subtopic: str = "state") -> str:
    """The topic a message belongs on."""
    major = doc["version"].split(".")[0]
    return f"uagv/v{major}/{doc['manufacturer']}/{doc['serialNumber']}/{subtopic}"


def make_fleet(**options: Any) -> Fleet:
    """A Fleet on a real ring store and metrics registry."""
    ctx = DriverContext("site", "fleet", RingStore(), GatewayMetrics(),
                        logging.getLogger("test.vda5050"))
    return Fleet(ctx, Vda5050Options.model_validate(options))


def feed(fleet: Fleet, doc: dict[str, Any], subtopic: str = "state",
         receive_ns: int = STAMP_NS + 5_000_000) -> None:
    """Hand one message to the fleet as the MQTT thread would."""
    fleet.handle(topic(doc, subtopic), encode(doc), receive_ns)
