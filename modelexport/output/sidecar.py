"""The ``<output>.hierarchy.json`` sidecar: module tree, node map and figures.

It is written for every export, clean or tagged, so a clean ONNX file still
has its hierarchy next to it.  ``SIDECAR_SCHEMA`` changes whenever a field's
meaning does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from modelexport.hierarchy import ModuleTree, ancestors, is_within
from modelexport.tags import NodeTag, read_node_tag

SIDECAR_SCHEMA = "modelexport.hierarchy/1"


def node_counts(tags: Sequence[NodeTag | None]) -> dict[str, int]:
    return dict(Counter(tag.module for tag in tags if tag is not None))


def build_sidecar(
    *,
    graph: onnx.ModelProto,
    tags: Sequence[NodeTag | None],
    tree: ModuleTree,
    strategy: str,
    version: str,
    figures: dict[str, Any],
    timings: dict[str, float],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "schema": SIDECAR_SCHEMA,
        "modelexport_version": version,
        "model_class": tree.root_class,
        "strategy": strategy,
        "settings": settings,
        "modules": tree.to_records(node_counts(tags)),
        "nodes": _node_entries(graph, tags),
        "figures": figures,
        "timings": timings,
    }


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load a sidecar, refusing files of another schema or shape (``ValueError``).

    The tools index ``modules`` and ``nodes`` directly; a hand-edited file
    whose ``modules`` is a number would otherwise surface as a ``TypeError``
    deep inside whichever tool read it first.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise ValueError(f"{path} is not a {SIDECAR_SCHEMA} sidecar")
    problem = _shape_problem(data)
    if problem:
        raise ValueError(f"{path} is not a well-formed sidecar: {problem}")
    return data


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the two tables the tools read, or None."""
    modules = data.get("modules", [])
    if not isinstance(modules, list) or not all(
            isinstance(row, dict) and isinstance(row.get("path"), str) for row in modules):
        return "'modules' must be a list of objects with a string 'path'"
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("module"), str)
            for entry in nodes.values()):
        return "'nodes' must map node names to objects with a string 'module'"
    return None


def _node_entries(graph: onnx.ModelProto, tags: Sequence[NodeTag | None]) -> dict[str, dict]:
    """The sidecar's node map: name -> op, module, tag, source (and call)."""
    nodes = {}
    for node, tag in zip(graph.graph.node, tags):
        if tag is None:
            continue
        entry = {"op": node.op_type, "module": tag.module, "tag": tag.tag,
                 "source": tag.source.value}
        if tag.call is not None:
            entry["call"] = tag.call
        nodes[node.name] = entry
    return nodes


def derive_sidecar(reference: dict[str, Any], graph: onnx.ModelProto, *,
                   scope: str | None = None, note: str = "") -> dict[str, Any]:
    """A sidecar for a file made *from* an export (extracted, re-tagged).

    The module tree is the reference's (only ``scope``'s subtree and its
    ancestors, when given); node counts and the node map describe the tags
    written on ``graph``.
    """
    tags = [read_node_tag(node) for node in graph.graph.node]
    counts = node_counts([t for t in tags if t is not None])
    totals: Counter = Counter()
    for path, count in counts.items():
        for ancestor in ancestors(path):
            totals[ancestor] += count
    keep = set(ancestors(scope)) if scope is not None else set()
    modules = []
    for row in reference.get("modules", []):
        if scope is not None and not (is_within(row["path"], scope) or row["path"] in keep):
            continue
        modules.append({**row, "nodes_self": counts.get(row["path"], 0),
                        "nodes_total": totals.get(row["path"], 0)})
    derived = {**reference, "modules": modules, "nodes": _node_entries(graph, tags)}
    derived["derived"] = note
    return derived
