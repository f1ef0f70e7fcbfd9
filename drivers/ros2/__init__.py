"""ROS 2 driver: CRTK/ROS 2 topics over Cyclone DDS (ROS 2 wire conventions) into the rings.

The names below are the package's public face; the rest of gateway/ imports nothing else
of it (the dependency rule in the README's Layout section).
"""

import logging
import threading

from drivers.ros2.check import CheckSink, TopicSeen
from drivers.ros2.driver import Ros2Driver
from drivers.ros2.mapping import CRTK_STATES, TYPE_TABLE
from drivers.ros2.options import Ros2Options, TopicOptions
from drivers.ros2.replay import replay_from_config
from drivers.ros2.rmf import ROBOT_MODES as RMF_ROBOT_MODES
from drivers.ros2.rmf_streams import ROBOT_EVENTS as RMF_ROBOT_EVENTS
from drivers.ros2.transport import make_transport
from gateway.driver import DriverInfo
from gateway.errors import DeviceError

DRIVER = DriverInfo(
    name="ros2",
    options_model=Ros2Options,
    create=Ros2Driver,
    description="ROS 2 topics (JointState, poses, twists, wrenches, CRTK state, Open-RMF "
                "fleet, door and lift states) over DDS",
)

__all__ = ["CRTK_STATES", "DRIVER", "RMF_ROBOT_EVENTS", "RMF_ROBOT_MODES", "TYPE_TABLE",
           "Ros2Driver", "Ros2Options", "TopicOptions", "TopicSeen", "discover_topics",
           "replay_from_config"]


def discover_topics(options: Ros2Options, listen_s: float) -> dict[str, TopicSeen]:
    """Every topic selected by ``options`` that DDS discovery shows within ``listen_s``.

    For ``medgw discover ros2``: the check's sink (check.py) on the device's transport,
    reading (never writing) the topics of mapped types to count their samples and rate.
    """
    transport = make_transport(options, logging.getLogger("medgw.discover.ros2"))
    sink = CheckSink(options, transport)
    stop = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            transport.run(sink, stop)
        except Exception as err:  # raised below
            errors.append(err)

    thread = threading.Thread(target=main, daemon=True, name="ros2-discover")
    thread.start()
    stop.wait(listen_s)
    stop.set()
    thread.join(timeout=max(5.0, listen_s))
    if errors:
        raise DeviceError(f"ros2 discover: {transport.name} session failed: {errors[0]}")
    with sink.lock:
        return {t: s for t, s in sink.topics.items() if s.pubs}
