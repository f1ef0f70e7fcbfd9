"""Finding the variables to monitor: browse-name globs below Objects, or explicit node ids.

Every request is batched (one Browse per tree level, one Read for all data types, one
TranslateBrowsePaths + Read for all EngineeringUnits), so a fleet of hundreds of carriers
is discovered in a handful of round trips. Read-only: Browse, Read and Translate only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua

from drivers.opcua.mapping import is_numeric_type, segment_matches, split_pattern
from drivers.opcua.naming import (
    Renamed,
    disambiguate,
    field_name,
    field_suffix,
    stream_name,
    stream_suffix,
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
    renamed: tuple[Renamed, ...] = ()  # browse names changed to become stream/field names


@dataclass(frozen=True)
class Hit:
    """A variable matched by a browse pattern: its node and its browse path below Objects."""

    node_id: ua.NodeId
    path: tuple[str, ...]
    spec: BrowseSpec
    twin: bool = False  # another node has the same browse path (e.g. in another namespace)


async def discover(client: Client, options: OpcUaOptions) -> Discovery:
    """Resolve every browse pattern and explicit node of the options into variables."""
    hits: list[Hit] = []
    for spec in options.browse:
        hits.extend(await browse_pattern(client, spec))
    candidates, renamed = name_hits(hits)
    if options.nodes:
        candidates.extend(await explicit_nodes(client, options.nodes))
    unique: dict[tuple[str, str], Candidate] = {}
    for cand in candidates:
        first = unique.setdefault((cand.stream, cand.field), cand)
        if first.node_id != cand.node_id:
            renamed.append(Renamed(cand.path, "", f"not monitored: {cand.stream}.{cand.field}"
                                   f" is already {first.path}"))
    found = await _typed(client, list(unique.values()))
    return Discovery(found.variables, found.skipped, tuple(renamed))


def name_hits(hits: list[Hit]) -> tuple[list[Candidate], list[Renamed]]:
    """Name the streams and fields of browse hits (see naming.py), then apply the filters."""
    unique = list({h.node_id: h for h in hits}.values())  # two patterns may match one node
    shared = {path for path, n in Counter(h.path for h in unique).items() if n > 1}
    unique = [dataclasses.replace(h, twin=h.path in shared) for h in unique]
    notes: list[Renamed] = []
    streams = [_named(stream_name, h.path[-2], "/".join(h.path[:-1]), notes)
               if len(h.path) > 1 else "objects" for h in unique]
    streams, moved = disambiguate(range(len(unique)), streams.__getitem__,
                                  lambda i: "/".join(unique[i].path[:-1]), stream_suffix)
    notes += moved
    fields = {h.path: _named(field_name, h.path[-1], "/".join(h.path), notes) for h in unique}
    by_stream: dict[str, list[Hit]] = {}
    for hit, stream in zip(unique, streams, strict=True):
        by_stream.setdefault(stream, []).append(hit)
    out = []
    for stream, group in by_stream.items():
        names, moved = disambiguate(group, lambda h: fields[h.path], _identity, field_suffix)
        notes += moved
        for hit, field in zip(group, names, strict=True):
            spec = hit.spec
            if field in spec.exclude or (spec.fields is not None and field not in spec.fields):
                continue
            out.append(Candidate(hit.node_id, stream, field, "/".join(hit.path),
                                 fields=spec.fields))
    return out, list(dict.fromkeys(notes))


def _identity(hit: Hit) -> str:
    """A variable's browse path, with its node id when two nodes share that path."""
    return f"{'/'.join(hit.path)}#{hit.node_id.to_string()}" if hit.twin else "/".join(hit.path)


def _named(rule: Callable[[str], tuple[str, str | None]], browse_name: str, path: str,
           notes: list[Renamed]) -> str:
    name, why = rule(browse_name)
    if why:
        notes.append(Renamed(path, name, why))
    return name


async def browse_pattern(client: Client, spec: BrowseSpec) -> list[Hit]:
    """Walk the pattern level by level from Objects; return the matching variables."""
    segments = split_pattern(spec.pattern)
    level: list[tuple[ua.NodeId, tuple[str, ...], int]] = [(_OBJECTS, (), ua.NodeClass.Object)]
    for segment in segments:
        children = await browse_children(client, [node for node, _, _ in level])
        level = [
            (ref.NodeId, (*path, ref.BrowseName.Name or ""), ref.NodeClass)
            for (_, path, _), refs in zip(level, children, strict=True)
            for ref in refs
            if segment_matches(segment, ref.BrowseName.Name or "")
        ]
    return [Hit(node_id, path, spec) for node_id, path, node_class in level
            if node_class == ua.NodeClass.Variable]


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
