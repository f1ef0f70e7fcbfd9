"""Options of the OPC UA driver (validated when the gateway config is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from asyncua import ua
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.opcua.mapping import EventRule, split_pattern
from drivers.opcua.naming import RESERVED_FIELDS, RESERVED_STREAMS
from gateway.config import SecretRef
from gateway.errors import DeviceError

DEFAULT_CLIENT_URI = "urn:medgw:gateway:opcua-client"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrowseSpec(_Strict):
    """Nodes found by a glob over browse names below the Objects folder.

    Each matching variable becomes field ``snake_case(browse name)`` of stream
    ``<browse name of its parent>`` (e.g. ``Fleet/*/*`` -> stream ``carrier-01``,
    field ``payload_temperature``). Non-numeric variables are skipped.
    """

    pattern: str = Field(description="e.g. 'Fleet/*/*' or 'Fleet/carrier-0?/Battery'")
    fields: tuple[str, ...] | None = Field(
        default=None, description="keep exactly these fields (fixes the stream shape)")
    exclude: tuple[str, ...] = Field(default=(), description="field names to skip")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        split_pattern(value)
        return value


class NodeSpec(_Strict):
    """One variable chosen by node id (``ns=2;s=...``, ``nsu=<uri>;s=...``, ``i=2258``)."""

    node_id: str
    stream: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=120)
    field: str = Field(pattern=r"^[a-z0-9_]+$", max_length=120)
    unit: str | None = Field(default=None, description="default: the node's EngineeringUnits")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        try:
            ua.NodeId.from_string(value)
        except (ua.UaStringParsingError, ValueError) as err:
            raise ValueError(f"not a node id ({err}): write ns=2;s=..., nsu=<uri>;s=... or"
                             " i=2258") from err
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if value.lower() in RESERVED_STREAMS or value.endswith(".events"):
            raise ValueError(f"stream {value!r} is reserved (the gateway's status topic, or a"
                             " carrier's event stream): choose another name")
        return value

    @field_validator("field")
    @classmethod
    def _field(cls, value: str) -> str:
        if value in RESERVED_FIELDS:
            raise ValueError(f"field {value!r} is a column of every stored point: call it"
                             f" e.g. {value}_")
        return value


_RULE = EventRule()  # the one source of the event rule defaults
_FIELD = r"^[a-z0-9_]+$"  # a field name as the driver makes it (snake case, see naming.py)


class EventOptions(_Strict):
    """Carrier event rules (stream '<carrier>.events', measurement carrier_event).

    Every field but ``enabled`` is a field of ``EventRule`` and defaults to its value there.
    """

    enabled: bool = True
    temperature_field: str = Field(default=_RULE.temperature_field, pattern=_FIELD)
    temperature_min: float = _RULE.temperature_min
    temperature_max: float = _RULE.temperature_max
    door_field: str = Field(default=_RULE.door_field, pattern=_FIELD)
    mission_field: str = Field(default=_RULE.mission_field, pattern=_FIELD)
    in_transit_states: tuple[int, ...] = _RULE.in_transit_states
    fault_states: tuple[int, ...] = _RULE.fault_states
    alarm_field: str = Field(default=_RULE.alarm_field, pattern=_FIELD)

    def rule(self) -> EventRule:
        """Return the pure rule object used by the detector."""
        return EventRule(**self.model_dump(exclude={"enabled"}))


class OpcUaOptions(_Strict):
    """Options of one OPC UA server (a fleet server or a single device)."""

    endpoint: str = Field(pattern=r"^opc\.tcp://(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(:\d{1,5})?(/\S*)?$",
                          description="opc.tcp://host:port/path")
    security_policy: Literal["None", "Basic256Sha256"] = Field(
        default="Basic256Sha256", description='"None" must be written out to disable security')
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = Field(default=None, validate_default=True,
                                     description="client certificate (DER/PEM)")
    private_key: Path | None = Field(default=None, validate_default=True,
                                     description="client private key (PEM/DER)")
    private_key_password: SecretRef | None = Field(
        default=None, description="if the key is encrypted: {env: VAR} or {file: PATH}")
    server_certificate: Path | None = Field(
        default=None, validate_default=True,
        description="the server certificate to trust (pinned)")
    application_uri: str | None = Field(
        default=None, description="default: the URI in the client certificate")
    username: str | None = None
    password: SecretRef | None = Field(
        default=None, description="{env: VAR} or {file: PATH}, read at each connect")
    browse: tuple[BrowseSpec, ...] = ()
    nodes: tuple[NodeSpec, ...] = ()
    publishing_interval_ms: float = Field(default=100.0, gt=0, le=600_000)
    sampling_interval_ms: float = Field(default=100.0, ge=0, le=600_000)
    queue_size: int = Field(default=10, ge=1, le=100_000)
    deadband: float = Field(default=0.0, ge=0, description="absolute deadband, 0 = off")
    timestamp_source: Literal["source", "server"] = "source"
    measurement: str = Field(default="carrier", pattern=r"^[A-Za-z0-9_.-]+$")
    event_measurement: str = Field(default="carrier_event", pattern=r"^[A-Za-z0-9_.-]+$")
    events: EventOptions = EventOptions()
    rediscover_interval_s: float = Field(default=10.0, ge=0, description="0 = at connect only")
    request_timeout_s: float = Field(default=4.0, gt=0, le=300)
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    fast_decode: bool = Field(default=True, description="decode publish responses of scalar"
                              " data changes with drivers/opcua/fastpublish.py (anything else"
                              " goes to asyncua's decoder); false: asyncua's decoder always")

    @field_validator("certificate", "private_key", "server_certificate", mode="after")
    @classmethod
    def _secure_files(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if info.data.get("security_policy", "Basic256Sha256") == "None":
            return value
        if value is None:
            how = (" (save the server's with `medgw discover opcua ENDPOINT --save-cert FILE`)"
                   if info.field_name == "server_certificate" else
                   " (make the gateway's certificate and key with `medgw opcua cert`)")
            raise ValueError(
                f"required for security_policy {info.data.get('security_policy')}"
                f" {info.data.get('security_mode', '')}: give the path of the"
                f" {info.field_name}{how}, or write security_policy: \"None\" to connect"
                " without security")
        if not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _old_secret_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, source in (("password_env", "env: VARIABLE"),
                                ("password_file", "file: /path/to/file")):
                if key in data:
                    raise ValueError(f"{key} is not an option: write password: {{{source}}}")
        return data

    @model_validator(mode="after")
    def _checks(self) -> OpcUaOptions:
        if not self.browse and not self.nodes:
            raise ValueError("give at least one 'browse' pattern or one entry in 'nodes'")
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is missing")
        if self.username is not None and self.password is None:
            raise ValueError("username is set: give password: {env: VARIABLE} or"
                             " {file: /path/to/file}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    @property
    def secure(self) -> bool:
        """Return True unless security_policy is "None"."""
        return self.security_policy != "None"

    def resolve_password(self) -> str | None:
        """Return the password now (env/file read at connect); DeviceError names a missing one."""
        return resolve_secret(self.password, "password")

    def resolve_key_password(self) -> str | None:
        """Return the private key's password now; DeviceError names a missing one."""
        return resolve_secret(self.private_key_password, "private_key_password")


def resolve_secret(ref: SecretRef | None, key: str) -> str | None:
    """Read a secret reference now; a missing one is a DeviceError naming the option."""
    if ref is None:
        return None
    try:
        return ref.resolve().get_secret_value()
    except ValueError as err:
        raise DeviceError(f"{key}: {err}") from err
