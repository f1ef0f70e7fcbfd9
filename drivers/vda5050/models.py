"""Pydantic models of VDA 5050 messages (state, connection, factsheet, visualization), 2.0-3.0.

Pydantic models written from the specification's JSON schemas (github.com/VDA5050/VDA5050,
``json_schemas/*.schema`` on the release/2.0.0, 2.1.0 and 3.0.0 branches): strict on types
(a number is never a string, a boolean never 0/1), lenient on unknown fields (the spec lets
vendors add their own). 3.0 renames ``agvPosition`` -> ``mobileRobotPosition`` (with
``positionInitialized`` -> ``localized``), ``batteryState`` -> ``powerSupply``
(``batteryCharge`` -> ``stateOfCharge``), ``safetyState.eStop`` -> ``activeEmergencyStop``,
adds operating modes STARTUP/INTERVENED (TEACHIN -> TEACH_IN), error levels URGENT/CRITICAL,
the action status RETRIABLE and the connection state HIBERNATING (CONNECTIONBROKEN ->
CONNECTION_BROKEN).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Msg(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Header(_Msg):
    """The header every VDA 5050 message starts with."""

    headerId: int = Field(ge=0)
    timestamp: str
    version: str
    manufacturer: str
    serialNumber: str


class Velocity(_Msg):
    """Vehicle velocity in vehicle coordinates."""

    vx: float | None = None
    vy: float | None = None
    omega: float | None = None


class AgvPosition(_Msg):
    """2.x position (``agvPosition``)."""

    x: float
    y: float
    theta: float
    mapId: str
    positionInitialized: bool
    localizationScore: float | None = None
    deviationRange: float | None = None


class MobileRobotPosition(_Msg):
    """3.0 position (``mobileRobotPosition``)."""

    x: float
    y: float
    theta: float
    mapId: str
    localized: bool
    localizationScore: float | None = None
    deviationRange: float | None = None


class NodeState(_Msg):
    """A node still to traverse."""

    nodeId: str
    sequenceId: int
    released: bool


class EdgeState(_Msg):
    """An edge still to traverse."""

    edgeId: str
    sequenceId: int
    released: bool


class Load(_Msg):
    """A load carried by the vehicle (every field optional in the spec)."""

    loadId: str | None = None
    loadType: str | None = None
    loadPosition: str | None = None
    weight: float | None = None


ActionStatusV2 = Literal["WAITING", "INITIALIZING", "RUNNING", "PAUSED", "FINISHED", "FAILED"]
ActionStatusV3 = Literal["WAITING", "INITIALIZING", "RUNNING", "PAUSED", "RETRIABLE",
                         "FINISHED", "FAILED"]


class ActionStateV2(_Msg):
    """2.x action state."""

    actionId: str
    actionStatus: ActionStatusV2
    actionType: str | None = None
    actionDescription: str | None = None
    resultDescription: str | None = None


class ActionStateV3(_Msg):
    """3.0 action state (``actionDescriptor``, ``actionResult``, RETRIABLE)."""

    actionId: str
    actionStatus: ActionStatusV3
    actionType: str | None = None
    actionDescriptor: str | None = None
    actionResult: str | None = None


class BatteryState(_Msg):
    """2.x ``batteryState``."""

    batteryCharge: float
    charging: bool
    batteryVoltage: float | None = None
    batteryHealth: float | None = None
    reach: float | None = None


class PowerSupply(_Msg):
    """3.0 ``powerSupply``."""

    stateOfCharge: float
    charging: bool
    batteryVoltage: float | None = None
    batteryCurrent: float | None = None
    batteryHealth: float | None = None
    range: float | None = None


class ErrorV2(_Msg):
    """2.x error (WARNING or FATAL)."""

    errorType: str
    errorLevel: Literal["WARNING", "FATAL"]
    errorDescription: str | None = None


class ErrorV3(_Msg):
    """3.0 error (WARNING, URGENT, CRITICAL, FATAL)."""

    errorType: str
    errorLevel: Literal["WARNING", "URGENT", "CRITICAL", "FATAL"]
    errorDescription: str | None = None
    errorHint: str | None = None


class SafetyStateV2(_Msg):
    """2.x safety state (``eStop``)."""

    eStop: Literal["AUTOACK", "MANUAL", "REMOTE", "NONE"]
    fieldViolation: bool


class SafetyStateV3(_Msg):
    """3.0 safety state (``activeEmergencyStop``)."""

    activeEmergencyStop: Literal["MANUAL", "REMOTE", "NONE"]
    fieldViolation: bool


class _StateCommon(Header):
    orderId: str
    orderUpdateId: int
    lastNodeId: str
    lastNodeSequenceId: int
    nodeStates: list[NodeState]
    edgeStates: list[EdgeState]
    driving: bool
    paused: bool | None = None
    newBaseRequest: bool | None = None
    distanceSinceLastNode: float | None = None
    velocity: Velocity | None = None
    loads: list[Load] | None = None


class StateV2(_StateCommon):
    """``state`` of VDA 5050 2.0 and 2.1."""

    operatingMode: Literal["AUTOMATIC", "SEMIAUTOMATIC", "MANUAL", "SERVICE", "TEACHIN"]
    agvPosition: AgvPosition | None = None
    actionStates: list[ActionStateV2]
    batteryState: BatteryState
    errors: list[ErrorV2]
    safetyState: SafetyStateV2


class StateV3(_StateCommon):
    """``state`` of VDA 5050 3.0."""

    operatingMode: Literal["STARTUP", "AUTOMATIC", "SEMIAUTOMATIC", "INTERVENED", "MANUAL",
                           "SERVICE", "TEACH_IN"]
    mobileRobotPosition: MobileRobotPosition | None = None
    actionStates: list[ActionStateV3]
    instantActionStates: list[ActionStateV3]
    powerSupply: PowerSupply
    errors: list[ErrorV3]
    safetyState: SafetyStateV3


class ConnectionV2(Header):
    """``connection`` of 2.x (retained, and the vehicle's MQTT Will)."""

    connectionState: Literal["ONLINE", "OFFLINE", "CONNECTIONBROKEN"]


class ConnectionV3(Header):
    """``connection`` of 3.0 (adds HIBERNATING, spells CONNECTION_BROKEN)."""

    connectionState: Literal["ONLINE", "OFFLINE", "HIBERNATING", "CONNECTION_BROKEN"]


class VisualizationV2(Header):
    """``visualization`` of 2.x: position and velocity at a higher rate."""

    agvPosition: AgvPosition | None = None
    velocity: Velocity | None = None


class VisualizationV3(Header):
    """``visualization`` of 3.0."""

    mobileRobotPosition: MobileRobotPosition | None = None
    velocity: Velocity | None = None


class TypeSpecification(_Msg):
    """The factsheet's type specification; names of both versions, all optional here."""

    seriesName: str | None = None
    agvKinematic: str | None = None
    agvClass: str | None = None
    maxLoadMass: float | None = None
    mobileRobotKinematic: str | None = None
    mobileRobotKinematics: str | None = None
    mobileRobotClass: str | None = None
    maximumLoadMass: float | None = None


class PhysicalParameters(_Msg):
    """The factsheet's physical parameters; 2.x (``speedMax``) and 3.0 (``maximumSpeed``)."""

    speedMax: float | None = None
    maximumSpeed: float | None = None
    accelerationMax: float | None = None
    maximumAcceleration: float | None = None
    width: float | None = None
    length: float | None = None


class Factsheet(Header):
    """``factsheet``: type and physical parameters (the rest is kept as extra fields)."""

    typeSpecification: TypeSpecification
    physicalParameters: PhysicalParameters
