"""Finding the variables to monitor: browse-name globs below Objects, or explicit node ids.

Every request is batched (one Browse per tree level, one Read for all data types, one
TranslateBrowsePaths + Read for all EngineeringUnits), so a fleet of hundreds of carriers
is discovered in a handful of round trips. Read-only: Browse, Read and Translate only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua

from drivers.opcua.mapping import (
    is_numeric_type,
    segment_matches,
    snake_case,
    split_pattern,
    topic_safe,
)
from drivers.opcua.options import BrowseSpec, NodeSpec, OpcUaOptions
from gateway.errors import DeviceError

_BATCH = 500
_OBJECTS = ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder))
_HIERARCHICAL = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
_HAS_PROPERTY = ua.NodeId(ua.Int32(ua.ObjectIds.HasProperty))
_TRUE: Any = True
_FALSE: Any = False
_MASK_OBJ_VAR = ua.NodeClass.Object | ua.NodeClass.Variable


@dataclass(frozen=True)
class Candidate:
    """A variable that may be monitored, before its type and unit are known."""

    node_id: ua.NodeId
    stream: str
    field: str
    path: str
    unit: str | None = None
    fields: tuple[str, ...] | None = None  # the stream's fixed field list, if configured


@dataclass(frozen=True)
class Variable:
    """A numeric variable to monitor: where it goes (stream, field) and its unit."""

    node_id: ua.NodeId
    stream: str
    field: str
    unit: str
    path: str
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Discovery:
    """Result of one discovery pass."""

    variables: tuple[Variable, ...]
    skipped: tuple[str, ...]  # paths of non-numeric or unreadable variables


async def discover(client: Client, options: OpcUaOptions) -> Discovery:
    """Resolve every browse pattern and explicit node of the options into variables."""
    candidates: list[Candidate] = []
    for spec in options.browse:
        candidates.extend(await browse_pattern(client, spec))
    if options.nodes:
        candidates.extend(await explicit_nodes(client, options.nodes))
    unique: dict[tuple[str, str], Candidate] = {}
    for cand in candidates:
        unique.setdefault((cand.stream, cand.field), cand)
    return await _typed(client, list(unique.values()))


async def browse_pattern(client: Client, spec: BrowseSpec) -> list[Candidate]:
    """Walk the pattern level by level from Objects; return matching variables."""
    segments = split_pattern(spec.pattern)
    level: list[tuple[ua.NodeId, tuple[str, ...], int]] = [(_OBJECTS, (), ua.NodeClass.Object)]
    for segment in segments:
        children = await browse_children(client, [node for node, _, _ in level])
        level = [
            (ref.NodeId, (*path, ref.BrowseName.Name), ref.NodeClass)
            for (_, path, _), refs in zip(level, children, strict=True)
            for ref in refs
            if segment_matches(segment, ref.BrowseName.Name or "")
        ]
    out = []
    for node_id, path, node_class in level:
        if node_class != ua.NodeClass.Variable:
            continue
        field = snake_case(path[-1])
        if field in spec.exclude or (spec.fields is not None and field not in spec.fields):
            continue
        stream = topic_safe(path[-2]) if len(path) > 1 else "objects"
        out.append(Candidate(node_id, stream, field, "/".join(path), fields=spec.fields))
    return out


async def browse_children(client: Client,
                          nodes: Sequence[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Browse the hierarchical children (objects and variables) of many nodes at once."""
    results: list[list[ua.ReferenceDescription]] = []
    for start in range(0, len(nodes), _BATCH):
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = 0
        params.NodesToBrowse = [
            ua.BrowseDescription(NodeId=node, BrowseDirection=ua.BrowseDirection.Forward,
                                 ReferenceTypeId=_HIERARCHICAL, IncludeSubtypes=True,
                                 NodeClassMask=_MASK_OBJ_VAR,
                                 ResultMask=ua.BrowseResultMask.All)
            for node in nodes[start:start + _BATCH]
        ]
        for result in await client.uaclient.browse(params):
            refs = list(result.References or [])
            point = result.ContinuationPoint
            while point:
                more = await client.uaclient.browse_next(
                    ua.BrowseNextParameters(ContinuationPoints=[point]))
                refs.extend(more[0].References or [])
                point = more[0].ContinuationPoint
            results.append(refs)
    return results


async def explicit_nodes(client: Client, nodes: Sequence[NodeSpec]) -> list[Candidate]:
    """Parse configured node ids (resolving ``nsu=`` URIs against the server's namespaces)."""
    namespaces: list[str] | None = None
    out = []
    for spec in nodes:
        try:
            node_id = ua.NodeId.from_string(spec.node_id)
        except ua.UaStringParsingError as err:
            raise DeviceError(f"nodes: invalid node_id {spec.node_id!r}: {err}") from err
        uri = getattr(node_id, "NamespaceUri", None)
        if uri:
            namespaces = namespaces or await client.get_namespace_array()
            if uri not in namespaces:
                raise DeviceError(f"nodes: namespace {uri!r} of {spec.node_id!r} is not on"
                                  " the server")
            node_id = ua.NodeId(node_id.Identifier, ua.Int16(namespaces.index(uri)))
        out.append(Candidate(node_id, spec.stream, spec.field, spec.node_id, spec.unit))
    return out


async def _typed(client: Client, candidates: list[Candidate]) -> Discovery:
    """Keep numeric variables and attach their EngineeringUnits."""
    if not candidates:
        return Discovery((), ())
    types = await _read(client, [c.node_id for c in candidates], ua.AttributeIds.DataType)
    numeric: list[Candidate] = []
    skipped: list[str] = []
    for cand, dv in zip(candidates, types, strict=True):
        dtype = dv.Value.Value if _good(dv) and dv.Value else None
        if isinstance(dtype, ua.NodeId) and is_numeric_type(dtype.NamespaceIndex,
                                                             dtype.Identifier):
            numeric.append(cand)
        else:
            skipped.append(cand.path)
    units = await _units(client, [c for c in numeric if c.unit is None])
    variables = tuple(
        Variable(c.node_id, c.stream, c.field,
                 c.unit if c.unit is not None else units.get(c.node_id, ""), c.path, c.fields)
        for c in numeric
    )
    return Discovery(variables, tuple(skipped))


async def _units(client: Client, candidates: list[Candidate]) -> dict[ua.NodeId, str]:
    """Read the EngineeringUnits property (DisplayName) of many variables at once."""
    if not candidates:
        return {}
    element = ua.RelativePathElement(
        ReferenceTypeId=_HAS_PROPERTY, IsInverse=_FALSE, IncludeSubtypes=_TRUE,
        TargetName=ua.QualifiedName("EngineeringUnits", 0))
    paths = [ua.BrowsePath(StartingNode=c.node_id,
                           RelativePath=ua.RelativePath(Elements=[element]))
             for c in candidates]
    found: list[tuple[ua.NodeId, ua.NodeId]] = []
    for start in range(0, len(paths), _BATCH):
        results = await client.uaclient.translate_browsepaths_to_nodeids(
            paths[start:start + _BATCH])
        for cand, result in zip(candidates[start:start + _BATCH], results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                found.append((cand.node_id, result.Targets[0].TargetId))
    values = await _read(client, [eu for _, eu in found], ua.AttributeIds.Value)
    units = {}
    for (node, _), dv in zip(found, values, strict=True):
        eu = dv.Value.Value if _good(dv) and dv.Value else None
        if isinstance(eu, ua.EUInformation) and eu.DisplayName and eu.DisplayName.Text:
            units[node] = str(eu.DisplayName.Text)
    return units


async def _read(client: Client, nodes: Sequence[ua.NodeId | ua.ExpandedNodeId],
                attribute: ua.AttributeIds) -> list[ua.DataValue]:
    out: list[ua.DataValue] = []
    for start in range(0, len(nodes), _BATCH):
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attribute)
                              for n in nodes[start:start + _BATCH]]
        out.extend(await client.uaclient.read(params))
    return out


def _good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or dv.StatusCode.is_good()
