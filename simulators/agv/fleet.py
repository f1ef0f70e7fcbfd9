"""A simulated VDA 5050 fleet on a real MQTT broker, with scriptable faults.

Each vehicle is its own paho client (as real vehicles are): at connect it sets its MQTT
Will (connection CONNECTIONBROKEN, retained, QoS 1), then publishes ONLINE (retained) and
its factsheet (retained). State goes out at ``rate_hz`` (``tick``) and at once on events
(a fault, an e-stop). Faults: FATAL/WARNING errors, e-stop, dropped state messages
(headerIds taken but never sent: the source-side loss medgw must record), an abrupt
disconnect (the broker publishes the Will), a restart (headerIds from 0), a graceful
OFFLINE and malformed messages. ``history`` records every state headerId taken.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.agv.vehicle import AgvVehicle, ms_floor

MALFORMED = {
    "json": b'{"headerId": 1, "timestamp": ',
    "type": b'{"headerId": "seven", "timestamp": "2026-01-01T00:00:00.000Z"}',
    "version": None,  # built per vehicle: a well-formed state claiming version 9.9.9
}


@dataclass(frozen=True)
class Published:
    """One state headerId taken: sent, or dropped on purpose."""

    serial: str
    header_id: int
    timestamp_ns: int
    dropped: bool  # on purpose (drop_states)
    version: str
    failed: bool = False  # the broker was unreachable


@dataclass
class FleetConfig:
    """Where the fleet connects and what it is made of."""

    host: str = "127.0.0.1"
    port: int = 1883
    vehicles: int = 4
    rate_hz: float = 2.0
    versions: tuple[str, ...] = ("2.0.0", "3.0.0")  # assigned round-robin
    interface: str = "uagv"
    manufacturer: str = "medgw-sim"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # TLS towards the broker when set
    state_qos: int = 0  # the spec's choice for state
    keepalive_s: int = 5  # short: the broker publishes a dead vehicle's Will soon

    def serials(self) -> list[str]:
        """Return the vehicles' serial numbers."""
        return [f"agv-{i + 1:02d}" for i in range(self.vehicles)]


@dataclass
class SimVehicle:
    """A vehicle, its client and its fault switches."""

    model: AgvVehicle
    client: mqtt.Client | None = None
    drop_next: int = 0
    online: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class AgvFleet:
    """The fleet: start/stop, ``tick`` (one state per vehicle) and the fault methods."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        versions = config.versions or ("2.0.0",)
        self.vehicles: dict[str, SimVehicle] = {
            serial: SimVehicle(AgvVehicle(serial, versions[i % len(versions)],
                                          config.manufacturer, config.interface,
                                          start_leg=i))
            for i, serial in enumerate(config.serials())}
        self.history: list[Published] = []
        self.reconnects: dict[str, int] = {}  # per vehicle: connections after the first
        self._history_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ connection
    def _publish(self, vehicle: SimVehicle, subtopic: str, payload: bytes, qos: int = 0,
                 retain: bool = False) -> bool:
        """Publish and wait until written (QoS 0) or acknowledged; False if it failed."""
        assert vehicle.client is not None
        info = vehicle.client.publish(vehicle.model.topic(subtopic), payload, qos, retain)
        try:
            info.wait_for_publish(5.0)
        except (RuntimeError, ValueError):  # not connected (the broker is down)
            return False
        return info.is_published()

    def connect(self, serial: str, timeout_s: float = 10.0) -> None:
        """Connect one vehicle: its Will first; ONLINE and the factsheet at every (re)connect."""
        vehicle = self.vehicles[serial]
        model = vehicle.model
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agv-sim-{serial}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self.config.password)
        if self.config.ca_file is not None:
            client.tls_set(ca_certs=self.config.ca_file)
        will = json.dumps(model.connection("CONNECTIONBROKEN")).encode()
        client.will_set(model.topic("connection"), will, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        up = threading.Event()

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                return
            # on the network thread: publish, never wait here, never take vehicle.lock (a
            # tick holding it may be waiting for this thread); other topics' headerIds only
            online = json.dumps(model.connection("ONLINE")).encode()
            sheet = json.dumps(model.factsheet()).encode()
            c.publish(model.topic("connection"), online, 1, True)
            c.publish(model.topic("factsheet"), sheet, 1, True)
            self.reconnects[serial] = self.reconnects.get(serial, -1) + 1
            up.set()

        client.on_connect = on_connect
        client.connect(self.config.host, self.config.port, self.config.keepalive_s)
        client.loop_start()
        if not up.wait(timeout_s):
            client.loop_stop()
            raise ConnectionError(f"vehicle {serial}: no CONNACK from "
                                  f"{self.config.host}:{self.config.port}")
        vehicle.client = client
        vehicle.online = True

    def start(self) -> None:
        """Connect every vehicle."""
        for serial in self.vehicles:
            self.connect(serial)

    def stop(self) -> None:
        """Stop the clock thread; every vehicle says OFFLINE and disconnects cleanly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for serial, vehicle in self.vehicles.items():
            if vehicle.online:
                self.offline(serial)

    def offline(self, serial: str) -> None:
        """Graceful: publish OFFLINE (retained) and disconnect (the Will is not sent)."""
        vehicle = self.vehicles[serial]
        with vehicle.lock:
            if vehicle.client is None:
                return
            self._publish(vehicle, "connection",
                          json.dumps(vehicle.model.connection("OFFLINE")).encode(), 1, True)
            vehicle.client.disconnect()
            vehicle.client.loop_stop()
            vehicle.client, vehicle.online = None, False

    def disconnect(self, serial: str) -> None:
        """Abrupt: drop the TCP connection without DISCONNECT, so the broker sends the Will."""
        vehicle = self.vehicles[serial]
        with vehicle.lock:
            client, vehicle.client, vehicle.online = vehicle.client, None, False
        if client is None:
            return
        client.loop_stop()
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restart(self, serial: str) -> None:
        """A vehicle reboot: connection dropped, headerIds from 0, connect again (ONLINE)."""
        self.disconnect(serial)
        self.vehicles[serial].model.restart_numbering()
        self.connect(serial)

    # ------------------------------------------------------------------ state
    def publish_state(self, serial: str) -> Published | None:
        """Send one state of ``serial`` now (or drop it on purpose); None when offline."""
        vehicle = self.vehicles[serial]
        with vehicle.lock:
            if vehicle.client is None:
                return None
            now = time.time_ns()
            doc = vehicle.model.state(now)
            dropped = vehicle.drop_next > 0
            failed = False
            if dropped:
                vehicle.drop_next -= 1
            else:
                failed = not self._publish(vehicle, "state", json.dumps(doc).encode(),
                                           self.config.state_qos)
        record = Published(serial, doc["headerId"], ms_floor(now), dropped,
                           vehicle.model.version, failed)
        with self._history_lock:
            self.history.append(record)
        return record

    def tick(self, dt: float | None = None) -> None:
        """Advance every vehicle one period and send its state."""
        dt = 1.0 / self.config.rate_hz if dt is None else dt
        for serial, vehicle in self.vehicles.items():
            vehicle.model.advance(dt)
            self.publish_state(serial)

    def run(self, duration_s: float | None = None) -> None:
        """Tick on the wall clock (in a thread) until ``stop`` or ``duration_s``."""
        def loop() -> None:
            period = 1.0 / self.config.rate_hz
            start = time.monotonic()
            ticks = 0
            while not self._stop.is_set():
                if duration_s is not None and time.monotonic() - start >= duration_s:
                    return
                self.tick(period)
                ticks += 1
                self._stop.wait(max(0.0, start + ticks * period - time.monotonic()))

        self._thread = threading.Thread(target=loop, name="agv-fleet", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ faults
    def error(self, serial: str, error_type: str = "batteryFault", level: str = "FATAL",
              description: str = "") -> None:
        """Raise an error (2.x: WARNING/FATAL; 3.0 also URGENT/CRITICAL) and send state."""
        model = self.vehicles[serial].model
        model.errors.append({"errorType": error_type, "errorLevel": level,
                             "errorDescription": description or f"simulated {error_type}"})
        self.publish_state(serial)

    def clear_errors(self, serial: str) -> None:
        """Clear every error and send state."""
        self.vehicles[serial].model.errors.clear()
        self.publish_state(serial)

    def estop(self, serial: str, kind: str = "MANUAL") -> None:
        """Press (MANUAL/REMOTE, 2.x also AUTOACK) or release (NONE) the e-stop; send state."""
        self.vehicles[serial].model.estop = kind
        self.publish_state(serial)

    def field_violation(self, serial: str, violated: bool = True) -> None:
        """Set the protective field violation and send state."""
        self.vehicles[serial].model.field_violation = violated
        self.publish_state(serial)

    def mode(self, serial: str, mode: str) -> None:
        """Change the operating mode (e.g. MANUAL) and send state."""
        self.vehicles[serial].model.mode = mode
        self.publish_state(serial)

    def drop_states(self, serial: str, count: int) -> None:
        """The next ``count`` states take their headerIds but are never sent."""
        self.vehicles[serial].drop_next += count

    def malformed(self, serial: str, kind: str = "json") -> None:
        """Send one malformed state (bad JSON, a wrong type, an unknown version)."""
        vehicle = self.vehicles[serial]
        payload = MALFORMED.get(kind)
        if payload is None:
            doc = vehicle.model.state()
            vehicle.model.headers["state"] -= 1  # garbage does not take a headerId
            doc["version"] = "9.9.9"
            payload = json.dumps(doc).encode()
        with vehicle.lock:
            if vehicle.client is not None:
                self._publish(vehicle, "state", payload)

    def sent(self, serial: str | None = None) -> list[Published]:
        """Return the state records sent (not dropped), of one vehicle or all."""
        with self._history_lock:
            return [p for p in self.history if not p.dropped and not p.failed
                    and (serial is None or p.serial == serial)]
