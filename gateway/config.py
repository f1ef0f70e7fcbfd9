"""Typed gateway configuration: one YAML file per edge box, validated at load.

Unknown keys are rejected naming the key, its path and the file. Secrets are never
written in the file itself: they come from an environment variable or a file, e.g.
``password: {env: MEDGW_MQTT_PASSWORD}`` or ``token: {file: /etc/medgw/influx.token}``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway import plugins
from gateway.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"  # safe as an MQTT topic level and an InfluxDB tag value
MAX_NAME = 128  # site, gateway, device: topic levels and tag values, kept short (issue 13 #1)
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a gateway config is a few kB; more is not a config
MAX_CONFIG_VALUES = 100_000  # after YAML aliases are expanded (an alias bomb is not a config)
MAX_TOPIC_PREFIX_BYTES = 1024  # the whole topic (prefix/site/device/stream) must stay < 64 KiB
MAX_MQTT_STRING_BYTES = 65_535  # MQTT UTF-8 strings (client id, user name)
_TOPIC_FORBIDDEN = re.compile(r"[+#\x00]")


def check_topic_name(value: str, what: str = "topic") -> str:
    """Refuse what an MQTT broker refuses as a topic name we publish to (ValueError).

    No wildcards (``+``, ``#``), no NUL, no empty level (``a//b``, a leading or trailing
    ``/``), not starting with ``$`` (broker-internal topics), UTF-8, at most 1,024 bytes.
    """
    bad = _TOPIC_FORBIDDEN.search(value)
    if bad is not None:
        char = "NUL" if bad.group() == "\x00" else repr(bad.group())
        raise ValueError(f"{what} {value!r} contains {char}: MQTT topic names we publish to"
                         " cannot hold wildcards or NUL")
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"{what} {value!r} has an empty level: write levels separated by one"
                         " '/', e.g. medgw/v1")
    if value.startswith("$"):
        raise ValueError(f"{what} {value!r} starts with '$' (reserved for the broker)")
    _check_utf8(value, what, MAX_TOPIC_PREFIX_BYTES)
    return value


def _check_utf8(value: str, what: str, limit: int) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} is not valid UTF-8 text") from err
    if size > limit:
        raise ValueError(f"{what} is {size} bytes, more than {limit}")


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret comes from: an environment variable or a file (never the config itself)."""

    env: str | None = Field(default=None, min_length=1, pattern=r"^[^=\x00]+$")
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _never_inline(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("secrets are never written in the config: write {env: VARIABLE}"
                             " or {file: /path/to/secret}")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret now; raise ValueError (without the value) if it is missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text(encoding="utf-8").strip())
        except OSError as err:
            raise ValueError(f"cannot read secret file {self.file}: {err.strerror}") from err


class TlsConfig(Strict):
    """TLS towards the broker: CA to trust, and an optional client certificate."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(Strict):
    """The MQTT broker the gateway publishes to (and the ingest subscribes to)."""

    host: str = Field(default="127.0.0.1", pattern=r"^[^\s/\x00]+$", max_length=253,
                      description="host name or address of the broker")
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretRef | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_prefix: str = "medgw/v1"
    client_id: str | None = None
    max_inflight: int = Field(default=64, ge=1, le=65535,
                              description="unacknowledged QoS 1 publishes at once")

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        return check_topic_name(value, "topic_prefix")

    @field_validator("client_id", "username")
    @classmethod
    def _mqtt_string(cls, value: str | None) -> str | None:
        if value is not None:
            if "\x00" in value or not value:
                raise ValueError("must be non-empty and without NUL")
            _check_utf8(value, "the value", MAX_MQTT_STRING_BYTES)
        return value


class PublisherConfig(Strict):
    """How samples are batched from the ring into MQTT messages."""

    max_batch_samples: int = Field(default=1000, ge=1, le=1_000_000)
    max_latency_ms: float = Field(default=250.0, gt=0, le=60_000, description="without "
                                  "bundles: the longest a stream's samples wait for a batch; "
                                  "the publisher scans every min(max_latency_ms / 4, 50) ms")
    flush_when_idle: bool = Field(default=False, description="without bundles: also send a "
                                  "stream's pending samples at the first scan that finds "
                                  "nothing appended since the previous one (lower latency, "
                                  "one message per source burst: more messages and CPU)")
    bundle: bool = Field(default=True, description="one MQTT message per device and "
                         "publisher scan (<= 50 ms) holding every stream of the device with "
                         "pending samples, on medgw/v1/{site}/{device} (gateway/wire/bundle.py); "
                         "false: one message per stream on its own topic, batched by "
                         "max_latency_ms")
    max_bundle_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024,
                                  description="a bundle closes at this size (a larger "
                                  "single batch goes alone)")
    ring_capacity: int = Field(default=16384, ge=16, le=100_000_000, description="largest "
                               "ring of a sampled stream, in samples, and the size of one whose "
                               "rate is unknown (16 s at 1 kHz); the spool, not the ring, "
                               "absorbs broker outages")
    ring_seconds: float | None = Field(
        default=60.0, ge=1, le=86_400, description="a sampled stream with a nominal rate "
        "gets a ring of rate x ring_seconds samples (at least 2 x max_batch_samples and 1,024, "
        "at most ring_capacity), so memory follows the rate; null: ring_capacity for every "
        "sampled stream")
    encoding: Literal["json", "binary"] = Field(
        default="json", description="payload encoding: json (readable by anyone) or binary "
        "(the same header, raw little-endian arrays: ~30x cheaper to encode and decode)")


class SpoolConfig(Strict):
    """The publisher's disk spool (write-ahead, bounded; see gateway/spool.py)."""

    dir: Path | None = Field(default=None, description="spool directory; default: a private "
                             "temporary directory, which does not survive a restart")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096)
    segment_bytes: int = Field(default=8 * 1024 * 1024, ge=4096)
    flush_interval_ms: float = Field(default=1000.0, gt=0, le=600_000,
                                     description="fsync cadence: the power-loss window")
    policy: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"
    confirm: bool = Field(default=True, description="keep records until an ingest worker "
                          "confirms InfluxDB holds them (end to end), not just the broker")
    confirm_timeout_s: float = Field(default=30.0, gt=0, description="send a record again "
                                     "when acknowledged by the broker but not confirmed")
    replay_window_s: float = Field(default=60.0, ge=0, description="acknowledged records kept "
                                   "to resend when the broker loses its state")
    ingest_wait_s: float = Field(default=30.0, ge=0, description="after the broker lost its "
                                 "state, wait this long for an ingest worker before resending")


class InfluxConfig(Strict):
    """Where the ingest writes: InfluxDB 1.x (v1) or a v2 write API (InfluxDB 2.x/3.x)."""

    backend: Literal["v1", "v2"] = "v1"
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://[^\s/?#]+[^\s]*$",
                     description="http(s)://host:port[/path]")
    database: str = Field(default="medgw", min_length=1, max_length=255,
                          pattern=r'^[^\x00-\x1f"\\]+$', description="no quotes, "
                          "backslashes or control characters")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    org: str = "medgw"
    bucket: str | None = None
    batch_lines: int = Field(default=5000, ge=1, le=1_000_000)
    flush_ms: float = Field(default=0.0, ge=0, le=60_000, description="0: write as soon as nothing "
                            "more is queued; > 0: wait up to this long to fill batch_lines")
    gzip: bool = True
    timeout_s: float = Field(default=10.0, gt=0)
    create_database: bool = Field(default=True, description="v1: CREATE DATABASE at start")


class IngestConfig(Strict):
    """The MQTT -> InfluxDB ingest worker."""

    group: str = Field(default="medgw", pattern=NAME_PATTERN,
                       description="shared-subscription group: workers in a group split the load")
    client_id: str | None = None
    dead_letter_topic: str = Field(default="medgw/deadletter/v1", description="quarantined "
                                   "messages go to <this>/<their topic>; outside the data "
                                   "prefix, no wildcards")
    dead_letter_file: Path | None = None
    dead_letter_file_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096, description=
                                            "rotate the dead-letter file at this size")
    dead_letter_file_backups: int = Field(default=1, ge=0, le=100, description="rotated "
                                          "dead-letter files kept (<file>.1 ...)")
    dead_letter_max_payload_bytes: int = Field(default=64 * 1024, ge=0, description="bytes "
                                               "of a quarantined payload kept in its dead "
                                               "letter (the size is always recorded)")
    max_pending_messages: int = Field(default=2000, ge=1)
    max_pending_bytes: int = Field(default=64 * 1024 * 1024, ge=65536, description="bytes "
                                   "received and not yet written and acknowledged; the "
                                   "worker stops reading from the broker above it")
    health_port: int | None = Field(default=None, ge=0, le=65535, description="loopback "
                                    "port of the worker's /health and /metrics (medgw "
                                    "ingest; host from health.host); 0: any free port; "
                                    "null (default, as several workers may share one file):"
                                    " off unless given as medgw ingest --health-port N")
    session_expiry_s: int = Field(default=0, ge=0, description="broker keeps a stopped "
                                  "worker's session this long (0: clean session; the gateways' "
                                  "end-to-end confirmation resends what a dead worker held)")
    record_gaps: bool = Field(default=True, description="write sequence gaps to medgw_gap")
    gap_grace_s: float = Field(default=60.0, ge=0, description="wait this long for late "
                               "messages (another worker, a redelivery) before a sequence gap "
                               "is confirmed against InfluxDB and recorded; keep it above "
                               "spool.confirm_timeout_s, after which gateways resend")

    @field_validator("dead_letter_topic")
    @classmethod
    def _dead_letter_topic(cls, value: str) -> str:
        return check_topic_name(value, "dead_letter_topic")


class HealthConfig(Strict):
    """Loopback HTTP port for /health and /metrics."""

    enabled: bool = True
    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class DeviceConfig(Strict):
    """One device (or fleet) served by one driver; ``options`` belong to the driver."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME)
    driver: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class GatewayConfig(Strict):
    """The whole edge-box configuration."""

    site: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME)
    gateway: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME)
    mqtt: MqttConfig = MqttConfig()
    publisher: PublisherConfig = PublisherConfig()
    spool: SpoolConfig = SpoolConfig()
    influxdb: InfluxConfig = InfluxConfig()
    ingest: IngestConfig = IngestConfig()
    health: HealthConfig = HealthConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> GatewayConfig:
        names = [d.name for d in self.devices]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"device names must be unique, repeated: {', '.join(dupes)}")
        return self


class LoadedConfig:
    """A validated config plus the parsed driver options of every device."""

    def __init__(self, config: GatewayConfig, driver_options: dict[str, BaseModel],
                 path: Path | None) -> None:
        self.config = config
        self.driver_options = driver_options
        self.path = path

    def secret(self, ref: SecretRef | None, key: str) -> str | None:
        """Resolve a secret reference; a missing secret is a ConfigError naming its key."""
        if ref is None:
            return None
        try:
            return ref.resolve().get_secret_value()
        except ValueError as err:
            raise ConfigError(str(err), str(self.path) if self.path else None, key) from err


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as ``devices[0].options.rate_hz``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _config_error(err: ValidationError, file: str,
                  prefix: tuple[int | str, ...] = ()) -> ConfigError:
    lines = []
    first_key = None
    for item in err.errors():
        key = format_location(prefix + tuple(item["loc"]))
        first_key = first_key or key
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: {item['msg'].removeprefix('Value error, ')}")
    message = "invalid config:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
    if len(lines) == 1:
        return ConfigError(message.split(": ", 1)[1], file, first_key)
    return ConfigError(message, file)


def parse_config(data: Any, file: str = "<config>") -> LoadedConfig:
    """Validate already-parsed YAML data (dict) into a LoadedConfig."""
    if not isinstance(data, dict):
        raise ConfigError("the file must contain a mapping (site:, gateway:, devices: ...)", file)
    config = _validate(GatewayConfig, data, file, ())
    options: dict[str, BaseModel] = {}
    for index, device in enumerate(config.devices):
        try:
            info = plugins.load_driver(device.driver)
        except ConfigError as err:
            raise ConfigError(str(err), file, f"devices[{index}].driver") from err
        options[device.name] = _validate(info.options_model, device.options, file,
                                         ("devices", index, "options"))
    return LoadedConfig(config, options, Path(file) if file != "<config>" else None)


def _validate(model: type[M], data: Any, file: str, prefix: tuple[int | str, ...]) -> M:
    """Validate one section; every failure is a ConfigError naming the file and the key."""
    key = format_location(prefix) or None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _config_error(err, file, prefix) from err
    except RecursionError as err:
        raise ConfigError("nested too deeply", file, key) from err
    except (OSError, ValueError, TypeError, OverflowError) as err:  # a validator's own error
        raise ConfigError(f"cannot be checked: {err}", file, key) from err


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a gateway config file; any problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror or err}", str(path)) from err
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB: not a gateway"
                          " config", str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text: byte 0x{raw[err.start]:02x} at line {line}"
                          f" (offset {err.start}); save the file as UTF-8", str(path)) from err
    return parse_config(parse_yaml(text, str(path)), str(path))


def parse_yaml(text: str, file: str = "<config>") -> Any:
    """Parse YAML text; any problem (syntax, nesting, a bad date) is a ConfigError."""
    try:
        data = yaml.safe_load(text)
        if _expanded_size(data, {}) > MAX_CONFIG_VALUES:
            raise ConfigError(f"not a config: its YAML aliases expand to more than"
                              f" {MAX_CONFIG_VALUES:,} values", file)
        return data
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {err.problem or err}", file) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", file) from err
    except RecursionError as err:
        raise ConfigError("not a config: YAML nested too deeply", file) from err
    except (ValueError, TypeError, OverflowError) as err:  # e.g. a date like 2024-13-45
        raise ConfigError(f"not valid YAML: a value cannot be read ({err})", file) from err


def _expanded_size(data: Any, seen: dict[int, int]) -> int:
    """Count the values of parsed YAML as validation will see them (aliases expanded)."""
    if not isinstance(data, (dict, list)):
        return 1
    known = seen.get(id(data))
    if known is not None:
        return known
    children = data.items() if isinstance(data, dict) else enumerate(data)
    size = 1 + sum(_expanded_size(value, seen) for _, value in children)
    seen[id(data)] = size
    return size
