"""What a server offers, for ``medgw discover opcua``: endpoints and a browse summary.

Read-only like the driver: GetEndpoints, Browse and Read only. The summary proposes browse
patterns from the tree, then resolves them with the driver's own discovery
(discovery.py), so the streams and fields shown are exactly those a run would make.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua
from pydantic import ValidationError

from drivers.opcua.discovery import Discovery, browse_children, discover
from drivers.opcua.mapping import is_numeric_type
from drivers.opcua.options import BrowseSpec, OpcUaOptions
from drivers.opcua.session import translate_error
from gateway.errors import DeviceError

_OBJECTS = ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder))
_POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
SUPPORTED_POLICIES = ("None", "Basic256Sha256")  # what the driver's options accept


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of the server: its security and the user tokens it accepts."""

    url: str
    policy: str  # short name: None, Basic256Sha256, Aes256_Sha256_RsaPss, ...
    mode: str  # None, Sign, SignAndEncrypt
    tokens: tuple[str, ...]  # Anonymous, UserName, Certificate, IssuedToken
    security_level: int
    certificate: bytes  # the server certificate presented (DER), may be empty

    @property
    def supported(self) -> bool:
        """True when the driver can use this endpoint's policy and mode."""
        return self.policy in SUPPORTED_POLICIES and (self.policy == "None") == (
            self.mode == "None")


@dataclass(frozen=True)
class BrowsedVariable:
    """A variable found by the browse summary, as the driver would monitor it."""

    path: str
    node_id: str  # nsu=<namespace uri>;... (stable when namespace indexes move)
    stream: str
    field: str
    data_type: str
    unit: str


@dataclass(frozen=True)
class BrowseSummary:
    """Streams (by name) with their variables, what was skipped, the proposed patterns."""

    patterns: tuple[str, ...]
    streams: dict[str, tuple[BrowsedVariable, ...]]
    skipped: tuple[tuple[str, str], ...]  # (path, data type) of non-numeric variables
    renamed: tuple[str, ...]
    truncated: bool = False  # the walk stopped at max_nodes


def validated(data: dict[str, Any]) -> OpcUaOptions:
    """OpcUaOptions from discover's arguments; what they refuse is a DeviceError naming it."""
    try:
        return OpcUaOptions.model_validate(data)
    except ValidationError as err:
        detail = "; ".join(
            "not an address of the form opc.tcp://host:port/path" if e["loc"] == ("endpoint",)
            else f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
            for e in err.errors())
        raise DeviceError(f"OPC UA {data.get('endpoint')!r}: {detail}") from err


def policy_name(uri: str) -> str:
    """Return the short name of a security policy URI (``...#Basic256Sha256``)."""
    return uri[len(_POLICY_PREFIX):] if uri.startswith(_POLICY_PREFIX) else uri


async def get_endpoints(endpoint: str, timeout: float = 5.0) -> list[EndpointInfo]:
    """Ask the server for its endpoints (an unsecured GetEndpoints, as every client does)."""
    options = validated({"endpoint": endpoint, "security_policy": "None",
                         "browse": (BrowseSpec(pattern="*"),), "request_timeout_s": timeout})
    probe = Client(endpoint, timeout=timeout)
    try:
        raw = await asyncio.wait_for(probe.connect_and_get_server_endpoints(), timeout * 2)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        raise translate_error(err, options) from err
    out = []
    for e in raw:
        tokens = tuple(dict.fromkeys(ua.UserTokenType(t.TokenType).name
                                     for t in e.UserIdentityTokens or []))
        out.append(EndpointInfo(
            url=e.EndpointUrl, policy=policy_name(e.SecurityPolicyUri or ""),
            mode=ua.MessageSecurityMode(e.SecurityMode).name, tokens=tokens,
            security_level=int(e.SecurityLevel or 0),
            certificate=bytes(e.ServerCertificate or b"")))
    return out


def best_endpoint(endpoints: list[EndpointInfo]) -> EndpointInfo | None:
    """The endpoint a config should use: SignAndEncrypt over Sign over None, driver's only."""
    rank = {"SignAndEncrypt": 2, "Sign": 1, "None": 0}
    usable = [e for e in endpoints if e.supported]
    if not usable:
        return None
    return max(usable, key=lambda e: (rank.get(e.mode, -1), e.security_level))


def _escape(name: str) -> str:
    """A browse name as one literal pattern segment (glob characters and '/' neutralized)."""
    return "".join(f"[{c}]" if c in "*?[" else "?" if c == "/" else c for c in name)


def propose_patterns(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Browse patterns covering variable paths: ``Parent/*/*`` where sibling objects repeat.

    Objects directly below Objects keep their name (``*/*`` would take in the Server
    object's variables too); one object alone keeps its name.
    """
    by_parent: dict[tuple[str, ...], set[str]] = {}
    for path in paths:
        by_parent.setdefault(path[:-2], set()).add(path[-2] if len(path) > 1 else "")
    patterns: list[str] = []
    for parent, objects in sorted(by_parent.items()):
        head = [_escape(p) for p in parent]
        if "" in objects:
            patterns.append("*")
        named = sorted(o for o in objects if o)
        if parent and len(named) > 1:
            patterns.append("/".join([*head, "*", "*"]))
        else:
            patterns.extend("/".join([*head, _escape(o), "*"]) for o in named)
    return tuple(dict.fromkeys(patterns))


async def walk(client: Client, max_depth: int = 6,
               max_nodes: int = 20_000) -> tuple[list[tuple[ua.NodeId, tuple[str, ...]]], bool]:
    """Every variable below Objects (not below ns 0 objects such as Server), by browse path.

    Objects are descended into, variables are not (their children are properties).
    Returns the variables and whether the walk stopped at ``max_nodes``.
    """
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(_OBJECTS, ())]
    found: list[tuple[ua.NodeId, tuple[str, ...]]] = []
    seen: set[ua.NodeId] = {_OBJECTS}
    for _ in range(max_depth):
        if not level:
            break
        children = await browse_children(client, [node for node, _ in level])
        nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for (_, path), refs in zip(level, children, strict=True):
            for ref in refs:
                node = ref.NodeId
                if node in seen or (not path and node.NamespaceIndex == 0):
                    continue
                seen.add(node)
                entry = (node, (*path, ref.BrowseName.Name or ""))
                (found if ref.NodeClass == ua.NodeClass.Variable else nxt).append(entry)
        if len(seen) > max_nodes:
            return found, True
        level = nxt
    return found, False


async def summarize(client: Client, endpoint: str, max_depth: int = 6,
                    max_nodes: int = 20_000) -> BrowseSummary:
    """Browse the tree, propose patterns, and resolve them as the driver does."""
    variables, truncated = await walk(client, max_depth, max_nodes)
    types = await _data_types(client, [node for node, _ in variables])
    numeric = [path for (node, path) in variables if _is_numeric(types.get(node))]
    skipped = tuple(("/".join(path), _type_name(types.get(node)))
                    for node, path in variables if not _is_numeric(types.get(node)))
    patterns = propose_patterns(numeric)
    if not patterns:
        return BrowseSummary((), {}, skipped, (), truncated)
    options = OpcUaOptions(endpoint=endpoint, security_policy="None",
                           browse=tuple(BrowseSpec(pattern=p) for p in patterns))
    found: Discovery = await discover(client, options)
    namespaces = await client.get_namespace_array()
    streams: dict[str, list[BrowsedVariable]] = {}
    for var in found.variables:
        streams.setdefault(var.stream, []).append(BrowsedVariable(
            var.path, expanded_id(var.node_id, namespaces), var.stream, var.field,
            _type_name(types.get(var.node_id)), var.unit))
    renamed = tuple(f"{r.path} -> {r.name}: {r.reason}" for r in found.renamed)
    return BrowseSummary(patterns, {k: tuple(v) for k, v in streams.items()}, skipped,
                         renamed, truncated)


def expanded_id(node: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=<uri>;s=...``: a node id that survives the server renumbering namespaces."""
    text = node.to_string()
    if node.NamespaceIndex == 0 or node.NamespaceIndex >= len(namespaces):
        return text
    _, _, ident = text.partition(";")
    return f"nsu={namespaces[node.NamespaceIndex]};{ident}"


async def _data_types(client: Client, nodes: list[ua.NodeId]) -> dict[ua.NodeId, ua.NodeId]:
    out: dict[ua.NodeId, ua.NodeId] = {}
    for start in range(0, len(nodes), 500):
        chunk = nodes[start:start + 500]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.DataType)
                              for n in chunk]
        for node, dv in zip(chunk, await client.uaclient.read(params), strict=True):
            value = dv.Value.Value if dv.Value is not None else None
            if isinstance(value, ua.NodeId):
                out[node] = value
    return out


def _is_numeric(dtype: ua.NodeId | None) -> bool:
    return dtype is not None and is_numeric_type(dtype.NamespaceIndex, dtype.Identifier)


def _type_name(dtype: ua.NodeId | None) -> str:
    if dtype is None:
        return "?"
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return str(ua.ObjectIdNames.get(dtype.Identifier, dtype.to_string()))
    return str(dtype.to_string())


def require_endpoints(endpoints: list[EndpointInfo], endpoint: str) -> None:
    """DeviceError when the server offers no endpoint at all."""
    if not endpoints:
        raise DeviceError(f"OPC UA server {endpoint} answered GetEndpoints with no endpoint")
