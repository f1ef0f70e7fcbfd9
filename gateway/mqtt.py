"""The one MQTT client factory: paho with auth and TLS (the publisher, the ingest, drivers)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig, TlsConfig


def make_mqtt_client(mqtt_config: MqttConfig, client_id: str, password: str | None,
                     protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                     manual_ack: bool = False) -> mqtt.Client:
    """Build a paho client for medgw's own broker: auth, TLS and the in-flight window."""
    client = paho_client(client_id, username=mqtt_config.username, password=password,
                         tls=mqtt_config.tls, protocol=protocol, manual_ack=manual_ack)
    client.max_inflight_messages_set(mqtt_config.max_inflight)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def paho_client(client_id: str, *, username: str | None = None, password: str | None = None,
                tls: TlsConfig | None = None,
                protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                manual_ack: bool = False) -> mqtt.Client:
    """Build a paho client (callback API 2) with optional username/password and TLS.

    TLS files that cannot be read raise OSError, ssl.SSLError or ValueError (callers
    translate them at their boundary).
    """
    clean_session = None if protocol == mqtt.MQTTv5 else True  # MQTT 5 takes clean_start
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         manual_ack=manual_ack, clean_session=clean_session)
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set(ca_certs=str(tls.ca_file),
                       certfile=str(tls.cert_file) if tls.cert_file else None,
                       keyfile=str(tls.key_file) if tls.key_file else None,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def describe_reason(reason: ReasonCode | int) -> str:
    """Turn a CONNACK/PUBACK reason into words an operator can act on."""
    text = str(reason)
    value = getattr(reason, "value", reason)
    if value in (4, 5, 134, 135):
        return f"{text}: check the username, password and ACL configured for this gateway"
    return text
