"""The ros_ws medgw_ros node for real: colcon-built, started under rclpy, data in InfluxDB.

ros_ws is built with colcon and the PyPI ROS 2 build wheels (once per session), the
installed ``medgw_node`` is started from a shell environment sourced from
``install/setup.sh`` with a ``config`` parameter naming a gateway config (a ros2 device on
``transport: rclpy``, real mosquitto and influxd from the fixtures). The ros2 driver reads
through the node itself (one DDS stack); SIGINT drains the gateway before it exits, and
every published message is counted in InfluxDB by InfluxQL. The medgw_msgs package built
beside it is what lets the rclpy transport read medgw_msgs/msg/OperatingState, a type no
wheel ships.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from gateway.ops.services import MosquittoService, free_port
from gateway.server.ingest import Ingest
from tests.helpers import InfluxTarget

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SITE, GATEWAY, DEVICE = "test-site", "gw-ros", "psm"


def _config(broker: MosquittoService, influx: InfluxTarget, domain: int, health_port: int,
            spool: Path) -> dict[str, Any]:
    return {
        "site": SITE, "gateway": GATEWAY,
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "publisher": {"max_batch_samples": 500, "max_latency_ms": 50},
        "spool": {"dir": str(spool)},
        "influxdb": {"backend": "v1", "url": influx.url, "database": influx.database,
                     "flush_ms": 100, "batch_lines": 5000},
        "health": {"enabled": True, "port": health_port},
        "devices": [{"name": DEVICE, "driver": "ros2", "options": {
            "transport": "rclpy", "domain_id": domain, "patterns": ["/PSM1/*"],
            "qos": {"depth": 1000}, "default_rate_hz": 100}}],
    }


def _received(port: int) -> dict[str, float]:
    """Return medgw_samples_received per stream from the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "medgw_samples_received":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["stream"]] = sample.value
    return out


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError as err:
        return err


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass  # the node's status server is not up yet
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def ingest(mosquitto: MosquittoService, influxdb: InfluxTarget, domain_id: int,
           tmp_path: Path) -> Iterator[tuple[dict[str, Any], Ingest]]:
    """The node's config (as a dict) and an ingest worker for it, subscribed."""
    data = _config(mosquitto, influxdb, domain_id, free_port(), tmp_path / "spool")
    worker = Ingest(parse_config(data, "<ros_ws test config>"))
    worker.start()
    worker.wait_subscribed(15)
    try:
        yield data, worker
    finally:
        worker.stop()


def test_medgw_node_reads_through_rclpy_into_influxdb_and_drains(
        ros_ws_install: Path, ingest: tuple[dict[str, Any], Ingest], influxdb: InfluxTarget,
        start_publisher: Any, domain_id: int, tmp_path: Path) -> None:
    from tests.integration.rclpy.conftest import ros_env, sourced_env

    data, _worker = ingest
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(data))
    env = sourced_env(ros_ws_install, ros_env(domain_id))
    node_exe = ros_ws_install / "medgw_ros" / "lib" / "medgw_ros" / "medgw_node"
    log = (tmp_path / "node.log").open("w+")
    node = subprocess.Popen([str(node_exe), "--ros-args", "-p", f"config:={config}",
                             "-p", "health_period_s:=1.0"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        n = 300
        result = start_publisher("--arms", "PSM1", "--rate", "100", "--count", str(n)).result(90)
        published = result["published"]
        assert result["acked"] is True
        streams = {f"{SITE}/{DEVICE}/{t.strip('/').replace('/', '.')}": c
                   for t, c in published.items()}
        port = data["health"]["port"]
        _wait(lambda: {s: _received(port).get(s) for s in streams} == streams, 30,
              f"the node's rings to hold {streams} (/metrics: {_safe(_received, port)})")
        node.send_signal(signal.SIGINT)  # now: the drain must deliver what is in the rings
        assert node.wait(timeout=60) == 0, "the node did not acknowledge every sample"
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
    assert "all samples acknowledged: True" in output, output[-3000:]
    assert "read through this node" in output
    assert "second DDS stack" not in output
    where = "\"stream\"='PSM1.measured_js' AND \"joint\"='outer_yaw'"
    counts = {
        "joint_state": lambda: influxdb.count("joint_state", where=where),
        "pose": lambda: influxdb.count("pose", where="\"stream\"='PSM1.measured_cp'"),
        "robot_event": lambda: influxdb.count("robot_event", where="\"stream\"='PSM1.error'"),
    }
    want = {"joint_state": published["/PSM1/measured_js"],
            "pose": published["/PSM1/measured_cp"], "robot_event": published["/PSM1/error"]}
    _wait(lambda: {k: f() for k, f in counts.items()} == want, 30, f"InfluxDB to hold {want}")


def test_built_medgw_msgs_lets_rclpy_read_its_operating_state(ros_ws_install: Path,
                                                              domain_id: int) -> None:
    from tests.integration.rclpy.conftest import ros_env, sourced_env

    env = sourced_env(ros_ws_install, ros_env(domain_id))
    script = HERE / "operating_state_roundtrip.py"
    done = subprocess.run([sys.executable, str(script)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ENABLED,FAULT,ENABLED"


def _crtk_msgs_package(src: Path) -> None:
    """Write a crtk_msgs package (OperatingState only, CRTK's definition) under ``src``."""
    from drivers.ros2.msgs import CRTK_OPERATING_STATE_MSG

    medgw = ROOT / "ros_ws" / "src" / "medgw_msgs"
    pkg = src / "crtk_msgs"
    (pkg / "msg").mkdir(parents=True)
    for name in ("CMakeLists.txt", "package.xml"):
        (pkg / name).write_text((medgw / name).read_text().replace("medgw_msgs", "crtk_msgs"))
    (pkg / "msg" / "OperatingState.msg").write_text(CRTK_OPERATING_STATE_MSG)


def test_a_built_crtk_msgs_lets_rclpy_read_crtk_operating_state(domain_id: int,
                                                                tmp_path: Path) -> None:
    """What the README tells a dVRK user: build crtk_msgs, source it, the topic is read."""
    from tests.integration.rclpy.conftest import colcon_build, ros_env, sourced_env

    _crtk_msgs_package(tmp_path / "src")
    install = colcon_build(tmp_path, tmp_path / "src")
    env = sourced_env(install, ros_env(domain_id))
    done = subprocess.run([sys.executable, str(HERE / "operating_state_roundtrip.py"),
                           "crtk_msgs"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ENABLED,FAULT,ENABLED"
