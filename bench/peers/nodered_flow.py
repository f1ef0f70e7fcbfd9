"""The Node-RED peer of bench_peers.py: its flow and settings, written for one run.

The flow is what a competent integrator builds with node-red-contrib-opcua and
node-red-contrib-influxdb (both in bench/peers/nodered/package.json):

    inject (once at start) -> function "subscribe every carrier variable" (one msg per
    node id) -> OpcUa-Client (action subscribe, 100 ms) -> function "to point"
    (measurement carrier, tags carrier + variable, field value, time = SourceTimestamp)
    -> join (arrays of 500 points, or 100 ms after the first) -> influxdb batch.

The OPC UA client uses the same publishing interval (100 ms) as medgw's default bench
config. A failed InfluxDB write drops its batch (that is what the node does). The editor
and admin API are off (``httpAdminRoot: false``): only the runtime is measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NODERED_DIR = Path(__file__).resolve().parent / "nodered"
VARIABLES = ("RouteProgress", "RoutePosition", "Speed", "Battery", "PayloadTemperature",
             "DoorOpen", "MissionState", "SpecimenCount", "ActiveAlarm")
BATCH_POINTS = 500
BATCH_TIMEOUT_S = 0.1

_SUBSCRIBE_ALL = """
const ids = env.get("NODE_IDS").split(",");
for (const id of ids) {
    node.send({topic: id, payload: 100, interval: 100});
}
return null;
"""

_TO_POINT = """
const s = String(msg.topic).split(";s=")[1];
if (!s) { return null; }
const dot = s.lastIndexOf(".");
let v = msg.payload;
if (typeof v === "boolean") { v = v ? 1 : 0; }
if (typeof v !== "number" || !isFinite(v)) { return null; }
msg.payload = {
    measurement: "carrier",
    tags: {carrier: s.substring(0, dot), variable: s.substring(dot + 1)},
    fields: {value: v},
    timestamp: msg.sourceTimestamp,
};
return msg;
"""


def node_ids(namespace: int, carriers: int) -> list[str]:
    """Return the node id of every numeric carrier variable of the simulator."""
    return [f"ns={namespace};s=carrier-{i + 1:02d}.{var}"
            for i in range(carriers) for var in VARIABLES]


def flow(endpoint: str, influx_port: int, database: str) -> list[dict[str, Any]]:
    """Return the Node-RED flow (a list of node objects, the flows.json format)."""
    tab = "medgw-peer"
    return [
        {"id": tab, "type": "tab", "label": "carriers to InfluxDB"},
        {"id": "n1-endpoint", "type": "OpcUa-Endpoint", "endpoint": endpoint, "secpol": "None",
         "secmode": "None", "none": True, "login": False, "usercert": False},
        {"id": "n2-influxdb", "type": "influxdb", "hostname": "127.0.0.1", "port": influx_port,
         "protocol": "http", "database": database, "name": "", "usetls": False,
         "influxdbVersion": "1.x"},
        {"id": "n3-inject", "type": "inject", "z": tab, "name": "at start", "once": True,
         "onceDelay": "0.5", "repeat": "", "topic": "", "payload": "", "payloadType": "date",
         "wires": [["n4-subscribe"]]},
        {"id": "n4-subscribe", "type": "function", "z": tab, "name": "subscribe all",
         "func": _SUBSCRIBE_ALL, "outputs": 1, "wires": [["n5-opcua"]]},
        {"id": "n5-opcua", "type": "OpcUa-Client", "z": tab, "endpoint": "n1-endpoint",
         "action": "subscribe", "time": 100, "timeUnit": "ms", "certificate": "n",
         "securitymode": "None", "securitypolicy": "None", "useTransport": False,
         "setstatusandtime": False, "keepsessionalive": True, "name": "carriers",
         "deadbandtype": "a", "deadbandvalue": 0,
         "wires": [["n6-to-point"], [], []]},
        {"id": "n6-to-point", "type": "function", "z": tab, "name": "to point",
         "func": _TO_POINT, "outputs": 1, "wires": [["n7-join"]]},
        {"id": "n7-join", "type": "join", "z": tab, "name": "batch", "mode": "custom",
         "build": "array", "property": "payload", "propertyType": "msg", "key": "topic",
         "joiner": "\\n", "joinerType": "str", "accumulate": False,
         "timeout": str(BATCH_TIMEOUT_S), "count": str(BATCH_POINTS), "reduceRight": False,
         "wires": [["n8-write"]]},
        {"id": "n8-write", "type": "influxdb batch", "z": tab, "influxdb": "n2-influxdb",
         "precision": "", "retentionPolicy": "", "name": "write", "wires": []},
    ]


def settings(user_dir: Path, port: int) -> str:
    """Return a settings.js: runtime only, loopback, warnings only."""
    return (
        "module.exports = {\n"
        f"  userDir: {json.dumps(str(user_dir))},\n"
        "  flowFile: 'flows.json',\n"
        "  uiHost: '127.0.0.1',\n"
        f"  uiPort: {port},\n"
        "  httpAdminRoot: false,\n"
        "  httpNodeRoot: false,\n"
        "  credentialSecret: false,\n"
        "  externalModules: {autoInstall: false, palette: {allowInstall: false},"
        " modules: {allowInstall: false}},\n"
        "  telemetry: {enabled: false},\n"
        "  diagnostics: {enabled: false},\n"
        "  logging: {console: {level: 'warn', metrics: false, audit: false}},\n"
        "};\n")


def write_user_dir(user_dir: Path, endpoint: str, influx_port: int, database: str,
                   port: int) -> Path:
    """Write flows.json and settings.js into ``user_dir``; return the settings file."""
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "flows.json").write_text(
        json.dumps(flow(endpoint, influx_port, database), indent=1), encoding="utf-8")
    path = user_dir / "settings.js"
    path.write_text(settings(user_dir, port), encoding="utf-8")
    return path


def argv(settings_path: Path) -> list[str]:
    """Return the command line that runs Node-RED with these settings."""
    red = NODERED_DIR / "node_modules" / "node-red" / "red.js"
    return ["node", str(red), "--settings", str(settings_path),
            "--userDir", str(settings_path.parent)]
