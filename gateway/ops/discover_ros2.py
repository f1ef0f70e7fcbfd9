"""``medgw discover ros2``: topics, types, publishers, QoS offered, rates seen; a device block."""

from __future__ import annotations

from typing import Any

import yaml

from drivers.ros2 import TYPE_TABLE, Ros2Options, TopicSeen, discover_topics


def options_for(domain: int, transport: str, interface: str | None,
                peers: tuple[str, ...]) -> Ros2Options:
    """The options of the listening session: every topic, the given network."""
    network: dict[str, Any] = {}
    if interface is not None:
        network["interface"] = interface
    if peers:
        network["peers"] = list(peers)
    return Ros2Options.model_validate({"domain_id": domain, "transport": transport,
                                       "patterns": ["*"], "network": network})


def topic_lines(seen: TopicSeen) -> list[str]:
    """One topic: its type (mapped or not), each publisher, samples and rate."""
    pub = next(iter(seen.pubs.values()))
    ros_type = pub.ros_type or pub.type_name
    mapped = "mapped" if ros_type in TYPE_TABLE else "not mapped: not read"
    rate = f", {seen.samples} samples, {seen.rate_hz():.1f} Hz" if seen.read else ""
    lines = [f"  {seen.topic} [{ros_type}] ({mapped}){rate}"]
    for p in seen.pubs.values():
        qos = f"{p.reliability or '?'}/{p.durability or '?'}"
        lines.append(f"      publisher {p.node or p.participant[:16] or '?'}:"
                     f" {p.vendor or 'unknown vendor'}, QoS offered {qos}")
    if seen.refused:
        lines.append(f"      refused: {seen.refused}")
    return lines


def patterns_for(topics: list[str]) -> list[str]:
    """Globs covering the topics: one per namespace (``/PSM1/*``), else the topic itself."""
    out = []
    for topic in topics:
        parts = topic.strip("/").split("/")
        out.append(f"/{parts[0]}/*" if len(parts) > 1 else topic)
    return sorted(set(out))


def _rate(hz: float) -> float:
    return float(round(hz)) if hz >= 10 else round(hz, 2)


def device_block(found: dict[str, TopicSeen], options: Ros2Options, name: str,
                 network_given: bool) -> dict[str, Any]:
    """A ros2 device entry: domain, transport, patterns of the mapped topics, their rates."""
    mapped = {t: s for t, s in found.items()
              if (next(iter(s.pubs.values())).ros_type or "") in TYPE_TABLE}
    block: dict[str, Any] = {"domain_id": options.domain_id, "transport": options.transport}
    if network_given:
        block["network"] = {"interface": options.network.interface,
                            "peers": list(options.network.peers)}
    block["patterns"] = patterns_for(sorted(mapped)) or ["/*"]
    topics = []
    for topic, seen in sorted(mapped.items()):
        entry: dict[str, Any] = {"name": topic,
                                 "type": next(iter(seen.pubs.values())).ros_type}
        if seen.rate_hz() > 0:
            entry["rate_hz"] = _rate(seen.rate_hz())
        topics.append(entry)
    if topics:
        block["topics"] = topics
    return {"name": name, "driver": "ros2", "options": block}


def ros2_report(domain: int, seconds: float, name: str, transport: str = "auto",
                interface: str | None = None, peers: tuple[str, ...] = ()) -> tuple[str, str]:
    """Listen, then return (the listing, the device block as YAML)."""
    options = options_for(domain, transport, interface, peers)
    found = discover_topics(options, seconds)
    mapped = sum(1 for s in found.values()
                 if (next(iter(s.pubs.values())).ros_type or "") in TYPE_TABLE)
    lines = [f"ROS 2 domain {domain} ({transport}, {options.network.interface}), listened"
             f" {seconds:g} s: {len(found)} topic(s), {mapped} of a type the mapping table"
             " knows"]
    for topic in sorted(found):
        lines += topic_lines(found[topic])
    if not found:
        lines.append("  nothing published: is the robot up, is the domain id right, is the"
                     " network (--interface, --peer) the robot's?")
    block = device_block(found, options, name, interface is not None or bool(peers))
    head = ("# medgw device block (under devices: in the gateway config); rates are those"
            " seen,\n# used to size rings and mark a silent topic stale\n")
    return "\n".join(lines), head + yaml.safe_dump([block], sort_keys=False, width=100)
