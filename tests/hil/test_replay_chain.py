"""`medgw replay`: a rosbag2 recording (written by rosbags) lands in InfluxDB, marked historical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from typer.testing import CliRunner

from drivers.ros2.msgs import CRTK_OPERATING_STATE_MSG
from gateway.config import parse_config
from gateway.ops.cli import app
from gateway.ops.services import MosquittoService
from gateway.server.ingest import Ingest
from tests.helpers import InfluxTarget, wait_until
from tests.integration.gateway.test_chain import PayloadRecorder
from tests.integration.ros2.test_replay import write_bag

pytestmark = pytest.mark.hil
N = 400  # larger than the ring below: the replay must wait for the publisher, not overwrite


def test_replay_bag_into_influxdb(tmp_path: Path, mosquitto: MosquittoService,
                                  influxdb: InfluxTarget) -> None:
    store: Any = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(CRTK_OPERATING_STATE_MSG, "crtk_msgs/msg/OperatingState"))
    written = write_bag(tmp_path / "bag", store, StoragePlugin.MCAP, N)
    config = {
        "site": "or-hospital", "gateway": "replayer",
        "mqtt": {"port": mosquitto.port},
        "publisher": {"ring_capacity": 128, "max_batch_samples": 50, "max_latency_ms": 20},
        "influxdb": {"url": influxdb.url, "database": influxdb.database, "flush_ms": 100},
        "devices": [{"name": "davinci", "driver": "ros2", "options": {
            "patterns": ["/PSM1/*"], "exclude": ["/PSM1/setpoint_*"]}}],
    }
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(config))
    recorder = PayloadRecorder(mosquitto)
    ingest = Ingest(parse_config(config, str(path)))
    ingest.start()
    ingest.wait_subscribed(15)
    try:
        result = CliRunner().invoke(app, ["replay", str(tmp_path / "bag"), "-c", str(path)])
        assert result.exit_code == 0, result.output
        expected = 2 * N + len(written["state"])  # measured_js, measured_cv_raw, events
        assert f"{expected} samples appended, {expected} acknowledged" in result.output
        wait_until(lambda: ingest.stats.samples == expected, 20, message="ingest of the bag")
    finally:
        ingest.stop()
        recorder.close()
    for joint in ("yaw", "pitch"):
        assert influxdb.count("joint_state", "position",
                              f"\"stream\"='PSM1.measured_js' AND \"joint\"='{joint}'") == N
    rows = influxdb.query("SELECT position FROM joint_state WHERE \"joint\"='yaw' ORDER BY time")
    stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in written["js"]]
    assert [row["time"] for row in rows] == stamps  # original timestamps, not replay time
    assert influxdb.count("robot_event", where="\"stream\"='PSM1.operating_state'") == len(
        written["state"])
    docs = [orjson.loads(p) for p in recorder.payloads]
    parts = [part for doc in docs for part in (doc if isinstance(doc, list) else [doc])]
    assert parts and all(part["historical"] for part in parts)  # bundles: every part
