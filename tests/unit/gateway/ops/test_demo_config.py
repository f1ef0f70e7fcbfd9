"""The demo's embedded config: valid, and the run-time values go to the right devices."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.ops.demo import Simulators, demo_config_data


def test_run_time_values_reach_each_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # restored after the test
    data, name = demo_config_data(None)
    sims = Simulators(data, fleet_port=41883)
    devices = {d["name"]: d for d in data["devices"]}
    assert devices["davinci-or1"]["options"]["domain_id"] == sims.domain
    assert devices["rmf-fleet"]["options"]["domain_id"] == sims.rmf_domain != sims.domain
    assert devices["agv-fleet"]["options"]["broker"] == {"host": "127.0.0.1", "port": 41883}
    assert devices["carrier-fleet"]["options"]["endpoint"] == (
        f"opc.tcp://127.0.0.1:{sims.opcua_port}/medgw/carriers")
    loaded = parse_config(data, name)
    assert [(d.name, d.driver) for d in loaded.config.devices] == [
        ("davinci-or1", "ros2"), ("carrier-fleet", "opcua"), ("agv-fleet", "vda5050"),
        ("rmf-fleet", "ros2")]
