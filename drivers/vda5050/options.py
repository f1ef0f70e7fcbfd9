"""Options of the VDA 5050 driver (validated when the gateway config is loaded)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config import SecretRef, TlsConfig

SUBSCRIBED = ("state", "connection", "factsheet")  # + visualization when enabled


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetBroker(_Strict):
    """The fleet's own MQTT broker (not medgw's outbound broker); medgw only subscribes."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretRef | None = Field(
        default=None, description="{env: VAR} or {file: PATH}, never inline")
    tls: TlsConfig | None = None
    client_id: str | None = Field(default=None, description="default medgw-vda5050-<device>")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1", description="VDA 5050 2.x names MQTT 3.1.1; 5 works on most brokers")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)


class Vehicle(_Strict):
    """One vehicle chosen explicitly (instead of the ``+`` wildcard)."""

    manufacturer: str = Field(min_length=1)
    serial_number: str = Field(min_length=1)


class Vda5050Options(_Strict):
    """What to subscribe to and how vehicles become streams."""

    broker: FleetBroker = FleetBroker()
    interface_name: str = Field(default="uagv", min_length=1)
    major_versions: tuple[str, ...] = Field(
        default=("v2", "v3"), min_length=1, description="topic level 2, e.g. v2, v3")
    manufacturer: str = Field(default="+", min_length=1, description="'+' for any")
    vehicles: tuple[Vehicle, ...] = Field(
        default=(), description="explicit vehicles; empty: every vehicle ('+')")
    visualization: bool = Field(default=False, description="also subscribe to visualization "
                                "(stream <vehicle>.visualization)")
    stream_name: Literal["serial", "manufacturer.serial"] = Field(
        default="serial", description="how a vehicle's streams are named")
    maps: tuple[str, ...] = Field(
        default=(), description="known mapIds: the 'map' field is the index here (1-based); "
                                "unknown maps get the next numbers, up to max_maps")
    max_maps: int = Field(default=64, ge=1, le=10_000)
    max_vehicles: int = Field(default=1000, ge=1, le=100_000,
                              description="bounded cardinality: more vehicles are quarantined")
    rate_hz: float = Field(default=10.0, gt=0, le=1000,
                           description="nominal state rate (sizes the rings)")
    event_ring_capacity: int = Field(default=512, ge=16, le=65536, description="ring size "
                                     "of each vehicle's event and source_gap streams (events "
                                     "are rare; the publisher drains them at once)")
    max_source_gap: int = Field(default=100_000, ge=1, description="a headerId jump larger "
                                "than this is a reset (restart with a new numbering), not loss")
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    check_window_s: float = Field(default=2.0, gt=0, le=60,
                                  description="medgw check: listen this long for vehicles")

    @model_validator(mode="after")
    def _levels(self) -> Vda5050Options:
        for name in (self.interface_name, self.manufacturer, *self.major_versions):
            if "/" in name or "#" in name or (name != "+" and "+" in name):
                raise ValueError(f"topic level {name!r} may not contain '/', '#' or '+'")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    def topic_filters(self, subtopics: tuple[str, ...] | None = None) -> list[str]:
        """Return the MQTT topic filters to subscribe to."""
        subs = subtopics or (SUBSCRIBED + (("visualization",) if self.visualization else ()))
        owners = [(v.manufacturer, v.serial_number) for v in self.vehicles] or [
            (self.manufacturer, "+")]
        return [f"{self.interface_name}/{major}/{manufacturer}/{serial}/{sub}"
                for major in self.major_versions for manufacturer, serial in owners
                for sub in subs]
