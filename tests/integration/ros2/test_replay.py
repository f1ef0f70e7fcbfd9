"""Bag replay: rosbag2 files written by rosbags (sqlite3 and MCAP) into rings, exact counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from drivers.ros2.msgs import CRTK_OPERATING_STATE_MSG
from drivers.ros2.replay import BagError, replay_bag, replay_from_config
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.model import StreamKind
from gateway.ring import RingStore

pytestmark = pytest.mark.integration
NS = 1_000_000_000
T0 = 1_700_000_000 * NS


@pytest.fixture(scope="module")
def typestore() -> Any:
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(CRTK_OPERATING_STATE_MSG, "crtk_msgs/msg/OperatingState"))
    return store


def _header(store: Any, stamp_ns: int, frame: str = "base") -> Any:
    T = store.types
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
        sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id=frame)


def write_bag(path: Path, store: Any, plugin: StoragePlugin, n: int) -> dict[str, Any]:
    """Write a bag; return what was written (the expectations are derived from it)."""
    T = store.types
    written: dict[str, Any] = {"js": [], "twist": [], "state": [], "log": []}
    writer = Writer(path, version=8, storage_plugin=plugin)
    writer.open()
    try:
        js = writer.add_connection("/PSM1/measured_js", "sensor_msgs/msg/JointState",
                                   typestore=store)
        tw = writer.add_connection("/PSM1/measured_cv_raw", "geometry_msgs/msg/Twist",
                                   typestore=store)
        st = writer.add_connection("/PSM1/operating_state", "crtk_msgs/msg/OperatingState",
                                   typestore=store)
        sp = writer.add_connection("/PSM1/setpoint_js", "sensor_msgs/msg/JointState",
                                   typestore=store)
        odom = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for k in range(n):
            stamp = T0 + k * 10_000_000
            log_time = stamp + 2_000_000  # recorded 2 ms after the source stamp
            msg = T["sensor_msgs/msg/JointState"](
                header=_header(store, stamp), name=["yaw", "pitch"],
                position=np.array([0.01 * k, -0.01 * k]), velocity=np.array([1.0, 2.0]),
                effort=np.array([0.1 * k, 0.2]))
            writer.write(js, log_time, bytes(store.serialize_cdr(msg, js.msgtype)))
            writer.write(sp, log_time, bytes(store.serialize_cdr(msg, sp.msgtype)))
            written["js"].append(msg)
            written["log"].append(log_time)
            twist = T["geometry_msgs/msg/Twist"](
                linear=T["geometry_msgs/msg/Vector3"](x=float(k), y=0.0, z=-1.0),
                angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.5, z=0.25))
            writer.write(tw, log_time, bytes(store.serialize_cdr(twist, tw.msgtype)))
            written["twist"].append(twist)
            if k % 25 == 0:
                state = T["crtk_msgs/msg/OperatingState"](
                    header=_header(store, stamp), state="FAULT" if k else "ENABLED",
                    is_homed=True, is_busy=False)
                writer.write(st, log_time, bytes(store.serialize_cdr(state, st.msgtype)))
                written["state"].append(state)
        writer.write(js, T0 + n * 10_000_000, b"\x00\x01\x00\x00not a joint state")
        odom_msg = T["nav_msgs/msg/Odometry"]
        writer.write(odom, T0, bytes(store.serialize_cdr(_default_odometry(store, odom_msg),
                                                          odom.msgtype)))
    finally:
        writer.close()
    return written


def _default_odometry(store: Any, cls: Any) -> Any:
    T = store.types
    cov = np.zeros(36)
    pose = T["geometry_msgs/msg/PoseWithCovariance"](pose=T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=cov)
    twist = T["geometry_msgs/msg/TwistWithCovariance"](twist=T["geometry_msgs/msg/Twist"](
        linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)), covariance=cov)
    return cls(header=_header(store, T0), child_frame_id="base", pose=pose, twist=twist)


@pytest.mark.parametrize("plugin", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_replay_bag_exact(tmp_path: Path, typestore: Any, plugin: StoragePlugin) -> None:
    n = 120
    written = write_bag(tmp_path / "bag", typestore, plugin, n)
    store = RingStore(4096)
    result = replay_bag(tmp_path / "bag", store, site="or-3", device="davinci")
    assert result.messages == 3 * n + len(written["state"]) + 1
    assert result.appended == {
        "or-3/davinci/PSM1.measured_js": n, "or-3/davinci/PSM1.setpoint_js": n,
        "or-3/davinci/PSM1.measured_cv_raw": n,
        "or-3/davinci/PSM1.operating_state": len(written["state"]),
    }
    assert result.quarantined == 1
    assert result.skipped_topics == {"/odom": "unmapped type nav_msgs/msg/Odometry"}
    js = store.ring("or-3/davinci/PSM1.measured_js").snapshot()
    assert js is not None
    assert js.timestamps_ns.tolist() == [
        m.header.stamp.sec * NS + m.header.stamp.nanosec for m in written["js"]]
    assert js.receive_ns is not None and js.receive_ns.tolist() == written["log"]
    assert js.values.tolist() == [[m.position[0], m.velocity[0], m.effort[0],
                                   m.position[1], m.velocity[1], m.effort[1]]
                                  for m in written["js"]]
    assert js.stream.fields[0] == "yaw.position" and js.stream.channel_tag == "joint"
    twist = store.ring("or-3/davinci/PSM1.measured_cv_raw").snapshot()
    assert twist is not None
    assert twist.timestamps_ns.tolist() == written["log"]  # no header: the log time
    assert twist.values[:, 0].tolist() == [m.linear.x for m in written["twist"]]
    states = store.ring("or-3/davinci/PSM1.operating_state").snapshot()
    assert states is not None and states.stream.kind is StreamKind.EVENT
    assert states.text == tuple(m.state for m in written["state"])
    assert result.first_ns == T0
    assert result.last_ns == written["log"][-1]  # the unstamped Twist carries log time


def test_replay_from_config_uses_device_selection(tmp_path: Path, typestore: Any) -> None:
    write_bag(tmp_path / "bag", typestore, StoragePlugin.SQLITE3, 30)
    config = {
        "site": "hospital-a", "gateway": "edge-1",
        "devices": [{"name": "robot-a", "driver": "ros2", "options": {
            "patterns": ["/PSM1/*"], "exclude": ["/PSM1/setpoint_*"],
            "topics": [{"name": "/PSM1/measured_js", "stream": "arm1-joints"}]}}],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = parse_config(config, str(path))
    store = RingStore(1024)
    result = replay_from_config(tmp_path / "bag", loaded, store)
    assert set(result.appended) == {"hospital-a/robot-a/arm1-joints",
                                    "hospital-a/robot-a/PSM1.measured_cv_raw",
                                    "hospital-a/robot-a/PSM1.operating_state"}
    assert result.appended["hospital-a/robot-a/arm1-joints"] == 30
    assert result.skipped_topics["/PSM1/setpoint_js"].startswith("not selected")
    # replaying twice appends the same samples again (InfluxDB overwrites: idempotent)
    again = replay_from_config(tmp_path / "bag", loaded, store)
    assert again.appended == result.appended
    ring = store.ring("hospital-a/robot-a/arm1-joints")
    snap = ring.snapshot()
    assert snap is not None and snap.timestamps_ns[:30].tolist() == snap.timestamps_ns[30:].tolist()
    with pytest.raises(ConfigError, match="ros2 device 'nope'"):
        replay_from_config(tmp_path / "bag", loaded, store, device="nope")


def test_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="cannot open bag"):
        replay_bag(tmp_path / "missing", RingStore(16))
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"this is not sqlite")
    with pytest.raises(BagError):
        replay_bag(junk, RingStore(16))


def test_rmf_bag_fans_out_per_robot(tmp_path: Path) -> None:
    """A bag of Open-RMF FleetStates replays into streams per robot, seq holes as gaps."""
    from drivers.ros2 import msgs
    from drivers.ros2.msgs import RMF_MSG_DEFINITIONS

    store = get_typestore(Stores.ROS2_HUMBLE)
    for ros_type, definition in RMF_MSG_DEFINITIONS.items():
        store.register(get_types_from_msg(definition, ros_type))
    writer = Writer(tmp_path / "rmf", version=8, storage_plugin=StoragePlugin.SQLITE3)
    writer.open()
    conn = writer.add_connection("/fleet_states", "rmf_fleet_msgs/msg/FleetState",
                                 typestore=store)
    seqs = [0, 1, 2, 4, 5]  # 3 was lost at the source
    for k, seq in enumerate(seqs):
        stamp = T0 + k * 100_000_000
        loc = msgs.Location(msgs.Time(stamp // NS, stamp % NS), float(k), 1.0, 0.0, False,
                            0.0, "L1", 0)
        message = msgs.FleetState("tug", [msgs.RobotState(
            name, "m", "t", seq, msgs.RobotMode(2, 0, ""), 50.0, loc, []) for name in
            ("tug1", "tug2")])
        writer.write(conn, stamp, message.serialize())
    writer.close()
    rings = RingStore(64)
    result = replay_bag(tmp_path / "rmf", rings, site="ward", device="rmf")
    assert result.messages == 5 and result.quarantined == 0
    for name in ("tug1", "tug2"):
        assert result.appended[f"ward/rmf/fleet_states.tug.{name}"] == 5
        assert result.appended[f"ward/rmf/fleet_states.tug.{name}.source_gap"] == 1
        gap = rings.ring(f"ward/rmf/fleet_states.tug.{name}.source_gap").snapshot()
        assert gap is not None and gap.values.tolist() == [[3.0, 3.0, 1.0]]
    assert result.first_ns == T0 and result.last_ns == T0 + 400_000_000
