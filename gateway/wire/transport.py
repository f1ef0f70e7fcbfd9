"""The MQTT transport seam: what the publisher and the ingest need from an MQTT client.

A state machine (the edge publisher, the ingest) talks to a :class:`Transport` and is told
what happens through a :class:`TransportListener`, so it can be unit-tested with a fake
transport and no broker. :class:`PahoTransport` is the real one, over the paho client from
``gateway.mqtt.make_mqtt_client``.

The contract every transport keeps:

- ``start()`` connects in the background and keeps reconnecting; it never blocks.
- Listener callbacks run in the transport's own thread, one at a time. ``on_published`` may
  run before ``publish()`` has returned the message id (the PUBACK raced the caller).
- A QoS 1 publish that is not acknowledged when the connection drops stays the transport's
  job: it is sent again after the reconnect and reported once by ``on_published``.
- An exception raised by a listener callback never reaches the network loop: it goes to
  ``on_callback_error`` (with the callback's name), which decides what to do (handle it,
  count it, or stop the process loudly).
- Errors of the client library are translated at this boundary: :class:`TransportError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.errors import MedgwError
from gateway.mqtt import describe_reason, make_mqtt_client

log = logging.getLogger("medgw.transport")

# PUBACK reasons worth sending the message again later (the broker was only busy)
_TRANSIENT_REFUSALS = frozenset({0x97})  # Quota exceeded


class TransportError(MedgwError):
    """The client library refused a call (a publish too large, a bad topic, a closed client)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Received:
    """One message delivered by the broker."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """The broker's negative answer to a publish or a subscription."""

    reason: str  # in words an operator can act on
    transient: bool = False  # worth trying again later (quota exceeded)


class TransportListener(Protocol):
    """What a transport tells its user; every method runs in the transport's thread."""

    def on_connected(self, session_present: bool) -> None:
        """The broker accepted the connection (``session_present``: it kept our session)."""

    def on_connect_failed(self, reason: str) -> None:
        """The broker refused the connection (bad credentials, ACL, protocol)."""

    def on_disconnected(self, reason: str) -> None:
        """The connection dropped; the transport reconnects on its own."""

    def on_published(self, mid: int, refusal: Refusal | None) -> None:
        """The broker acknowledged (``refusal`` None) or refused the QoS 1 publish ``mid``."""

    def on_subscribed(self, mid: int, refusal: Refusal | None) -> None:
        """The broker granted (``refusal`` None) or refused the subscription ``mid``."""

    def on_message(self, message: Received) -> None:
        """A message arrived on a subscribed topic."""

    def on_callback_error(self, callback: str, err: Exception) -> None:
        """One of the callbacks above raised ``err``; never silent, never into the loop."""


class Transport(Protocol):
    """An MQTT connection as the publisher and the ingest use it."""

    def bind(self, listener: TransportListener) -> None:
        """Set the listener told about connections, acknowledgements and messages."""

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """Set the message the broker publishes if we vanish (before ``start``)."""

    def start(self) -> None:
        """Connect in the background and keep reconnecting until ``stop``."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue one message; return its id (``on_published`` reports it for qos > 0)."""

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> int:
        """Subscribe to (topic filter, qos) pairs; return the request's id."""

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (transports made with manual acknowledgement)."""

    def stop(self) -> None:
        """Disconnect cleanly (no will) and stop the network thread."""


def refusal_of(reason: ReasonCode | None) -> Refusal | None:
    """Return the Refusal a paho reason code stands for, or None when it is a success."""
    if reason is None or not reason.is_failure:
        return None
    return Refusal(describe_reason(reason), reason.value in _TRANSIENT_REFUSALS)


class PahoTransport:
    """The Transport over paho (MQTT 5 by default), built by ``make_mqtt_client``."""

    def __init__(self, mqtt_config: MqttConfig, client_id: str, password: str | None, *,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5, manual_ack: bool = False,
                 clean_start: bool | None = None, session_expiry_s: int | None = None,
                 receive_maximum: int | None = None) -> None:
        self.config = mqtt_config
        self.client = make_mqtt_client(mqtt_config, client_id, password, protocol, manual_ack)
        self._protocol = protocol
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._listener: TransportListener | None = None

    def bind(self, listener: TransportListener) -> None:
        """Route paho's callbacks to ``listener`` (each guarded, see the module docstring)."""
        self._listener = listener
        client = self.client
        client.on_connect = self._guard("on_connect", self._connected)
        client.on_disconnect = self._guard("on_disconnect", self._disconnected)
        client.on_publish = self._guard("on_publish", self._published)
        client.on_subscribe = self._guard("on_subscribe", self._subscribed)
        client.on_message = self._guard("on_message", self._message)

    def _guard(self, name: str, callback: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as err:  # never into paho's loop: that would end its thread
                log.exception("MQTT callback %s failed", name)
                if self._listener is not None:
                    try:
                        self._listener.on_callback_error(name, err)
                    except Exception:
                        log.exception("on_callback_error failed for %s", name)
        return guarded

    def _connected(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                   reason: ReasonCode, properties: object = None) -> None:
        assert self._listener is not None
        if reason.is_failure:
            self._listener.on_connect_failed(describe_reason(reason))
        else:
            self._listener.on_connected(bool(flags.session_present))

    def _disconnected(self, client: mqtt.Client, userdata: object, flags: object,
                      reason: ReasonCode, properties: object = None) -> None:
        assert self._listener is not None
        self._listener.on_disconnected(str(reason))

    def _published(self, client: mqtt.Client, userdata: object, mid: int,
                   reason: ReasonCode, properties: object = None) -> None:
        assert self._listener is not None
        self._listener.on_published(mid, refusal_of(reason))

    def _subscribed(self, client: mqtt.Client, userdata: object, mid: int,
                    reasons: list[ReasonCode], properties: object = None) -> None:
        assert self._listener is not None
        refused = [r for r in reasons if r.is_failure]
        self._listener.on_subscribed(mid, refusal_of(refused[0]) if refused else None)

    def _message(self, client: mqtt.Client, userdata: object,
                 message: mqtt.MQTTMessage) -> None:
        assert self._listener is not None
        self._listener.on_message(Received(message.topic, bytes(message.payload), message.mid,
                                           message.qos, bool(message.retain)))

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        """Set the will (the retained death message of a gateway or worker)."""
        self.client.will_set(topic, payload, qos=qos, retain=retain)

    def start(self) -> None:
        """connect_async with the session options, then paho's network thread."""
        kwargs: dict[str, Any] = {"keepalive": self.config.keepalive_s}
        if self._protocol == mqtt.MQTTv5:
            if self._clean_start is not None:
                kwargs["clean_start"] = self._clean_start
            props = Properties(PacketTypes.CONNECT)
            if self._session_expiry_s is not None:
                props.SessionExpiryInterval = self._session_expiry_s
            if self._receive_maximum is not None:
                props.ReceiveMaximum = self._receive_maximum
            if self._session_expiry_s is not None or self._receive_maximum is not None:
                kwargs["properties"] = props
        self.client.connect_async(self.config.host, self.config.port, **kwargs)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """paho publish; a refused call is a TransportError (not connected is not one)."""
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as err:  # bad topic, payload over the MQTT limit
            raise TransportError(f"cannot publish on {topic!r}: {err}") from err
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise TransportError(f"cannot publish on {topic!r}: {mqtt.error_string(info.rc)}",
                                 transient=info.rc == mqtt.MQTT_ERR_QUEUE_SIZE)
        return int(info.mid)

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> int:
        """paho subscribe to several filters in one request."""
        try:
            rc, mid = self.client.subscribe(list(topics))
        except ValueError as err:
            raise TransportError(f"cannot subscribe to {list(topics)}: {err}") from err
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) or mid is None:
            raise TransportError(f"cannot subscribe to {list(topics)}: {mqtt.error_string(rc)}")
        return int(mid)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with manual acknowledgement."""
        self.client.ack(mid, qos)

    def stop(self) -> None:
        """Disconnect (the will is not sent) and join paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()
