"""The few flat exception types medgw raises; library errors are translated into these."""

from __future__ import annotations


class MedgwError(Exception):
    """Base of every error medgw raises on purpose."""


class ConfigError(MedgwError):
    """A config file is missing, unreadable or invalid; names the file and the key."""

    def __init__(self, message: str, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class PayloadError(MedgwError):
    """An MQTT payload does not follow the wire contract (it is quarantined, never fatal)."""


class StreamSpecError(MedgwError, ValueError):
    """A stream description the wire contract or InfluxDB cannot carry (a name, a field).

    Raised by StreamSpec at construction (drivers catch it per topic or carrier) and, as a
    PayloadError, by the ingest's decode. ``part`` names what is wrong (``site``,
    ``device``, ``stream``, ``measurement``, ``channel_tag``, ``field``, ``fields``,
    ``units``), ``name`` the offending value. A ValueError too, for older callers.
    """

    def __init__(self, message: str, part: str = "", name: str = "") -> None:
        self.part = part
        self.name = name
        super().__init__(message)


class DeviceError(MedgwError):
    """A device could not be reached or refused the session (bad certificate, password ...)."""


class BrokerError(MedgwError):
    """The MQTT broker refused the connection or a publish (auth, ACL, TLS)."""


class StoreError(MedgwError):
    """InfluxDB (or a v2-compatible store) refused or failed a write."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message)


class ServiceError(MedgwError):
    """A helper service (mosquitto, influxd) could not be started."""
