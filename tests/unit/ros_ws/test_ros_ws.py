"""What can be checked of the colcon workspace without a ROS installation."""

from __future__ import annotations

import ast
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from drivers.ros2.mapping import TYPE_TABLE, decode
from drivers.ros2.msgs import CRTK_OPERATING_STATE_MSG

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "ros_ws" / "src"
PACKAGES = sorted(p.parent for p in SRC.glob("*/package.xml"))
MSG_FILES = sorted(SRC.glob("*/msg/*.msg"))


def deps(package_dir: Path) -> dict[str, set[str]]:
    """Return package.xml dependencies by tag (depend, exec_depend, buildtool_depend ...)."""
    root = ET.parse(package_dir / "package.xml").getroot()
    out: dict[str, set[str]] = {}
    for child in root:
        if child.tag.endswith("depend") or child.tag == "member_of_group":
            out.setdefault(child.tag, set()).add((child.text or "").strip())
    return out


def test_workspace_has_both_packages() -> None:
    assert [p.name for p in PACKAGES] == ["medgw_msgs", "medgw_ros"]


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: p.name)
def test_package_xml_is_valid_format3(package_dir: Path) -> None:
    root = ET.parse(package_dir / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == package_dir.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", root.findtext("version") or "")
    for tag in ("description", "maintainer", "license"):
        assert (root.findtext(tag) or "").strip(), f"{tag} missing"
    assert root.find("maintainer").get("email")  # type: ignore[union-attr]
    build_type = root.findtext("export/build_type")
    assert build_type in ("ament_cmake", "ament_python")
    assert build_type in deps(package_dir)["buildtool_depend"]
    marker = "CMakeLists.txt" if build_type == "ament_cmake" else "setup.py"
    assert (package_dir / marker).is_file()


def test_msgs_package_declares_interface_generation() -> None:
    d = deps(SRC / "medgw_msgs")
    assert "rosidl_default_generators" in d["buildtool_depend"]
    assert "rosidl_default_runtime" in d["exec_depend"]
    assert d["member_of_group"] == {"rosidl_interface_packages"}
    cmake = (SRC / "medgw_msgs" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"(msg/[A-Za-z0-9_]+\.msg)"', cmake))
    assert listed == {f"msg/{m.name}" for m in MSG_FILES if m.parent.parent.name == "medgw_msgs"}
    # every package a message refers to is a dependency in CMake and package.xml
    used: set[str] = set()
    for msg in MSG_FILES:
        for _, fields in get_types_from_msg(msg.read_text(), f"medgw_msgs/msg/{msg.stem}").values():
            for _, (_, detail) in fields:
                if isinstance(detail, str) and "/" in detail:
                    used.add(detail.split("/")[0])
    used.discard("medgw_msgs")
    assert used and used <= d["depend"]
    deps_line = re.search(r"DEPENDENCIES([^)]*)\)", cmake)
    assert deps_line is not None and used <= set(deps_line.group(1).split())


def test_node_package_declares_runtime_deps() -> None:
    d = deps(SRC / "medgw_ros")
    assert {"rclpy", "launch", "launch_ros", "medgw_msgs"} <= d["exec_depend"]
    # the rclpy transport's raw subscriptions need the mapped types' type support; the node
    # uses the system's middleware, so it does not pin one
    assert {"sensor_msgs", "geometry_msgs", "std_msgs"} <= d["exec_depend"]
    assert not {dep for dep in d["exec_depend"] if dep.startswith("rmw_")}
    assert (SRC / "medgw_ros" / "resource" / "medgw_ros").is_file()


@pytest.mark.parametrize("msg", MSG_FILES, ids=lambda p: p.stem)
def test_every_msg_parses_with_rosbags(msg: Path) -> None:
    typename = f"{msg.parent.parent.name}/msg/{msg.stem}"
    types_ = get_types_from_msg(msg.read_text(), typename)
    assert typename in types_
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(types_)
    assert typename in store.types


def test_operating_state_matches_crtk_on_the_wire() -> None:
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(CRTK_OPERATING_STATE_MSG, "crtk_msgs/msg/OperatingState"))
    msg = SRC / "medgw_msgs" / "msg" / "OperatingState.msg"
    store.register(get_types_from_msg(msg.read_text(), "medgw_msgs/msg/OperatingState"))
    T = store.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=5, nanosec=6),
                                      frame_id="PSM1")
    payloads = {}
    for typename in ("crtk_msgs/msg/OperatingState", "medgw_msgs/msg/OperatingState"):
        message = T[typename](header=header, state="FAULT", is_homed=True, is_busy=False)
        payloads[typename] = bytes(store.serialize_cdr(message, typename))
    assert payloads["crtk_msgs/msg/OperatingState"] == payloads["medgw_msgs/msg/OperatingState"]
    decoded = decode(TYPE_TABLE["medgw_msgs/msg/OperatingState"],
                     payloads["medgw_msgs/msg/OperatingState"], "/PSM1/operating_state")
    assert decoded.text == "FAULT" and decoded.values.tolist() == [3.0, 1.0, 0.0]
    constants = {name: value for name, _, value in get_types_from_msg(
        msg.read_text(), "medgw_msgs/msg/OperatingState")["medgw_msgs/msg/OperatingState"][0]}
    assert set(constants.values()) == {"DISABLED", "ENABLED", "PAUSED", "FAULT"}


def _console_scripts() -> dict[str, str]:
    """Return the console_scripts entry points declared in medgw_ros/setup.py."""
    tree = ast.parse((SRC / "medgw_ros" / "setup.py").read_text())
    scripts: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "=" in node.value \
                and ":" in node.value:
            name, target = (part.strip() for part in node.value.split("=", 1))
            scripts[name] = target
    return scripts


def test_entry_point_targets_a_main_function() -> None:
    scripts = _console_scripts()
    assert scripts == {"medgw_node": "medgw_ros.node:main"}
    module, func = scripts["medgw_node"].split(":")
    source = (SRC / "medgw_ros" / (module.replace(".", "/") + ".py")).read_text()
    tree = ast.parse(source)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert func in functions
    declared = re.findall(r'declare_parameter\("([a-z_]+)"', source)
    assert "config" in declared


class _Recorder:
    """A stand-in for launch / launch_ros classes: records how it was constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
        "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    modules = {}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Recorder,), {}))
        modules[module_name] = module
    return modules


def test_launch_file_defines_generate_launch_description(monkeypatch: pytest.MonkeyPatch) -> None:
    path = SRC / "medgw_ros" / "launch" / "medgw.launch.py"
    tree = ast.parse(path.read_text())
    assert "generate_launch_description" in {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    description = namespace["generate_launch_description"]()
    assert type(description).__name__ == "LaunchDescription"
    actions = description.args[0]
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert len(nodes) == 1
    node = nodes[0].kwargs
    assert node["package"] == "medgw_ros"
    assert node["executable"] in _console_scripts()
    declared = {a.args[0] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    params = node["parameters"][0]
    used = {v.args[0] for v in params.values() if type(v).__name__ == "LaunchConfiguration"}
    assert "config" in params and used <= declared
    config_default = next(a for a in actions if type(a).__name__ == "DeclareLaunchArgument"
                          and a.args[0] == "config").kwargs["default_value"]
    assert not [a for a in actions if type(a).__name__ == "SetEnvironmentVariable"
                and a.args and a.args[0] == "RMW_IMPLEMENTATION"], "the node must not pin the RMW"
    parts = config_default.args[0]
    assert parts[1:] == ["config", "medgw.yaml"]
    assert (SRC / "medgw_ros" / "config" / "medgw.yaml").is_file()


def test_installed_default_config_is_a_valid_gateway_config() -> None:
    from gateway.config import load_config

    loaded = load_config(SRC / "medgw_ros" / "config" / "medgw.yaml")
    assert any(d.driver == "ros2" for d in loaded.config.devices)
    assert np.all([d.enabled for d in loaded.config.devices])
