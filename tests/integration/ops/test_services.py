"""Real mosquitto / influxd / victoria-metrics: start, restart on the same port, kill."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests

from gateway.errors import ServiceError
from gateway.ops.services import (
    InfluxdService,
    MosquittoService,
    VictoriaMetricsService,
    free_port,
    port_open,
)
from tests.helpers import InfluxTarget, wait_until

pytestmark = pytest.mark.integration


def _mqtt_round_trip(broker: MosquittoService, payload: bytes) -> bytes:
    """Subscribe, publish QoS 1 and return what the subscriber received."""
    topic = f"medgw/test/{uuid.uuid4().hex}"
    received: list[bytes] = []
    subscribed = threading.Event()

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int,
                     reason_codes: list[mqtt.ReasonCode], props: object) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(bytes(msg.payload))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                      protocol=mqtt.MQTTv5)
    sub.on_subscribe = on_subscribe
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                      protocol=mqtt.MQTTv5)
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5.0), "no SUBACK"
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5.0)
        assert info.is_published()
        wait_until(lambda: received, timeout=5.0, message="MQTT message")
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    return received[0]


def test_mosquitto_round_trip_restart_and_kill(mosquitto: MosquittoService) -> None:
    """A QoS 1 message goes through; the broker restarts on the same port; kill frees it."""
    port = mosquitto.port
    assert _mqtt_round_trip(mosquitto, b"first") == b"first"
    mosquitto.kill()
    assert not mosquitto.running
    wait_until(lambda: not port_open(mosquitto.host, port), timeout=5.0, message="port closed")
    mosquitto.start()
    assert mosquitto.port == port
    assert _mqtt_round_trip(mosquitto, b"second") == b"second"
    mosquitto.stop()
    assert not mosquitto.running
    assert "mosquitto version" in mosquitto.log_path.read_text()


def test_mosquitto_config_is_loopback_only(mosquitto: MosquittoService) -> None:
    """The generated config listens on 127.0.0.1 and keeps persistence in the work dir."""
    text = mosquitto.config_path.read_text()
    assert f"listener {mosquitto.port} 127.0.0.1" in text
    assert str(mosquitto.workdir) in text


def test_mosquitto_persistence_keeps_queued_message(tmp_path: Path) -> None:
    """With persistence on, a QoS 1 message queued for an offline session survives a restart."""
    broker = MosquittoService(tmp_path, persistence=True)
    topic = f"medgw/persist/{uuid.uuid4().hex}"
    received: list[bytes] = []
    with broker:
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="persist-sub",
                          protocol=mqtt.MQTTv311, clean_session=False)
        subscribed = threading.Event()
        sub.on_subscribe = lambda *args: subscribed.set()
        sub.connect(broker.host, broker.port)
        sub.loop_start()
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5.0), "no SUBACK"
        sub.disconnect()
        sub.loop_stop()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="persist-pub")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish(topic, b"kept", qos=1).wait_for_publish(timeout=5.0)
        pub.disconnect()
        pub.loop_stop()
        broker.restart()  # SIGTERM saves the in-memory database
        sub.on_message = lambda client, userdata, msg: received.append(bytes(msg.payload))
        sub.connect(broker.host, broker.port)
        sub.loop_start()
        try:
            wait_until(lambda: received, timeout=5.0, message="queued message after restart")
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert received == [b"kept"]
    assert not broker.running


def test_mosquitto_bad_config_reports_log_tail(tmp_path: Path) -> None:
    """A config mosquitto rejects gives a ServiceError carrying the log tail."""
    broker = MosquittoService(tmp_path, extra_config=["no_such_option 1"])
    with pytest.raises(ServiceError, match="no_such_option"):
        broker.start()
    assert not broker.running


def test_port_in_use_is_a_clear_error(tmp_path: Path, mosquitto: MosquittoService) -> None:
    """Starting a second broker on a taken port fails with a clear error."""
    clash = MosquittoService(tmp_path, port=mosquitto.port)
    with pytest.raises(ServiceError, match="already in use"):
        clash.start()


def test_influxd_start_write_query_kill_restart(influxd_private: InfluxTarget) -> None:
    """influxd answers /ping, keeps written points across SIGKILL + restart (WAL)."""
    service = influxd_private.service
    assert requests.get(f"{service.url}/ping", timeout=5).status_code == 204
    resp = requests.post(f"{service.url}/write",
                         params={"db": influxd_private.database, "precision": "ns"},
                         data=b"m,site=a v=1.5,seq=1i 1000\nm,site=a v=2.5,seq=2i 2000\n",
                         timeout=5)
    assert resp.status_code == 204, resp.text
    rows = influxd_private.query("SELECT v, seq FROM m")
    assert [(r["time"], r["v"], r["seq"]) for r in rows] == [(1000, 1.5, 1), (2000, 2.5, 2)]
    port = service.port
    service.kill()
    assert not service.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.url}/ping", timeout=2)
    service.start()
    assert service.port == port
    assert influxd_private.count("m") == 2


def test_influxd_shared_database_is_fresh(influxdb: InfluxTarget) -> None:
    """The per-test database exists and is empty."""
    names = [row["name"] for row in influxdb.query("SHOW DATABASES")]
    assert influxdb.database in names
    assert influxdb.query("SHOW MEASUREMENTS") == []


def test_influxd_config_binds_loopback(tmp_path: Path) -> None:
    """Both the HTTP and the RPC bind address are on 127.0.0.1 and data stays in the work dir."""
    service = InfluxdService(tmp_path, port=free_port())
    text = service.config_text()
    assert f'bind-address = "127.0.0.1:{service.port}"' in text
    assert f'bind-address = "127.0.0.1:{service.rpc_port}"' in text
    assert "reporting-disabled = true" in text
    with service:
        assert (tmp_path / "meta").is_dir()
    assert not service.running


def test_victoria_write_export_restart(victoria: VictoriaMetricsService) -> None:
    """VM takes line protocol on /write and /api/v2/write; data survives a restart."""
    resp = requests.post(f"{victoria.url}/write", params={"precision": "ns"},
                         data=b"m,site=a v=1.5 1000000000\nm,site=a v=2.5 2000000000\n", timeout=5)
    assert resp.status_code == 204, resp.text
    resp = requests.post(f"{victoria.url}/api/v2/write",
                         params={"bucket": "b", "org": "o", "precision": "ns"},
                         data=b"m,site=b v=3.5 3000000000\n", timeout=5)
    assert resp.status_code == 204, resp.text
    series = {s["metric"]["site"]: s for s in victoria.export('{__name__="m_v"}')}
    assert series["a"]["values"] == [1.5, 2.5]
    assert series["a"]["timestamps"] == [1000, 2000]
    assert series["b"]["values"] == [3.5]
    victoria.restart()
    assert victoria.count_samples('{__name__="m_v"}') == 3
    victoria.kill()
    assert not victoria.running
    victoria.start()
    assert victoria.count_samples('{__name__="m_v"}') == 3


def test_services_die_with_their_parent(tmp_path: Path) -> None:
    """A service whose parent process is SIGKILLed does not outlive it."""
    script = (
        "import os, sys\n"
        "from gateway.ops.services import MosquittoService\n"
        "m = MosquittoService(sys.argv[1]); m.start()\n"
        "print(m.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[3], check=False)
    assert done.returncode == -9, done.stderr
    pid = int(done.stdout.split()[0])

    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat.split(")")[-1].split()[0] in ("Z", "X")  # dead, waiting to be reaped

    wait_until(gone, timeout=10.0, message=f"mosquitto pid {pid} to die")
