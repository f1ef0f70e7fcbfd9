"""``medgw discover ros2`` against the surgical-robot simulator on DDS (loopback, own domain).

Then the printed device block goes through ``config init``, ``config check`` and
``run --test``, which reads the same topics through the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from simulators.surgical_robot import RobotSimulator, SimConfig
from tests.helpers import unique_domain_id
from tests.integration.dayone.support import medgw

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def robot() -> Iterator[RobotSimulator]:
    """One arm publishing on a random domain, pinned to loopback (the simulator's default)."""
    sim = RobotSimulator(SimConfig(domain_id=unique_domain_id(), arms=["PSM1"], rate_hz=50,
                                   topics=["measured_js", "measured_cp"])).open().start()
    try:
        yield sim
    finally:
        sim.stop()


def test_discover_ros2_lists_topics_and_writes_a_block(robot: RobotSimulator, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    domain = str(robot.config.domain_id)
    found = medgw("discover", "ros2", "--domain", domain, "--seconds", "5", "--transport",
                  "cyclonedds", "--name", "psm1", "--out", "robot.yaml")
    assert found.exit_code == 0, found.output
    out = found.output
    assert "/PSM1/measured_js [sensor_msgs/msg/JointState] (mapped)" in out
    assert "/PSM1/measured_cp [geometry_msgs/msg/TransformStamped] (mapped)" in out
    assert "Eclipse Cyclone DDS" in out and "QoS offered reliable/" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  /PSM1/measured_js"))
    samples = int(line.split(", ")[1].split()[0])
    assert samples > 0, line
    options = yaml.safe_load(Path("robot.yaml").read_text())[0]["options"]
    assert options["domain_id"] == robot.config.domain_id
    assert options["patterns"] == ["/PSM1/*"]
    js = next(t for t in options["topics"] if t["name"] == "/PSM1/measured_js")
    assert js["type"] == "sensor_msgs/msg/JointState" and js["rate_hz"] > 0

    init = medgw("config", "init", "-o", "medgw.yaml", "--device", "robot.yaml", "--site", "or",
                 "--gateway", "edge", "--spool-dir", "spool")
    assert init.exit_code == 0, init.output
    assert medgw("config", "check", "medgw.yaml").exit_code == 0
    dry = medgw("run", "--test", "-c", "medgw.yaml", "--seconds", "3")
    assert dry.exit_code == 0, dry.output
    assert "device psm1 (ros2): connected" in dry.output
    stream = next(ln for ln in dry.output.splitlines()
                  if ln.startswith("  stream PSM1.measured_js:"))
    assert int(stream.split(": ")[1].split()[0]) > 0, stream


def test_discover_ros2_says_when_nothing_is_there(tmp_path: Path) -> None:
    found = medgw("discover", "ros2", "--domain", str(unique_domain_id()), "--seconds", "1",
                  "--transport", "cyclonedds")
    assert found.exit_code == 0, found.output
    assert "nothing published" in found.output
