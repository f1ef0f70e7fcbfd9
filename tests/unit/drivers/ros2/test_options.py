"""Ros2Options validation and the driver's sample config (a complete gateway config)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.ros2 import DRIVER, Ros2Options, TopicOptions, dds
from drivers.ros2.batching import batch_window_ns
from gateway.config import load_config
from gateway.plugins import driver_names, load_driver
from tests.helpers import sample_config_path


def test_registered_and_sample_config_loads() -> None:
    assert "ros2" in driver_names()
    assert load_driver("ros2") is DRIVER
    loaded = load_config(sample_config_path("ros2"))
    devices = [d for d in loaded.config.devices if d.driver == "ros2"]
    assert devices
    options = loaded.driver_options[devices[0].name]
    assert isinstance(options, Ros2Options)
    assert options.patterns and options.topics
    assert options.network.peers == ["127.0.0.1"]


def test_options_need_something_to_read() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        Ros2Options()
    with pytest.raises(ValidationError, match="unmapped type"):
        Ros2Options(topics=[TopicOptions(name="/odom", type="nav_msgs/msg/Odometry")])
    with pytest.raises(ValidationError):
        Ros2Options(patterns=["*"], unknown_key=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Ros2Options(patterns=["*"], domain_id=233)
    ok = Ros2Options.model_validate({"topics": [{"name": "PSM1/measured_js"}]})
    assert ok.topics[0].topic == "/PSM1/measured_js"


def test_loopback_config_xml() -> None:
    xml = dds.loopback_config()
    for part in ('<NetworkInterface name="lo"/>', "<AllowMulticast>false</AllowMulticast>",
                 '<Peer address="127.0.0.1"/>', "<ParticipantIndex>auto</ParticipantIndex>",
                 "<MaxAutoParticipantIndex>50</MaxAutoParticipantIndex>"):
        assert part in xml
    custom = dds.loopback_config(dds.NetworkOptions(config_xml="<CycloneDDS/>"))
    assert custom == "<CycloneDDS/>"
    quoted = dds.loopback_config(dds.NetworkOptions(interface='l"o'))
    assert 'name=\'l"o\'' in quoted


def test_pick_domain_id_in_range() -> None:
    ids = {dds.pick_domain_id() for _ in range(50)}
    assert all(1 <= i <= 200 for i in ids) and len(ids) > 1


def test_qos_mapping() -> None:
    qos = dds.make_qos(dds.SENSOR_DATA_QOS)
    assert dds.offered_reliability(qos) == "best_effort"
    assert dds.offered_reliability(dds.make_qos(dds.ROS_DEFAULT_QOS)) == "reliable"
    assert dds.offered_reliability(None) is None


def test_batch_window_defaults_and_caps() -> None:
    options = Ros2Options(patterns=["*"])
    assert options.batch_window_ms == 20.0
    # each reader's cap is a fifth of its stale limit (the router passes limit // 5)
    stale_100ms, depth, ms = 100_000_000 // 5, options.qos.depth, 1_000_000
    # defaults: 100 Hz and 1 kHz topics, stale floor 100 ms, depth 100 -> the full 20 ms
    assert batch_window_ns(20.0, [(stale_100ms, depth, 100.0), (stale_100ms, depth, 1000.0)]) \
        == 20 * ms
    assert batch_window_ns(20.0, []) == 20 * ms
    assert batch_window_ns(0.0, [(stale_100ms, depth, 100.0)]) == 0
    # a fifth of the shortest stale limit (stale_min_ms 0, 5 periods at 1 kHz = 5 ms)
    assert batch_window_ns(20.0, [(None, depth, 100.0), (5 * ms // 5, depth, 1000.0)]) == ms
    # a quarter of the shortest reader history: depth 5 at 100 Hz = 50 ms of samples
    assert batch_window_ns(20.0, [(None, 5, 100.0), (stale_100ms, depth, 100.0)]) \
        == 12_500_000
    assert batch_window_ns(100.0, [(None, 100, 1000.0)]) == 25 * ms
